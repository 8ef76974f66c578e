package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

// scenario is one end-to-end case. run drives the gateway as a client would
// and asserts what the client sees and what the gateway recorded.
type scenario struct {
	name string
	run  func(t *testing.T, s stack)
}

// tokens is the usage the gateway reports, in its normalised form.
type tokens struct {
	in, out, total, cacheRead, cacheWrite, reasoning int64
}

// expected maps what the fake vendor wrote on the wire to the gateway's
// normalised usage: OpenAI's input includes cached tokens and its output
// includes reasoning; Anthropic's input excludes cache reads and writes and
// its total is input + output; Gemini's output is candidates + thoughts.
// OpenAI-compatible endpoints of the other vendors follow OpenAI.
func expected(c fakevendor.Call) tokens {
	u := c.DeliveredUsage
	if u == nil {
		return tokens{}
	}
	switch {
	case c.Vendor == fakevendor.VendorAnthropic && c.Endpoint == "messages":
		return tokens{in: u.InputTokens, out: u.OutputTokens, total: u.InputTokens + u.OutputTokens,
			cacheRead: u.CacheReadTokens, cacheWrite: u.CacheWriteTokens}
	case c.Vendor == fakevendor.VendorGemini && strings.Contains(c.Endpoint, "enerateContent"):
		return tokens{in: u.InputTokens, out: u.OutputTokens + u.ReasoningTokens, total: u.TotalTokens,
			cacheRead: u.CacheReadTokens, reasoning: u.ReasoningTokens}
	default:
		return tokens{in: u.InputTokens, out: u.OutputTokens, total: u.TotalTokens,
			cacheRead: u.CacheReadTokens, reasoning: u.ReasoningTokens}
	}
}

// logged reads the usage from an access-log line. The server leaves zero
// cache and reasoning counts out of the metadata, so absent means 0 there;
// input, output and total must be present.
func logged(line map[string]any) tokens {
	zeroIfAbsent := func(v any) int64 {
		if v == nil || v == "-" {
			return 0
		}
		return num(v)
	}
	return tokens{in: num(line["input_tokens"]), out: num(line["output_tokens"]), total: num(line["total_tokens"]),
		cacheRead: zeroIfAbsent(line["cache_read_tokens"]), cacheWrite: zeroIfAbsent(line["cache_write_tokens"]),
		reasoning: zeroIfAbsent(line["reasoning_tokens"])}
}

// requireUsageRecorded checks that the one call made so far was served, and
// that Envoy's access log shows exactly the usage the vendor sent.
func requireUsageRecorded(t *testing.T, s stack, provider, model string) {
	t.Helper()
	calls := s.VendorCalls(t)
	require.Len(t, calls, 1)
	c := calls[0]
	require.True(t, c.Completed, "vendor response completed")
	require.NotNil(t, c.DeliveredUsage, "vendor sent usage")
	line := s.AccessLog(t, 1)[0]
	require.Equal(t, expected(c), logged(line), "access log usage equals what the vendor sent")
	require.Equal(t, provider, str(line["provider"]))
	require.Equal(t, model, str(line["model"]))
	require.EqualValues(t, 200, num(line["response_code"]))
}

func openaiClient(s stack, opts ...option.RequestOption) *openai.Client {
	c := openai.NewClient(append([]option.RequestOption{option.WithBaseURL(s.URL() + "/openai/v1/"),
		option.WithAPIKey("sk-test"), option.WithMaxRetries(0)}, opts...)...)
	return &c
}

func anthropicClient(s stack, base string, opts ...aoption.RequestOption) *anthropic.Client {
	c := anthropic.NewClient(append([]aoption.RequestOption{aoption.WithBaseURL(s.URL() + base),
		aoption.WithAPIKey("sk-ant-test"), aoption.WithMaxRetries(0)}, opts...)...)
	return &c
}

func genaiClient(t *testing.T, s stack, headers http.Header) *genai.Client {
	t.Helper()
	c, err := genai.NewClient(t.Context(), &genai.ClientConfig{APIKey: "gemini-test", Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: s.URL() + "/gemini/", Headers: headers}})
	require.NoError(t, err)
	return c
}

func chatParams() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage("Say hello to the gateway, please."),
		},
	}
}

func messageParams() anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 256,
		System:    []anthropic.TextBlockParam{{Text: "You are terse."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello to the gateway."))},
	}
}

// scenarios is the table both runners execute.
var scenarios = []scenario{
	{"openai chat json", func(t *testing.T, s stack) {
		c := openaiClient(s, option.WithHeader("x-fake-cached-tokens", "3"), option.WithHeader("x-fake-reasoning-tokens", "2"))
		resp, err := c.Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err)
		require.NotEmpty(t, resp.Choices[0].Message.Content)
		requireUsageRecorded(t, s, "openai", "gpt-4o-mini")
	}},
	{"openai stream without include_usage is still metered", func(t *testing.T, s stack) {
		st := openaiClient(s).Chat.Completions.NewStreaming(t.Context(), chatParams())
		var acc openai.ChatCompletionAccumulator
		for st.Next() {
			chunk := st.Current()
			require.False(t, chunk.JSON.Usage.Valid(), "the client never sees the usage chunk it did not ask for")
			require.NotEmpty(t, chunk.Choices, "no empty-choices chunk reaches the client")
			acc.AddChunk(chunk)
		}
		require.NoError(t, st.Err())
		require.NotEmpty(t, acc.Choices[0].Message.Content)
		require.Contains(t, string(s.VendorCalls(t)[0].Body), `"include_usage":true`, "the gateway asked the vendor for usage")
		requireUsageRecorded(t, s, "openai", "gpt-4o-mini")
	}},
	{"json responses carry usage headers", func(t *testing.T, s stack) {
		var httpResp *http.Response
		_, err := openaiClient(s).Chat.Completions.New(t.Context(), chatParams(), option.WithResponseInto(&httpResp))
		require.NoError(t, err)
		u := s.VendorCalls(t)[0].DeliveredUsage
		require.Equal(t, "openai", httpResp.Header.Get("X-LLM-Provider"))
		require.Equal(t, "gpt-4o-mini", httpResp.Header.Get("X-LLM-Model"))
		require.Equal(t, strconv.FormatInt(u.InputTokens, 10), httpResp.Header.Get("X-LLM-Input-Tokens"))
		require.Equal(t, strconv.FormatInt(u.OutputTokens, 10), httpResp.Header.Get("X-LLM-Output-Tokens"))
		require.Equal(t, strconv.FormatInt(u.TotalTokens, 10), httpResp.Header.Get("X-LLM-Total-Tokens"))
	}},
	{"openai chat stream with usage", func(t *testing.T, s stack) {
		p := chatParams()
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		st := openaiClient(s).Chat.Completions.NewStreaming(t.Context(), p)
		var acc openai.ChatCompletionAccumulator
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		require.NoError(t, st.Err())
		require.NotEmpty(t, acc.Choices[0].Message.Content)
		requireUsageRecorded(t, s, "openai", "gpt-4o-mini")
		require.Equal(t, "true", str(s.AccessLog(t, 1)[0]["stream"]))
	}},
	{"openai responses json", func(t *testing.T, s stack) {
		resp, err := openaiClient(s).Responses.New(t.Context(), responses.ResponseNewParams{Model: "gpt-4.1",
			Instructions: openai.String("Be brief."), Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello there")}})
		require.NoError(t, err)
		require.NotEmpty(t, resp.OutputText())
		requireUsageRecorded(t, s, "openai", "gpt-4.1")
	}},
	{"openai responses stream", func(t *testing.T, s stack) {
		st := openaiClient(s, option.WithHeader("x-fake-reasoning-tokens", "5")).Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
			Model: "o4-mini", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Think, then answer")}})
		var text strings.Builder
		for st.Next() {
			if ev := st.Current(); ev.Type == "response.output_text.delta" {
				text.WriteString(ev.Delta)
			}
		}
		require.NoError(t, st.Err())
		require.NotEmpty(t, text.String())
		requireUsageRecorded(t, s, "openai", "o4-mini")
	}},
	{"anthropic messages json with cache", func(t *testing.T, s stack) {
		msg, err := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-cached-tokens", "40"), aoption.WithHeader("x-fake-cache-write-tokens", "9")).
			Messages.New(t.Context(), messageParams())
		require.NoError(t, err)
		require.NotEmpty(t, msg.Content)
		requireUsageRecorded(t, s, "anthropic", "claude-sonnet-4-5")
	}},
	{"anthropic messages stream", func(t *testing.T, s stack) {
		st := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-cached-tokens", "11")).Messages.NewStreaming(t.Context(), messageParams())
		var msg anthropic.Message
		for st.Next() {
			require.NoError(t, msg.Accumulate(st.Current()))
		}
		require.NoError(t, st.Err())
		require.NotEmpty(t, msg.Content)
		requireUsageRecorded(t, s, "anthropic", "claude-sonnet-4-5")
	}},
	{"anthropic openai-compatible chat", func(t *testing.T, s stack) {
		c := openai.NewClient(option.WithBaseURL(s.URL()+"/anthropic/v1/"), option.WithAPIKey("sk-ant"), option.WithMaxRetries(0))
		p := chatParams()
		p.Model = "claude-haiku-4-5"
		_, err := c.Chat.Completions.New(t.Context(), p)
		require.NoError(t, err)
		requireUsageRecorded(t, s, "anthropic", "claude-haiku-4-5")
	}},
	{"gemini generateContent", func(t *testing.T, s stack) {
		resp, err := genaiClient(t, s, http.Header{"X-Fake-Reasoning-Tokens": {"6"}}).Models.GenerateContent(t.Context(), "gemini-2.5-flash",
			genai.Text("Say hello to the gateway."), &genai.GenerateContentConfig{SystemInstruction: genai.NewContentFromText("Be brief.", genai.RoleUser)})
		require.NoError(t, err)
		require.NotEmpty(t, resp.Text())
		requireUsageRecorded(t, s, "gemini", "gemini-2.5-flash")
	}},
	{"gemini stream", func(t *testing.T, s stack) {
		var text strings.Builder
		for resp, err := range genaiClient(t, s, http.Header{"X-Fake-Cached-Tokens": {"2"}}).Models.GenerateContentStream(t.Context(),
			"gemini-2.5-pro", genai.Text("Stream a greeting."), nil) {
			require.NoError(t, err)
			text.WriteString(resp.Text())
		}
		require.NotEmpty(t, text.String())
		requireUsageRecorded(t, s, "gemini", "gemini-2.5-pro")
		require.Equal(t, "true", str(s.AccessLog(t, 1)[0]["stream"]))
	}},
	{"gemini json-array stream without alt=sse", func(t *testing.T, s stack) {
		resp := post(t, s, "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent", "application/json",
			[]byte(`{"contents":[{"parts":[{"text":"Array please"}]}]}`), nil)
		body := readAll(t, resp)
		require.Equal(t, 200, resp.StatusCode, body)
		require.True(t, strings.HasPrefix(strings.TrimSpace(body), "["))
		requireUsageRecorded(t, s, "gemini", "gemini-2.5-flash")
	}},
	{"meta path names the user", func(t *testing.T, s stack) {
		c := openai.NewClient(option.WithBaseURL(s.URL()+"/meta/alice-42/openai/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
		_, err := c.Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err)
		requireUsageRecorded(t, s, "openai", "gpt-4o-mini")
		require.Equal(t, "alice-42", str(s.AccessLog(t, 1)[0]["user"]))
		require.Equal(t, "/v1/chat/completions", s.VendorCalls(t)[0].Path, "the /meta prefix is rewritten away")
	}},
	{"x-user-id header names the user and proxy headers are stripped", func(t *testing.T, s stack) {
		_, err := openaiClient(s, option.WithHeader("X-User-ID", "bob"), option.WithHeader("X-LLM-Proxy-Test-Mode", "nothing")).
			Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err)
		require.Equal(t, "bob", str(s.AccessLog(t, 1)[0]["user"]))
		h := s.VendorCalls(t)[0].Header
		require.Empty(t, h.Get("X-LLM-Proxy-Test-Mode"), "proxy-only headers never reach the vendor")
		require.Empty(t, h.Get("Accept-Encoding"), "the vendor is asked for an uncompressed body")
	}},
	{"vendor error passes through in the vendor's shape", func(t *testing.T, s stack) {
		_, err := openaiClient(s, option.WithHeader("x-fake-status", "400")).Chat.Completions.New(t.Context(), chatParams())
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, 400, apiErr.StatusCode)
		require.EqualValues(t, 400, num(s.AccessLog(t, 1)[0]["response_code"]))
	}},
	{"anthropic 529 retried by envoy then passed through", func(t *testing.T, s stack) {
		_, err := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-status", "529")).Messages.New(t.Context(), messageParams())
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, 529, apiErr.StatusCode)
		require.Contains(t, apiErr.Error(), "overloaded_error")
		require.Len(t, s.VendorCalls(t), 3, "one try and two retries")
		line := s.AccessLog(t, 1)[0]
		require.EqualValues(t, 3, num(line["attempts"]))
	}},
	{"transient failure recovers through envoy retry", func(t *testing.T, s stack) {
		resp, err := openaiClient(s, option.WithHeader("x-fake-status", "503"), option.WithHeader("x-fake-fail-times", "1"),
			option.WithHeader("x-fake-fail-key", "recover-1")).Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err)
		require.NotEmpty(t, resp.Choices)
		calls := s.VendorCalls(t)
		require.Len(t, calls, 2)
		line := s.AccessLog(t, 1)[0]
		require.EqualValues(t, 2, num(line["attempts"]))
		// Only the final attempt is visible to the ext_proc filter.
		require.Equal(t, expected(calls[1]), logged(line))
	}},
	{"malformed json passes through", func(t *testing.T, s stack) {
		resp := post(t, s, "/openai/v1/chat/completions", "application/json", []byte(`{"model":"gpt-4o","messages":[`), nil)
		body := readAll(t, resp)
		require.Equal(t, 400, resp.StatusCode, "the vendor, not the gateway, rejects it: %s", body)
		require.Contains(t, body, "invalid_request_error")
		require.Len(t, s.VendorCalls(t), 1)
		require.EqualValues(t, 400, num(s.AccessLog(t, 1)[0]["response_code"]))
	}},
	{"non-utf8 text passes through", func(t *testing.T, s stack) {
		resp := post(t, s, "/anthropic/v1/messages", "application/json",
			[]byte("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9 \xff\"}]}"),
			http.Header{"Anthropic-Version": {"2023-06-01"}})
		readAll(t, resp)
		require.Len(t, s.VendorCalls(t), 1)
		require.Equal(t, "anthropic", str(s.AccessLog(t, 1)[0]["provider"]))
	}},
	{"empty body passes through", func(t *testing.T, s stack) {
		resp := post(t, s, "/openai/v1/chat/completions", "application/json", nil, nil)
		readAll(t, resp)
		require.Equal(t, 400, resp.StatusCode)
		require.Len(t, s.VendorCalls(t), 1)
	}},
	{"gzip request body is read and forwarded intact", func(t *testing.T, s stack) {
		raw := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"compressed hello"}]}`)
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write(raw)
		require.NoError(t, zw.Close())
		resp := post(t, s, "/openai/v1/chat/completions", "application/json", zb.Bytes(), http.Header{"Content-Encoding": {"gzip"}})
		readAll(t, resp)
		calls := s.VendorCalls(t)
		require.Len(t, calls, 1)
		require.Equal(t, zb.Bytes(), calls[0].Body, "the gateway never rewrites the request body")
		require.Equal(t, "gpt-4o-mini", str(s.AccessLog(t, 1)[0]["model"]))
	}},
	{"body over envoy's buffer limit gets 413", func(t *testing.T, s stack) {
		big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 33<<20) + `"}]}`
		resp := post(t, s, "/openai/v1/chat/completions", "application/json", []byte(big), nil)
		readAll(t, resp)
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		require.Empty(t, s.VendorCalls(t))
	}},
	{"unknown path is not ours", func(t *testing.T, s stack) {
		resp, err := httpClient().Get(s.URL() + "/mistral/v1/models")
		require.NoError(t, err)
		readAll(t, resp)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		require.Empty(t, s.VendorCalls(t))
		require.Empty(t, str(s.AccessLog(t, 1)[0]["provider"]))
	}},
	{"repeated headers pass through", func(t *testing.T, s stack) {
		h := http.Header{"X-User-Id": {"first", "second"}, "X-Custom": {"a", "b"}}
		resp := post(t, s, "/openai/v1/chat/completions", "application/json",
			[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), h)
		readAll(t, resp)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, []string{"a", "b"}, s.VendorCalls(t)[0].Header.Values("X-Custom"))
		require.Equal(t, "first", str(s.AccessLog(t, 1)[0]["user"]))
	}},
	{"client disconnect mid-stream", func(t *testing.T, s stack) {
		disconnectMidStream(t, s)
		line := s.AccessLog(t, 1)[0]
		require.Equal(t, "openai", str(line["provider"]))
		require.Contains(t, str(line["response_flags"]), "DC", "Envoy saw the downstream disconnect")
	}},
	{"upstream reset mid-stream", func(t *testing.T, s stack) {
		st := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-reset-after-bytes", "700")).Messages.NewStreaming(t.Context(), messageParams())
		for st.Next() {
		}
		require.Error(t, st.Err(), "the client sees the stream break")
		calls := s.VendorCalls(t)
		require.Len(t, calls, 1)
		require.False(t, calls[0].Completed)
		line := s.AccessLog(t, 1)[0]
		require.Contains(t, str(line["response_flags"]), "UR")
	}},
	{"health is routed to the admin listener", func(t *testing.T, s stack) {
		resp, err := httpClient().Get(s.URL() + "/health")
		require.NoError(t, err)
		var h struct {
			Status    string `json:"status"`
			Providers map[string]struct {
				BaseURL string `json:"baseURL"`
			} `json:"providers"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
		resp.Body.Close()
		require.Equal(t, "healthy", h.Status)
		require.Equal(t, "https://api.openai.com", h.Providers["openai"].BaseURL)
	}},
}

// disconnectMidStream starts a long OpenAI stream, reads one chunk and
// hangs up.
func disconnectMidStream(t *testing.T, s stack) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p := chatParams()
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := openaiClient(s, option.WithHeader("x-fake-output-tokens", "400"), option.WithHeader("x-fake-chunk-delay-ms", "5")).
		Chat.Completions.NewStreaming(ctx, p)
	require.True(t, st.Next())
	cancel()
	for st.Next() {
	}
}

func post(t *testing.T, s stack, path, contentType string, body []byte, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+path, bytes.NewReader(body))
	require.NoError(t, err)
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err := httpClient().Do(req)
	require.NoError(t, err)
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		require.NoError(t, err)
	}
	return string(b)
}

func TestScenariosEmulated(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			sc.run(t, startEmulated(t))
		})
	}
}
