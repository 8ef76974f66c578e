package fakevendor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// dialect selects the error body shape of an endpoint.
type dialect int

const (
	// dialectOpenAI: {"error":{"message","type","param","code"}}.
	dialectOpenAI dialect = iota
	// dialectAnthropic: {"type":"error","error":{"type","message"},"request_id"}.
	dialectAnthropic
	// dialectGemini: {"error":{"code","message","status"[,"details"]}}.
	dialectGemini
	// dialectGeminiList: the Gemini body wrapped in a JSON array, as Gemini's
	// OpenAI-compatible endpoint and its non-SSE streaming endpoint answer.
	dialectGeminiList
)

// apiError is a vendor error answer: an HTTP status plus the variant that
// picks the body (an OpenAI code, an Anthropic error type, a Gemini status or
// reason); message overrides the variant's canned message when not empty.
type apiError struct {
	status  int
	variant string
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.variant, e.message)
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, message: fmt.Sprintf(format, args...)}
}

// openAIError is one canned OpenAI error: type, code (empty means null) and message.
type openAIError struct{ typ, code, msg string }

// openAIErrors maps status -> variant -> body; the "" variant is the default.
var openAIErrors = map[int]map[string]openAIError{
	400: {"": {"invalid_request_error", "", "Invalid request."}},
	401: {"": {"invalid_request_error", "invalid_api_key", "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."}},
	403: {"": {"request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"}},
	404: {"": {"invalid_request_error", "model_not_found", "The model `%s` does not exist or you do not have access to it."}},
	429: {
		"":                    {"requests", "rate_limit_exceeded", "Rate limit reached for %s in organization org-fakevendor on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more."},
		"rate_limit_exceeded": {"requests", "rate_limit_exceeded", "Rate limit reached for %s in organization org-fakevendor on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more."},
		"tokens":              {"tokens", "rate_limit_exceeded", "Rate limit reached for %s in organization org-fakevendor on tokens per min (TPM): Limit 30000, Used 30000, Requested 512. Please try again in 1.024s. Visit https://platform.openai.com/account/rate-limits to learn more."},
		"insufficient_quota":  {"insufficient_quota", "insufficient_quota", "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."},
	},
	500: {"": {"server_error", "", "The server had an error while processing your request. Sorry about that!"}},
	503: {
		"":          {"server_error", "", "The engine is currently overloaded, please try again later."},
		"slow_down": {"server_error", "slow_down", "Slow Down: your request rate is too high, please reduce it and retry."},
	},
}

// anthropicErrors maps status -> default error type and message; a variant
// replaces the type.
var anthropicErrors = map[int][2]string{
	400: {"invalid_request_error", "Invalid request."},
	401: {"authentication_error", "invalid x-api-key"},
	402: {"billing_error", "Your credit balance is too low to access the Anthropic API."},
	403: {"permission_error", "Your API key does not have permission to use the specified resource."},
	404: {"not_found_error", "model: %s"},
	413: {"request_too_large", "Request exceeds the maximum allowed number of bytes."},
	429: {"rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."},
	500: {"api_error", "Internal server error"},
	504: {"timeout_error", "Request timeout"},
	529: {"overloaded_error", "Overloaded"},
}

// geminiErrors maps status -> google.rpc status and message.
var geminiErrors = map[int][2]string{
	400: {"INVALID_ARGUMENT", "Request contains an invalid argument."},
	401: {"UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."},
	403: {"PERMISSION_DENIED", "The caller does not have permission"},
	404: {"NOT_FOUND", "models/%s is not found for API version v1beta, or is not supported for generateContent."},
	409: {"ABORTED", "The operation was aborted."},
	429: {"RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."},
	499: {"CANCELLED", "The operation was cancelled."},
	500: {"INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"},
	501: {"UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."},
	503: {"UNAVAILABLE", "The model is overloaded. Please try again later."},
	504: {"DEADLINE_EXCEEDED", "Deadline expired before operation could complete."},
}

// errorBody renders e in dialect d. model fills the canned messages that
// name a model; requestID is embedded where the vendor does so.
func errorBody(d dialect, e *apiError, model, requestID string) []byte {
	var v any
	switch d {
	case dialectAnthropic:
		v = anthropicErrorValue(e, model, requestID)
	case dialectGemini:
		v = geminiErrorValue(e, model)
	case dialectGeminiList:
		v = []any{geminiErrorValue(e, model)}
	default:
		v = openAIErrorValue(e, model)
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain maps and strings are marshalled, so this cannot happen.
		return []byte(`{"error":{"message":"fakevendor: cannot render error"}}`)
	}
	return b
}

func withModel(msg, model string) string {
	if !strings.Contains(msg, "%s") {
		return msg
	}
	if model == "" {
		model = "unknown"
	}
	return fmt.Sprintf(msg, model)
}

func openAIErrorValue(e *apiError, model string) any {
	variants := openAIErrors[e.status]
	canned, ok := variants[e.variant]
	if !ok {
		canned, ok = variants[""]
		if !ok {
			typ := "invalid_request_error"
			if e.status >= 500 {
				typ = "server_error"
			}
			canned = openAIError{typ: typ, msg: http.StatusText(e.status)}
		}
		if e.variant != "" {
			canned.typ, canned.code = e.variant, e.variant
		}
	}
	msg := withModel(canned.msg, model)
	if e.message != "" {
		msg = e.message
	}
	var code any
	if canned.code != "" {
		code = canned.code
	}
	return map[string]any{"error": map[string]any{"message": msg, "type": canned.typ, "param": nil, "code": code}}
}

func anthropicErrorValue(e *apiError, model, requestID string) any {
	canned, ok := anthropicErrors[e.status]
	if !ok {
		typ := "invalid_request_error"
		if e.status >= 500 {
			typ = "api_error"
		}
		canned = [2]string{typ, http.StatusText(e.status)}
	}
	if e.variant != "" {
		canned[0] = e.variant
	}
	msg := withModel(canned[1], model)
	if e.message != "" {
		msg = e.message
	}
	out := map[string]any{"type": "error", "error": map[string]any{"type": canned[0], "message": msg}}
	if requestID != "" {
		out["request_id"] = requestID
	}
	return out
}

func geminiErrorValue(e *apiError, model string) any {
	canned, ok := geminiErrors[e.status]
	if !ok {
		status := "INVALID_ARGUMENT"
		if e.status >= 500 {
			status = "INTERNAL"
		}
		canned = [2]string{status, http.StatusText(e.status)}
	}
	inner := map[string]any{"code": e.status}
	switch {
	case e.variant == "API_KEY_INVALID":
		canned[1] = "API key not valid. Please pass a valid API key."
		inner["details"] = []any{map[string]any{
			"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
			"reason":   "API_KEY_INVALID",
			"domain":   "googleapis.com",
			"metadata": map[string]any{"service": "generativelanguage.googleapis.com"},
		}}
	case e.status == 429 && e.variant == "quota":
		canned[1] = "You exceeded your current quota, please check your plan and billing details."
		inner["details"] = []any{
			map[string]any{
				"@type": "type.googleapis.com/google.rpc.QuotaFailure",
				"violations": []any{map[string]any{
					"quotaMetric":     "generativelanguage.googleapis.com/generate_content_free_tier_requests",
					"quotaId":         "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
					"quotaDimensions": map[string]any{"location": "global", "model": model},
					"quotaValue":      "10",
				}},
			},
			map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
		}
	case e.variant != "":
		canned[0] = e.variant
	}
	msg := withModel(canned[1], model)
	if e.message != "" {
		msg = e.message
	}
	inner["message"] = msg
	inner["status"] = canned[0]
	return map[string]any{"error": inner}
}
