package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// h2cVendor serves handler over HTTP/2 with prior knowledge, as a vendor
// reached over HTTP/2 is; trailers survive only on such an upstream.
func h2cVendor(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// Responses that end with trailers reach ext_proc without an
// end_of_stream body message (trailers SKIP in the filter config). The call
// must still be settled as completed with its usage: a streamed body by the
// trailers message the server asks for, a buffered JSON body at its one
// body message, which also gets the usage headers.
func TestResponsesWithTrailersAreSettledWithUsage(t *testing.T) {
	const usage = `"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}`
	tests := []struct {
		name   string
		stream bool
		write  func(w http.ResponseWriter)
	}{
		{"event stream", true, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Trailer", "X-Vendor-Checksum")
			w.WriteHeader(200)
			for _, ev := range []string{
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"}}]}`,
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],` + usage + `}`,
			} {
				_, _ = io.WriteString(w, "data: "+ev+"\n\n")
				http.NewResponseController(w).Flush()
			}
			_, _ = io.WriteString(w, "data: [DONE]\n\n")
			w.Header().Set("X-Vendor-Checksum", "abc")
		}},
		{"json with content-length", false, func(w http.ResponseWriter) {
			body := `{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,` +
				`"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],` + usage + `}`
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Header().Set("Trailer", "X-Vendor-Checksum")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, body)
			w.Header().Set("X-Vendor-Checksum", "abc")
		}},
		{"json without content-length", false, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Trailer", "X-Vendor-Checksum")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,`)
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, `"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],`+usage+`}`)
			w.Header().Set("X-Vendor-Checksum", "abc")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := h2cVendor(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				tt.write(w)
			})
			s := startEmulated(t, withEnvoy(func(c *envoytest.Config) {
				c.Clusters["openai"] = "http://" + addr
				if c.ClusterProtocols == nil {
					c.ClusterProtocols = map[string]envoytest.ClusterProtocol{}
				}
				c.ClusterProtocols["openai"] = envoytest.ClusterProtocol{HTTP2: true}
			}))
			var resp *http.Response
			if tt.stream {
				// Read to the end, trailers included, as a client that does
				// not hang up at [DONE]: one that does can leave before the
				// trailers, and then the ext_proc stream ends as a
				// disconnect (aborted, with the usage streamed so far).
				resp = post(t, s, "/openai/v1/chat/completions", "application/json",
					[]byte(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`), nil)
				body := readAll(t, resp)
				require.Equal(t, 200, resp.StatusCode)
				require.Contains(t, body, `"content":"Hi"`)
				require.Contains(t, body, "data: [DONE]")
				// Envoy's HTTP/1 codec drops the trailers toward this client
				// (the shipped HCM has no enable_trailers); ext_proc saw them.
				require.Empty(t, resp.Trailer.Get("X-Vendor-Checksum"))
			} else {
				out, err := openaiClient(s).Chat.Completions.New(t.Context(), chatParams(), option.WithResponseInto(&resp))
				require.NoError(t, err)
				require.Equal(t, "Hi", out.Choices[0].Message.Content)
				require.Equal(t, "9", resp.Header.Get("X-LLM-Input-Tokens"), "the usage headers, while Envoy held the headers")
				require.Equal(t, "13", resp.Header.Get("X-LLM-Total-Tokens"))
			}
			rec := s.Records(t, 1)[0]
			require.Equal(t, processor.OutcomeCompleted, rec.Outcome, "not aborted")
			require.EqualValues(t, 9, rec.Usage.InputTokens)
			require.EqualValues(t, 4, rec.Usage.OutputTokens)
			require.False(t, rec.UsageEstimated)
			line := s.AccessLog(t, 1)[0]
			require.EqualValues(t, 13, num(line["total_tokens"]))
		})
	}
}
