// Package estimation measures how far the gateway's pre-call input-token
// estimate is from the tokens the vendor bills.
//
// The gateway estimates a request's input tokens before calling the vendor
// as ceil(TextRunes / chars_per_token(provider)) + ImageTokens, where
// TextRunes comes from the provider's ParseRequest, and later corrects the
// estimate with a factor learned from reconciled usage (correction.Corrector).
// The tests in this package build a deterministic corpus of realistic chat
// requests, count their exact prompt tokens offline with OpenAI's o200k_base
// encoding (the gpt-4o family), and report the error of the raw and of the
// corrected estimate by content type and language. Anthropic and Gemini have
// no offline tokenizer; for them the o200k count is used as a labelled proxy.
//
// The package has no non-test code; see README.md for the results and how to
// reproduce them.
package estimation
