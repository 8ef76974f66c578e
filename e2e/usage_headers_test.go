package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	aoption "github.com/anthropics/anthropic-sdk-go/option"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// Real vendors often answer JSON without content-length (chunked, HTTP/2,
// compressed). The server holds such a body with BUFFERED_PARTIAL, so each
// official SDK still receives the usage headers.
func TestUsageHeadersOnJSONWithoutContentLength(t *testing.T) {
	// Both shapes real vendors use: chunked JSON, and gzip (the vendor
	// compresses whatever was asked; Go's transport decompresses for the
	// SDK). Neither has a content-length.
	shapes := []struct{ name, header string }{{"chunked", "x-fake-chunked"}, {"gzip", "x-fake-gzip"}}
	type sdkCase struct {
		name     string
		provider string
		model    string
		call     func(t *testing.T, s stack, shape string) http.Header
	}
	tests := []sdkCase{
		{"openai-go", "openai", "gpt-4o-mini", func(t *testing.T, s stack, shape string) http.Header {
			var resp *http.Response
			out, err := openaiClient(s, option.WithHeader(shape, "1")).Chat.Completions.New(t.Context(), chatParams(),
				option.WithResponseInto(&resp))
			require.NoError(t, err)
			require.NotEmpty(t, out.Choices[0].Message.Content)
			return resp.Header
		}},
		{"anthropic-sdk-go", "anthropic", "claude-sonnet-4-5", func(t *testing.T, s stack, shape string) http.Header {
			var resp *http.Response
			msg, err := anthropicClient(s, "/anthropic/", aoption.WithHeader(shape, "1"), aoption.WithHeader("x-fake-cached-tokens", "7")).
				Messages.New(t.Context(), messageParams(), aoption.WithResponseInto(&resp))
			require.NoError(t, err)
			require.NotEmpty(t, msg.Content)
			return resp.Header
		}},
		{"genai", "gemini", "gemini-2.5-flash", func(t *testing.T, s stack, shape string) http.Header {
			out, err := genaiClient(t, s, http.Header{http.CanonicalHeaderKey(shape): {"1"}, "X-Fake-Reasoning-Tokens": {"4"}}).
				Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
			require.NoError(t, err)
			require.NotEmpty(t, out.Text())
			require.NotNil(t, out.SDKHTTPResponse)
			return out.SDKHTTPResponse.Headers
		}},
	}
	for _, shape := range shapes {
		for _, tt := range tests {
			t.Run(shape.name+"/"+tt.name, func(t *testing.T) {
				s := startEmulated(t)
				h := tt.call(t, s, shape.header)
				calls := s.VendorCalls(t)
				require.Len(t, calls, 1)
				require.False(t, calls[0].ContentLength, "the vendor sent no content-length")
				require.Empty(t, calls[0].Header.Get("Accept-Encoding"), "the server strips accept-encoding")
				want := expected(calls[0])
				require.Equal(t, tt.provider, h.Get("X-LLM-Provider"))
				require.Equal(t, tt.model, h.Get("X-LLM-Model"))
				require.Equal(t, strconv.FormatInt(want.in, 10), h.Get("X-LLM-Input-Tokens"))
				require.Equal(t, strconv.FormatInt(want.out, 10), h.Get("X-LLM-Output-Tokens"))
				require.Equal(t, strconv.FormatInt(want.total, 10), h.Get("X-LLM-Total-Tokens"))
				cost, err := strconv.ParseFloat(h.Get("X-LLM-Cost-USD"), 64)
				require.NoError(t, err, "X-LLM-Cost-USD present")
				require.Positive(t, cost)
				require.Equal(t, want, logged(s.AccessLog(t, 1)[0]), "and the access log agrees")
			})
		}
	}
}

// A JSON body of unknown length over Envoy's buffer limit: Envoy sends the
// server what it holds (end_of_stream false), then lets the rest through.
// The client gets the whole body, untouched, never a 500; the call is
// recorded as completed, on the estimate, since the usage was beyond the
// part seen.
func TestJSONOverTheBufferLimitPassesThroughWhole(t *testing.T) {
	const limit = 1024
	head := `{"id":"chatcmpl-big","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":"` + strings.Repeat("word ", 400) + `"},"finish_reason":"stop"}],`
	tail := `"usage":{"prompt_tokens":11,"completion_tokens":400,"total_tokens":411}}`
	// The vendor sends more than the limit, then waits until the server
	// has answered the partial body message, so the rest arrives after it
	// whatever the scheduling: exactly the over-the-limit case.
	partialAnswered := make(chan struct{})
	var once sync.Once
	vendor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, head)
		http.NewResponseController(w).Flush()
		select {
		case <-partialAnswered:
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Second): // hang guard only
			return
		}
		_, _ = io.WriteString(w, tail)
	})
	s := startEmulated(t, withVendor(vendor), withEnvoy(func(c *envoytest.Config) { c.BufferLimit = limit }),
		withSent(func(r *extprocv3.ProcessingResponse) {
			if r.GetResponseBody() != nil {
				once.Do(func() { close(partialAnswered) })
			}
		}))
	var resp *http.Response
	out, err := openaiClient(s).Chat.Completions.New(t.Context(), chatParams(), option.WithResponseInto(&resp))
	require.NoError(t, err, "the whole body arrived and decodes")
	require.Equal(t, 200, resp.StatusCode)
	require.EqualValues(t, 400, out.Usage.CompletionTokens, "the bytes after the limit reached the client")
	require.Equal(t, strings.Repeat("word ", 400), out.Choices[0].Message.Content, "untouched")
	require.Equal(t, "openai", resp.Header.Get("X-LLM-Provider"), "the headers were still held at the partial reply")
	require.Empty(t, resp.Header.Get("X-LLM-Input-Tokens"), "no usage in the part the server saw")
	rec := s.Records(t, 1)[0]
	require.Equal(t, processor.OutcomeCompleted, rec.Outcome)
	require.True(t, rec.UsageEstimated)
	require.Equal(t, 200, rec.Status)
	require.EqualValues(t, len(head), rec.ResponseBytes, "the server saw the part Envoy held")
}
