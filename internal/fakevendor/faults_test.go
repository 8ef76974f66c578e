package fakevendor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

// streamBodies are raw stream requests of every vendor, with the event
// separator of their wire format.
var streamBodies = []struct {
	name, path, body, sep string
	sepLeads              bool // the separator starts an event instead of ending one
}{
	{"openai chat", "/openai/v1/chat/completions", `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "\n\n", false},
	{"openai responses", "/openai/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`, "\n\n", false},
	{"anthropic messages", "/anthropic/v1/messages", `{"model":"claude","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, "\n\n", false},
	{"gemini sse", "/gemini/v1beta/models/g:streamGenerateContent?alt=sse", `{"contents":[{"parts":[{"text":"hi"}]}]}`, "\r\n\r\n", false},
	{"gemini array", "/gemini/v1beta/models/g:streamGenerateContent", `{"contents":[{"parts":[{"text":"hi"}]}]}`, "\n,\r\n", true},
}

// flushRecorder is a ResponseWriter that records the bytes of every flush.
type flushRecorder struct {
	header http.Header
	status int
	cur    []byte
	writes [][]byte
}

func (fr *flushRecorder) Header() http.Header    { return fr.header }
func (fr *flushRecorder) WriteHeader(status int) { fr.status = status }
func (fr *flushRecorder) Write(p []byte) (int, error) {
	fr.cur = append(fr.cur, p...)
	return len(p), nil
}
func (fr *flushRecorder) Flush() {
	if len(fr.cur) > 0 {
		fr.writes = append(fr.writes, fr.cur)
		fr.cur = nil
	}
}

func serveRecorded(fake *fakevendor.Server, path, body string, kv ...string) *flushRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	fr := &flushRecorder{header: http.Header{}}
	fake.ServeHTTP(fr, req)
	fr.Flush()
	return fr
}

func TestStreamWritesNeverAlignWithEvents(t *testing.T) {
	for _, tc := range streamBodies {
		for _, maxWrite := range []string{"", "16"} {
			t.Run(tc.name+"/max"+maxWrite, func(t *testing.T) {
				fake := fakevendor.New(fakevendor.Options{Seed: 7})
				fr := serveRecorded(fake, tc.path, tc.body, "x-fake-max-write-bytes", maxWrite)
				require.Equal(t, 200, fr.status)
				body := bytes.Join(fr.writes, nil)
				events := strings.Count(string(body), tc.sep)
				if tc.sepLeads {
					events++
				}
				require.GreaterOrEqual(t, events, 4)
				require.GreaterOrEqual(t, len(fr.writes), events)
				off := 0
				for i, w := range fr.writes[:len(fr.writes)-1] {
					off += len(w)
					atBoundary := strings.HasSuffix(string(body[:off]), tc.sep)
					if tc.sepLeads {
						atBoundary = strings.HasPrefix(string(body[off:]), tc.sep)
					}
					require.False(t, atBoundary, "write %d ends on an event boundary at %d", i, off)
					if maxWrite != "" {
						require.LessOrEqual(t, len(w), 17)
					}
				}
				again := serveRecorded(fakevendor.New(fakevendor.Options{Seed: 7}), tc.path, tc.body, "x-fake-max-write-bytes", maxWrite)
				require.Equal(t, len(fr.writes), len(again.writes), "same seed, same splits")
			})
		}
	}
}

func TestDelaysUseInjectedSleep(t *testing.T) {
	var mu sync.Mutex
	var slept []time.Duration
	fake := fakevendor.New(fakevendor.Options{Seed: 1, Sleep: func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		slept = append(slept, d)
		return nil
	}})
	fr := serveRecorded(fake, streamBodies[2].path, streamBodies[2].body,
		"x-fake-latency-ms", "250", "x-fake-ttfb-ms", "40", "x-fake-chunk-delay-ms", "7")
	require.Equal(t, 200, fr.status)
	require.Equal(t, 250*time.Millisecond, slept[0])
	require.Equal(t, 40*time.Millisecond, slept[1])
	require.Len(t, slept, 2+len(fr.writes)-1)
	for _, d := range slept[2:] {
		require.Equal(t, 7*time.Millisecond, d)
	}
}

func TestLatencyAbortsWhenClientLeaves(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-latency-ms", "60000")...)
	_, err := client.Chat.Completions.New(ctx, chatParams(0))
	require.Error(t, err)
	require.Eventually(t, func() bool {
		c := fake.Calls()
		return len(c) == 1 && c[0].Err != ""
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 0, fake.Calls()[0].Status)
}

func TestResetAfterBytes(t *testing.T) {
	t.Run("openai stream before usage", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-reset-after-bytes", "700")...)
		params := chatParams(0)
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := client.Chat.Completions.NewStreaming(context.Background(), params)
		for s.Next() {
		}
		require.ErrorIs(t, s.Err(), io.ErrUnexpectedEOF)
		call := onlyCall(t, fake)
		require.False(t, call.Completed)
		require.Equal(t, "reset-after-bytes", call.Fault)
		require.Equal(t, int64(700), call.BodyBytes)
		require.NotNil(t, call.Usage)
		require.Nil(t, call.DeliveredUsage)
	})
	t.Run("anthropic stream after message_start", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		params, err := json.Marshal(messageParams(100))
		require.NoError(t, err)
		reqBody := strings.Replace(string(params), "{", `{"stream":true,`, 1)
		full := serveRecorded(fakevendor.New(fakevendor.Options{Seed: 3}), streamBodies[2].path, reqBody)
		cut := bytes.Index(bytes.Join(full.writes, nil), []byte("event: ping")) + 3
		client := anthropicClient(url+"/anthropic/", anthropicHeaders("x-fake-reset-after-bytes", fmt.Sprint(cut))...)
		s := client.Messages.NewStreaming(context.Background(), messageParams(100))
		var types []string
		for s.Next() {
			types = append(types, s.Current().Type)
		}
		require.Error(t, s.Err())
		require.Equal(t, []string{"message_start", "content_block_start"}, types)
		call := onlyCall(t, fake)
		require.False(t, call.Completed)
		require.Equal(t, int64(cut), call.BodyBytes)
		require.Equal(t, int64(1), call.DeliveredUsage.OutputTokens)
		require.Equal(t, int64(12), call.Usage.OutputTokens)
	})
	t.Run("gemini json", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		_, err := genaiClient(t, url+"/gemini/").Models.GenerateContent(context.Background(), "gemini-2.5-flash",
			genai.Text("x"), geminiConfig(0, "x-fake-reset-after-bytes", "50"))
		require.Error(t, err)
		call := onlyCall(t, fake)
		require.False(t, call.Completed)
		require.Nil(t, call.DeliveredUsage)
	})
	t.Run("whole body then abort", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		req, err := http.NewRequest(http.MethodPost, url+streamBodies[0].path, strings.NewReader(streamBodies[0].body))
		require.NoError(t, err)
		req.Header.Set("x-fake-reset-after-bytes", "100000000")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.Contains(t, string(raw), "data: [DONE]")
		call := onlyCall(t, fake)
		require.False(t, call.Completed)
		require.Equal(t, call.Usage, call.DeliveredUsage)
	})
}

func TestResetBeforeHeaders(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-reset-before-headers", "1")...)
	_, err := client.Chat.Completions.New(context.Background(), chatParams(0))
	require.Error(t, err)
	var apiErr *openai.Error
	require.False(t, errors.As(err, &apiErr))
	call := onlyCall(t, fake)
	require.Equal(t, 0, call.Status)
	require.Equal(t, "reset-before-headers", call.Fault)
	require.False(t, call.Completed)
}

func TestFailTimes(t *testing.T) {
	statuses := func(fake *fakevendor.Server) []int {
		var out []int
		for _, c := range fake.Calls() {
			out = append(out, c.Status)
		}
		return out
	}
	t.Run("openai retries 429 then succeeds", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		client := openaiClient(url+"/openai/v1/", option.WithMaxRetries(3))
		resp, err := client.Chat.Completions.New(context.Background(), chatParams(0), headerOpts(
			"x-fake-status", "429", "x-fake-fail-times", "2", "x-fake-fail-key", "k1", "x-fake-header", "retry-after-ms: 1")...)
		require.NoError(t, err)
		require.Equal(t, []int{429, 429, 200}, statuses(fake))
		calls := fake.Calls()
		require.Equal(t, *calls[2].Usage, chatUsage(resp.Usage))
		require.Equal(t, "1", calls[1].Header.Get("X-Stainless-Retry-Count"))
	})
	t.Run("openai retries connection reset", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		client := openaiClient(url+"/openai/v1/", option.WithMaxRetries(2))
		_, err := client.Chat.Completions.New(context.Background(), chatParams(0), headerOpts(
			"x-fake-reset-before-headers", "1", "x-fake-fail-times", "1", "x-fake-fail-key", "k2")...)
		require.NoError(t, err)
		require.Equal(t, []int{0, 200}, statuses(fake))
	})
	t.Run("anthropic retries 529", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		client := anthropicClient(url+"/anthropic/", aoption.WithMaxRetries(2))
		_, err := client.Messages.New(context.Background(), messageParams(100), anthropicHeaders(
			"x-fake-status", "529", "x-fake-fail-times", "1", "x-fake-fail-key", "k3", "x-fake-header", "retry-after-ms: 1")...)
		require.NoError(t, err)
		require.Equal(t, []int{529, 200}, statuses(fake))
	})
	t.Run("genai retries 503", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		cfg := geminiConfig(0, "x-fake-status", "503", "x-fake-fail-times", "2", "x-fake-fail-key", "k4")
		cfg.HTTPOptions.RetryOptions = &genai.HTTPRetryOptions{Attempts: genai.Ptr[int32](3), InitialDelay: genai.Ptr(0.001), MaxDelay: genai.Ptr(0.002)}
		_, err := genaiClient(t, url+"/gemini/").Models.GenerateContent(context.Background(), "gemini-2.5-flash", genai.Text("x"), cfg)
		require.NoError(t, err)
		require.Equal(t, []int{503, 503, 200}, statuses(fake))
	})
	t.Run("keys count separately and Reset clears", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		do := func(key string) int {
			client := openaiClient(url + "/openai/v1/")
			_, err := client.Chat.Completions.New(context.Background(), chatParams(0),
				headerOpts("x-fake-status", "500", "x-fake-fail-times", "1", "x-fake-fail-key", key)...)
			var apiErr *openai.Error
			if errors.As(err, &apiErr) {
				return apiErr.StatusCode
			}
			require.NoError(t, err)
			return 200
		}
		require.Equal(t, []int{500, 200, 500, 200}, []int{do("a"), do("a"), do("b"), do("b")})
		fake.Reset()
		require.Empty(t, fake.Calls())
		require.Equal(t, 500, do("a"))
	})
}

func TestStreamErrorEvents(t *testing.T) {
	t.Run("openai chat", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-stream-error-after", "2")...)
		s := client.Chat.Completions.NewStreaming(context.Background(), chatParams(0))
		n := 0
		for s.Next() {
			n++
		}
		require.Equal(t, 2, n)
		var se *ssestream.StreamError
		require.True(t, errors.As(s.Err(), &se), "error %v", s.Err())
		require.Contains(t, se.Message, "server_error")
		require.Equal(t, "stream-error", onlyCall(t, fake).Fault)
	})
	t.Run("openai responses", func(t *testing.T) {
		_, url := startFake(t, fakevendor.Options{})
		client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-stream-error-after", "4")...)
		s := client.Responses.NewStreaming(context.Background(),
			responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("x")}})
		var types []string
		for s.Next() {
			types = append(types, s.Current().Type)
		}
		require.NoError(t, s.Err())
		require.Equal(t, "error", types[len(types)-1])
		require.Len(t, types, 5)
	})
	t.Run("gemini sse", func(t *testing.T) {
		fake, url := startFake(t, fakevendor.Options{})
		var errs []error
		for _, err := range genaiClient(t, url+"/gemini/").Models.GenerateContentStream(context.Background(), "gemini-2.5-flash",
			genai.Text("x"), geminiConfig(0, "x-fake-stream-error-after", "1")) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 2)
		require.NoError(t, errs[0])
		var apiErr genai.APIError
		require.True(t, errors.As(errs[1], &apiErr))
		require.Equal(t, 503, apiErr.Code)
		call := onlyCall(t, fake)
		require.Equal(t, int64(3), call.Usage.OutputTokens, "usage of the one chunk sent")
	})
}

func TestResponseHeaders(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		body    string
		kv      []string
		want    map[string][]string
		present []string
	}{
		{name: "repeated and comma joined", path: streamBodies[0].path, body: streamBodies[0].body,
			kv:   []string{"x-fake-header", "retry-after: 3", "x-fake-header", "x-ratelimit-remaining-requests: 0, x-ratelimit-remaining-tokens: 12", "x-fake-header", "x-multi: a", "x-fake-header", "x-multi: b"},
			want: map[string][]string{"Retry-After": {"3"}, "X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Remaining-Tokens": {"12"}, "X-Multi": {"a", "b"}}},
		{name: "date keeps its comma", path: streamBodies[2].path, body: streamBodies[2].body,
			kv:   []string{"x-fake-header", "retry-after: Wed, 21 Oct 2015 07:28:00 GMT"},
			want: map[string][]string{"Retry-After": {"Wed, 21 Oct 2015 07:28:00 GMT"}}},
		{name: "openai rate limits", path: streamBodies[0].path, body: streamBodies[0].body, kv: []string{"x-fake-ratelimit-headers", "1"},
			present: []string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Tokens", "X-Request-Id", "Openai-Processing-Ms"}},
		{name: "anthropic rate limits", path: streamBodies[2].path, body: streamBodies[2].body, kv: []string{"x-fake-ratelimit-headers", "1"},
			present: []string{"Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Tokens-Reset", "Anthropic-Ratelimit-Input-Tokens-Limit", "Request-Id"}},
		{name: "gemini", path: streamBodies[3].path, body: streamBodies[3].body, present: []string{"Server-Timing"},
			want: map[string][]string{"Content-Type": {"text/event-stream"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := serveRecorded(fakevendor.New(fakevendor.Options{}), tc.path, tc.body, tc.kv...)
			require.Equal(t, 200, fr.status)
			for k, v := range tc.want {
				require.Equal(t, v, fr.header.Values(k), k)
			}
			for _, k := range tc.present {
				require.NotEmpty(t, fr.header.Get(k), k)
			}
		})
	}
}

func TestGzip(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	t.Run("raw", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		req, err := http.NewRequest(http.MethodPost, url+"/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		require.NoError(t, err)
		req.Header.Set("x-fake-gzip", "1")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
		zr, err := gzip.NewReader(resp.Body)
		require.NoError(t, err)
		var body map[string]any
		require.NoError(t, json.NewDecoder(zr).Decode(&body))
		require.Equal(t, "chat.completion", body["object"])
	})
	t.Run("sdk stream", func(t *testing.T) {
		fake.Reset()
		params := chatParams(0)
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		client := openaiClient(url+"/openai/v1/", headerOpts("x-fake-gzip", "1")...)
		s := client.Chat.Completions.NewStreaming(context.Background(), params)
		var usage openai.CompletionUsage
		for s.Next() {
			if c := s.Current(); c.JSON.Usage.Valid() {
				usage = c.Usage
			}
		}
		require.NoError(t, s.Err())
		call := onlyCall(t, fake)
		require.True(t, call.Completed)
		require.Equal(t, *call.Usage, chatUsage(usage))
	})
}

func TestVendorSelection(t *testing.T) {
	chat := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	gem := `{"contents":[{"parts":[{"text":"x"}]}]}`
	tests := []struct {
		name     string
		opts     fakevendor.Options
		host     string
		path     string
		body     string
		vendor   fakevendor.Vendor
		endpoint string
		status   int
		served   string
	}{
		{name: "openai host", host: "api.openai.com", path: "/v1/chat/completions", body: chat, vendor: "openai", endpoint: "chat.completions", status: 200, served: "/v1/chat/completions"},
		{name: "openai host with port", host: "api.openai.com:443", path: "/v1/chat/completions", body: chat, vendor: "openai", endpoint: "chat.completions", status: 200},
		{name: "anthropic host", host: "api.anthropic.com", path: "/v1/chat/completions", body: chat, vendor: "anthropic", endpoint: "chat.completions", status: 200},
		{name: "gemini host", host: "generativelanguage.googleapis.com", path: "/v1beta/models/g:generateContent", body: gem, vendor: "gemini", endpoint: "generateContent", status: 200},
		{name: "prefix", host: "fake:8080", path: "/anthropic/v1/messages", body: `{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, vendor: "anthropic", endpoint: "messages", status: 200, served: "/v1/messages"},
		{name: "host wins over prefix", host: "api.openai.com", path: "/gemini/v1/chat/completions", body: chat, vendor: "openai", status: 404},
		{name: "fixed vendor", opts: fakevendor.Options{Vendor: "gemini"}, host: "api.openai.com", path: "/v1/models/g:countTokens", body: gem, vendor: "gemini", endpoint: "countTokens", status: 200},
		{name: "fixed vendor strips own prefix", opts: fakevendor.Options{Vendor: "gemini"}, host: "x", path: "/gemini/v1beta/openai/chat/completions", body: chat, vendor: "gemini", endpoint: "chat.completions", status: 200},
		{name: "no vendor", host: "example.com", path: "/v1/chat/completions", body: chat, status: 404},
		{name: "anthropic unknown path", host: "api.anthropic.com", path: "/v1/complete", body: chat, vendor: "anthropic", status: 404},
		{name: "gemini unknown action", host: "x", path: "/gemini/v1beta/models/g:embedStuff", body: gem, vendor: "gemini", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakevendor.New(tc.opts)
			req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
			req.Host = tc.host
			rec := httptest.NewRecorder()
			fake.ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			call := onlyCall(t, fake)
			require.Equal(t, tc.vendor, call.Vendor)
			require.Equal(t, tc.endpoint, call.Endpoint)
			if tc.served != "" {
				require.Equal(t, tc.served, call.Path)
			}
			require.True(t, json.Valid(rec.Body.Bytes()))
		})
	}
}

func TestAPIKeysRecorded(t *testing.T) {
	tests := []struct {
		name, header, value, query, want string
	}{
		{name: "bearer", header: "Authorization", value: "Bearer sk-1", want: "sk-1"},
		{name: "x-api-key", header: "x-api-key", value: "sk-ant-2", want: "sk-ant-2"},
		{name: "x-goog-api-key", header: "x-goog-api-key", value: "g-3", want: "g-3"},
		{name: "query", query: "?key=g-4", want: "g-4"},
		{name: "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakevendor.New(fakevendor.Options{})
			req := httptest.NewRequest(http.MethodPost, "/gemini/v1beta/models/g:countTokens"+tc.query, strings.NewReader(`{"contents":[]}`))
			if tc.header != "" {
				req.Header.Set(tc.header, tc.value)
			}
			rec := httptest.NewRecorder()
			fake.ServeHTTP(rec, req)
			require.Equal(t, 200, rec.Code)
			require.Equal(t, tc.want, onlyCall(t, fake).APIKey)
		})
	}
}

func TestMalformedRequestsGetVendorErrors(t *testing.T) {
	tests := []struct {
		name, path, body string
		kv               []string
		status           int
		contains         string
	}{
		{name: "openai bad json", path: "/openai/v1/chat/completions", body: "{", status: 400, contains: `"invalid_request_error"`},
		{name: "openai no messages", path: "/openai/v1/chat/completions", body: `{"model":"m"}`, status: 400, contains: "messages"},
		{name: "openai array body", path: "/openai/v1/responses", body: `[1]`, status: 400},
		{name: "openai responses no input", path: "/openai/v1/responses", body: `{"model":"m","input":5}`, status: 400},
		{name: "embeddings bad input", path: "/openai/v1/embeddings", body: `{"model":"m","input":[{}]}`, status: 400},
		{name: "anthropic no model", path: "/anthropic/v1/messages", body: `{"messages":[]}`, status: 400, contains: `"type":"error"`},
		{name: "anthropic odd content", path: "/anthropic/v1/messages", body: `{"model":"c","max_tokens":3,"messages":[{"content":[1,null,{"text":5}]}]}`, status: 200},
		{name: "gemini no contents", path: "/gemini/v1beta/models/g:generateContent", body: `{}`, status: 400, contains: "INVALID_ARGUMENT"},
		{name: "gemini null body", path: "/gemini/v1beta/models/g:generateContent", body: `null`, status: 400},
		{name: "negative header", path: "/openai/v1/chat/completions", body: `{}`, kv: []string{"x-fake-output-tokens", "-1"}, status: 400, contains: "x-fake-output-tokens"},
		{name: "bad fake header item", path: "/openai/v1/chat/completions", body: `{}`, kv: []string{"x-fake-header", "nocolon"}, status: 400, contains: "x-fake-header"},
		{name: "bad bool", path: "/openai/v1/chat/completions", body: `{}`, kv: []string{"x-fake-gzip", "maybe"}, status: 400},
		{name: "status out of range", path: "/openai/v1/chat/completions", body: `{}`, kv: []string{"x-fake-status", "200"}, status: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakevendor.New(fakevendor.Options{})
			req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
			for i := 0; i+1 < len(tc.kv); i += 2 {
				req.Header.Add(tc.kv[i], tc.kv[i+1])
			}
			rec := httptest.NewRecorder()
			fake.ServeHTTP(rec, req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.contains)
		})
	}
}

func TestAdminEndpoints(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := openaiClient(url + "/openai/v1/")
	_, err := client.Chat.Completions.New(context.Background(), chatParams(0))
	require.NoError(t, err)
	resp, err := http.Get(url + "/__fake/calls")
	require.NoError(t, err)
	var calls []struct {
		Seq    int64             `json:"seq"`
		Vendor string            `json:"vendor"`
		Body   string            `json:"body"`
		Usage  *fakevendor.Usage `json:"usage"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&calls))
	require.NoError(t, resp.Body.Close())
	require.Len(t, calls, 1)
	require.Equal(t, "openai", calls[0].Vendor)
	require.Contains(t, calls[0].Body, `"model":"gpt-4o"`)
	require.Equal(t, fake.Calls()[0].Usage, calls[0].Usage)

	resp, err = http.Post(url+"/__fake/reset", "", nil)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Empty(t, fake.Calls())
}

func TestMaxCallsAndOnCall(t *testing.T) {
	var mu sync.Mutex
	var seen []int64
	fake := fakevendor.New(fakevendor.Options{MaxCalls: 2, OnCall: func(c fakevendor.Call) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c.Seq)
	}})
	for range 3 {
		serveRecorded(fake, "/openai/v1/models", "")
	}
	calls := fake.Calls()
	require.Len(t, calls, 2)
	require.Equal(t, []int64{2, 3}, []int64{calls[0].Seq, calls[1].Seq})
	require.Equal(t, []int64{1, 2, 3}, seen)
}

func TestConcurrentCallsRecordTheirOwnUsage(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := anthropicClient(url + "/anthropic/")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			s := client.Messages.NewStreaming(context.Background(), messageParams(100),
				anthropicHeaders("x-fake-output-tokens", fmt.Sprint(i+1), "x-fake-input-tokens", fmt.Sprint(100+i))...)
			var msg anthropic.Message
			for s.Next() {
				if err := msg.Accumulate(s.Current()); err != nil {
					errs <- err
					return
				}
			}
			if err := s.Err(); err != nil {
				errs <- err
				return
			}
			if msg.Usage.InputTokens != int64(100+i) || msg.Usage.OutputTokens != int64(i+1) {
				errs <- fmt.Errorf("call %d: usage %+v", i, msg.Usage)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	calls := fake.Calls()
	require.Len(t, calls, 16)
	for _, c := range calls {
		require.True(t, c.Completed)
		require.Equal(t, c.Usage.InputTokens-99, c.Usage.OutputTokens)
	}
}

func TestFailTimesDefaultStatus(t *testing.T) {
	tests := []struct {
		prefix, path, body string
		status             int
	}{
		{"openai", "/openai/v1/chat/completions", `{"model":"m","messages":[{"content":"x"}]}`, 503},
		{"anthropic", "/anthropic/v1/messages", `{"model":"m","max_tokens":3,"messages":[{"content":"x"}]}`, 529},
		{"gemini", "/gemini/v1beta/models/m:generateContent", `{"contents":[{"parts":[{"text":"x"}]}]}`, 503},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			fake := fakevendor.New(fakevendor.Options{})
			first := serveRecorded(fake, tc.path, tc.body, "x-fake-fail-times", "1")
			second := serveRecorded(fake, tc.path, tc.body, "x-fake-fail-times", "1")
			require.Equal(t, tc.status, first.status)
			require.Equal(t, 200, second.status)
		})
	}
}

func TestHTTP2Cleartext(t *testing.T) {
	fake := fakevendor.New(fakevendor.Options{Seed: 9})
	hs := httptest.NewUnstartedServer(fake)
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	t.Cleanup(hs.Close)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	for _, reset := range []string{"", "500"} {
		t.Run("reset="+reset, func(t *testing.T) {
			fake.Reset()
			req, err := http.NewRequest(http.MethodPost, hs.URL+streamBodies[2].path, strings.NewReader(streamBodies[2].body))
			require.NoError(t, err)
			if reset != "" {
				req.Header.Set("x-fake-reset-after-bytes", reset)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, 2, resp.ProtoMajor)
			raw, err := io.ReadAll(resp.Body)
			call := onlyCall(t, fake)
			if reset == "" {
				require.NoError(t, err)
				require.Contains(t, string(raw), "event: message_stop")
				require.True(t, call.Completed)
				return
			}
			require.Error(t, err)
			require.Len(t, raw, 500)
			require.False(t, call.Completed)
		})
	}
}
