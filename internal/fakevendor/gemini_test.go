package fakevendor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

func geminiUsage(u *genai.GenerateContentResponseUsageMetadata) fakevendor.Usage {
	return fakevendor.Usage{
		InputTokens: int64(u.PromptTokenCount), OutputTokens: int64(u.CandidatesTokenCount),
		TotalTokens: int64(u.TotalTokenCount), CacheReadTokens: int64(u.CachedContentTokenCount),
		ReasoningTokens: int64(u.ThoughtsTokenCount),
	}
}

func geminiConfig(maxOut int32, kv ...string) *genai.GenerateContentConfig {
	cfg := &genai.GenerateContentConfig{
		SystemInstruction: genai.NewContentFromText("be helpful", genai.RoleUser),
		HTTPOptions:       &genai.HTTPOptions{Headers: httpHeader(kv...)},
	}
	if maxOut > 0 {
		cfg.MaxOutputTokens = maxOut
	}
	return cfg
}

func TestGeminiGenerateContent(t *testing.T) {
	// "be helpful" + "\n" + "tell me about fakes" = 30 runes -> 8 tokens.
	tests := []struct {
		name    string
		headers []string
		maxOut  int32
		want    fakevendor.Usage
		finish  genai.FinishReason
	}{
		{name: "derived", want: fakevendor.Usage{InputTokens: 8, OutputTokens: 12, TotalTokens: 20}, finish: genai.FinishReasonStop},
		{name: "thoughts and cache", headers: []string{"x-fake-cached-tokens", "6", "x-fake-reasoning-tokens", "30", "x-fake-output-tokens", "5"},
			want: fakevendor.Usage{InputTokens: 8, OutputTokens: 5, TotalTokens: 43, CacheReadTokens: 6, ReasoningTokens: 30}, finish: genai.FinishReasonStop},
		{name: "max tokens", maxOut: 3, want: fakevendor.Usage{InputTokens: 8, OutputTokens: 3, TotalTokens: 11}, finish: genai.FinishReasonMaxTokens},
	}
	contents := genai.Text("tell me about fakes")
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name + "/json"
			if stream {
				name = tc.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				fake, url := startFake(t, fakevendor.Options{})
				client := genaiClient(t, url+"/gemini/")
				ctx := context.Background()
				var last *genai.GenerateContentResponse
				var text strings.Builder
				if !stream {
					resp, err := client.Models.GenerateContent(ctx, "gemini-2.5-flash", contents, geminiConfig(tc.maxOut, tc.headers...))
					require.NoError(t, err)
					last = resp
					text.WriteString(resp.Text())
				} else {
					chunks := 0
					for resp, err := range client.Models.GenerateContentStream(ctx, "gemini-2.5-flash", contents, geminiConfig(tc.maxOut, tc.headers...)) {
						require.NoError(t, err)
						chunks++
						last = resp
						text.WriteString(resp.Text())
					}
					require.Positive(t, chunks)
				}
				call := onlyCall(t, fake)
				require.Equal(t, "gemini-test-key", call.APIKey)
				require.Equal(t, "gemini-2.5-flash", call.Model)
				require.Equal(t, stream, call.Stream)
				if stream {
					require.Equal(t, "sse", call.Query.Get("alt"))
				}
				require.Equal(t, tc.finish, last.Candidates[0].FinishReason)
				require.Equal(t, int(tc.want.OutputTokens), len(strings.Fields(text.String())))
				require.Equal(t, tc.want, geminiUsage(last.UsageMetadata))
				require.Equal(t, tc.want, *call.Usage)
				require.Equal(t, call.Usage, call.DeliveredUsage)
				require.Equal(t, call.RequestID, last.ResponseID)
			})
		}
	}
}

func TestGeminiStreamJSONArray(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	body := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	resp, err := http.Post(url+"/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?key=qkey", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json; charset=UTF-8", resp.Header.Get("Content-Type"))
	var chunks []map[string]any
	require.NoError(t, json.Unmarshal(raw, &chunks), string(raw))
	require.Len(t, chunks, 4) // 12 words, three per chunk
	usage := chunks[len(chunks)-1]["usageMetadata"].(map[string]any)
	call := onlyCall(t, fake)
	require.Equal(t, "qkey", call.APIKey)
	require.EqualValues(t, call.Usage.OutputTokens, usage["candidatesTokenCount"])
	require.EqualValues(t, call.Usage.TotalTokens, usage["totalTokenCount"])
}

func TestGeminiCountTokens(t *testing.T) {
	_, url := startFake(t, fakevendor.Options{})
	client := genaiClient(t, url+"/gemini/")
	resp, err := client.Models.CountTokens(context.Background(), "gemini-2.5-flash", genai.Text("count these words"), nil)
	require.NoError(t, err)
	require.Equal(t, int32(5), resp.TotalTokens) // 17 runes
}

func TestGeminiErrors(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		code    int
		status  string
		details bool
	}{
		{name: "429", headers: []string{"x-fake-status", "429"}, code: 429, status: "RESOURCE_EXHAUSTED"},
		{name: "429 quota", headers: []string{"x-fake-status", "429", "x-fake-error-type", "quota"}, code: 429, status: "RESOURCE_EXHAUSTED", details: true},
		{name: "503", headers: []string{"x-fake-status", "503"}, code: 503, status: "UNAVAILABLE"},
		{name: "400 key", headers: []string{"x-fake-status", "400", "x-fake-error-type", "API_KEY_INVALID"}, code: 400, status: "INVALID_ARGUMENT", details: true},
		{name: "401", headers: []string{"x-fake-status", "401"}, code: 401, status: "UNAUTHENTICATED"},
		{name: "404", headers: []string{"x-fake-status", "404"}, code: 404, status: "NOT_FOUND"},
		{name: "500", headers: []string{"x-fake-status", "500"}, code: 500, status: "INTERNAL"},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/json", true: "/stream"}[stream], func(t *testing.T) {
				_, url := startFake(t, fakevendor.Options{})
				client := genaiClient(t, url+"/gemini/")
				var err error
				if stream {
					for _, e := range client.Models.GenerateContentStream(context.Background(), "gemini-2.5-pro", genai.Text("x"), geminiConfig(0, tc.headers...)) {
						err = e
						break
					}
				} else {
					_, err = client.Models.GenerateContent(context.Background(), "gemini-2.5-pro", genai.Text("x"), geminiConfig(0, tc.headers...))
				}
				var apiErr genai.APIError
				require.True(t, errors.As(err, &apiErr), "error %v", err)
				require.Equal(t, tc.code, apiErr.Code)
				require.Equal(t, tc.status, apiErr.Status)
				require.NotEmpty(t, apiErr.Message)
				require.Equal(t, tc.details, len(apiErr.Details) > 0)
			})
		}
	}
}

func TestGeminiOpenAICompatErrorIsList(t *testing.T) {
	_, url := startFake(t, fakevendor.Options{})
	req, err := http.NewRequest(http.MethodPost, url+"/gemini/v1beta/openai/chat/completions",
		bytes.NewReader([]byte(`{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"x"}]}`)))
	require.NoError(t, err)
	req.Header.Set("x-fake-status", "429")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body []map[string]map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "RESOURCE_EXHAUSTED", body[0]["error"]["status"])
	require.Equal(t, 429, resp.StatusCode)
}

func TestGeminiOpenAICompatStream(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := openaiClient(url + "/gemini/v1beta/openai/")
	params := chatParams(0)
	params.Model = "gemini-2.5-flash"
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := client.Chat.Completions.NewStreaming(context.Background(), params)
	var usage openai.CompletionUsage
	for s.Next() {
		if c := s.Current(); c.JSON.Usage.Valid() {
			usage = c.Usage
		}
	}
	require.NoError(t, s.Err())
	call := onlyCall(t, fake)
	require.Equal(t, fakevendor.VendorGemini, call.Vendor)
	require.Equal(t, *call.Usage, chatUsage(usage))
}
