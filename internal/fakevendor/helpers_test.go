package fakevendor_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

// startFake serves a fake vendor on a loopback httptest server.
func startFake(t *testing.T, opts fakevendor.Options) (*fakevendor.Server, string) {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	fake := fakevendor.New(opts)
	hs := httptest.NewServer(fake)
	t.Cleanup(hs.Close)
	return fake, hs.URL
}

func openaiClient(base string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(base), option.WithAPIKey("sk-test-openai"), option.WithMaxRetries(0),
	}, opts...)...)
}

func anthropicClient(base string, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(base), aoption.WithAPIKey("sk-ant-test"), aoption.WithMaxRetries(0),
	}, opts...)...)
}

func genaiClient(t *testing.T, base string) *genai.Client {
	t.Helper()
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:      "gemini-test-key",
		Backend:     genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: base},
	})
	require.NoError(t, err)
	return c
}

// headerOpts turns name/value pairs into OpenAI request options.
func headerOpts(kv ...string) []option.RequestOption {
	var out []option.RequestOption
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, option.WithHeaderAdd(kv[i], kv[i+1]))
	}
	return out
}

func anthropicHeaders(kv ...string) []aoption.RequestOption {
	var out []aoption.RequestOption
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, aoption.WithHeaderAdd(kv[i], kv[i+1]))
	}
	return out
}

func httpHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// onlyCall returns the single recorded call.
func onlyCall(t *testing.T, fake *fakevendor.Server) fakevendor.Call {
	t.Helper()
	calls := fake.Calls()
	require.Len(t, calls, 1)
	return calls[0]
}
