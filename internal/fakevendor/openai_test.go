package fakevendor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

func chatUsage(u openai.CompletionUsage) fakevendor.Usage {
	return fakevendor.Usage{
		InputTokens:      u.PromptTokens,
		OutputTokens:     u.CompletionTokens,
		TotalTokens:      u.TotalTokens,
		CacheReadTokens:  u.PromptTokensDetails.CachedTokens,
		CacheWriteTokens: u.PromptTokensDetails.CacheWriteTokens,
		ReasoningTokens:  u.CompletionTokensDetails.ReasoningTokens,
	}
}

func chatParams(maxTokens int64) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello there, fake vendor")},
	}
	if maxTokens > 0 {
		p.MaxCompletionTokens = openai.Int(maxTokens)
	}
	return p
}

func TestOpenAIChatCompletions(t *testing.T) {
	// Prompt text: "be brief" + "\n" + "hello there, fake vendor" = 33 runes -> 9 tokens.
	tests := []struct {
		name      string
		base      string // vendor prefix of the OpenAI-compatible endpoint
		headers   []string
		maxTokens int64
		want      fakevendor.Usage
		finish    string
	}{
		{name: "derived", base: "/openai/v1/", want: fakevendor.Usage{InputTokens: 9, OutputTokens: 12, TotalTokens: 21}, finish: "stop"},
		{name: "forced", base: "/openai/v1/", headers: []string{
			"x-fake-input-tokens", "100", "x-fake-output-tokens", "40", "x-fake-cached-tokens", "64",
			"x-fake-cache-write-tokens", "5", "x-fake-reasoning-tokens", "30",
		}, want: fakevendor.Usage{InputTokens: 100, OutputTokens: 40, TotalTokens: 140, CacheReadTokens: 64, CacheWriteTokens: 5, ReasoningTokens: 30}, finish: "stop"},
		{name: "bounded by max tokens", base: "/openai/v1/", maxTokens: 5, headers: []string{"x-fake-reasoning-tokens", "2"},
			want: fakevendor.Usage{InputTokens: 9, OutputTokens: 5, TotalTokens: 14, ReasoningTokens: 2}, finish: "length"},
		{name: "cached raises derived input", base: "/openai/v1/", headers: []string{"x-fake-cached-tokens", "50"},
			want: fakevendor.Usage{InputTokens: 50, OutputTokens: 12, TotalTokens: 62, CacheReadTokens: 50}, finish: "stop"},
		{name: "anthropic compatible", base: "/anthropic/v1/", want: fakevendor.Usage{InputTokens: 9, OutputTokens: 12, TotalTokens: 21}, finish: "stop"},
		{name: "gemini compatible", base: "/gemini/v1beta/openai/", want: fakevendor.Usage{InputTokens: 9, OutputTokens: 12, TotalTokens: 21}, finish: "stop"},
	}
	for _, tc := range tests {
		for _, mode := range []string{"json", "stream", "stream+usage"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				fake, url := startFake(t, fakevendor.Options{})
				client := openaiClient(url+tc.base, headerOpts(tc.headers...)...)
				params := chatParams(tc.maxTokens)
				ctx := context.Background()
				var got openai.ChatCompletion
				switch mode {
				case "json":
					resp, err := client.Chat.Completions.New(ctx, params)
					require.NoError(t, err)
					got = *resp
				default:
					if mode == "stream+usage" {
						params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
					}
					stream := client.Chat.Completions.NewStreaming(ctx, params)
					var acc openai.ChatCompletionAccumulator
					chunks := 0
					var lastUsage openai.CompletionUsage
					for stream.Next() {
						chunk := stream.Current()
						acc.AddChunk(chunk)
						chunks++
						if chunk.JSON.Usage.Valid() {
							lastUsage = chunk.Usage
						}
						if mode == "stream" {
							require.False(t, chunk.JSON.Usage.Valid(), "usage chunk without include_usage")
						}
					}
					require.NoError(t, stream.Err())
					require.Greater(t, chunks, 3)
					got = acc.ChatCompletion
					// The accumulator keeps only some usage details; take the usage chunk as sent.
					got.Usage = lastUsage
				}
				call := onlyCall(t, fake)
				require.Equal(t, 200, call.Status)
				require.True(t, call.Completed)
				require.Equal(t, "gpt-4o", call.Model)
				require.Equal(t, "chat.completions", call.Endpoint)
				require.Equal(t, "sk-test-openai", call.APIKey)
				require.Equal(t, mode != "json", call.Stream)
				require.Len(t, got.Choices, 1)
				require.Equal(t, tc.finish, got.Choices[0].FinishReason)
				require.Equal(t, int(tc.want.OutputTokens-tc.want.ReasoningTokens), len(strings.Fields(got.Choices[0].Message.Content)))
				if mode == "stream" {
					require.Nil(t, call.Usage, "no usage is sent without include_usage")
					return
				}
				require.NotNil(t, call.Usage)
				require.Equal(t, tc.want, *call.Usage)
				require.Equal(t, tc.want, chatUsage(got.Usage))
				require.Equal(t, call.Usage, call.DeliveredUsage)
			})
		}
	}
}

func responsesUsage(u responses.ResponseUsage) fakevendor.Usage {
	return fakevendor.Usage{
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens,
		CacheReadTokens: u.InputTokensDetails.CachedTokens, CacheWriteTokens: u.InputTokensDetails.CacheWriteTokens,
		ReasoningTokens: u.OutputTokensDetails.ReasoningTokens,
	}
}

func TestOpenAIResponses(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		maxOut  int64
		want    fakevendor.Usage
		status  responses.ResponseStatus
	}{
		// "answer me" = 9 runes -> 3 tokens; instructions "short" 5 runes + "\n" -> 15 runes -> 4 tokens.
		{name: "derived", want: fakevendor.Usage{InputTokens: 4, OutputTokens: 12, TotalTokens: 16}, status: "completed"},
		{name: "forced", headers: []string{"x-fake-output-tokens", "20", "x-fake-reasoning-tokens", "8", "x-fake-cached-tokens", "3"},
			want: fakevendor.Usage{InputTokens: 4, OutputTokens: 20, TotalTokens: 24, CacheReadTokens: 3, ReasoningTokens: 8}, status: "completed"},
		{name: "incomplete", maxOut: 4, want: fakevendor.Usage{InputTokens: 4, OutputTokens: 4, TotalTokens: 8}, status: "incomplete"},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name + "/json"
			if stream {
				name = tc.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				fake, url := startFake(t, fakevendor.Options{})
				client := openaiClient(url+"/openai/v1/", headerOpts(tc.headers...)...)
				params := responses.ResponseNewParams{
					Model:        "gpt-4.1",
					Instructions: openai.String("short"),
					Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("answer me")},
				}
				if tc.maxOut > 0 {
					params.MaxOutputTokens = openai.Int(tc.maxOut)
				}
				var got responses.Response
				if !stream {
					resp, err := client.Responses.New(context.Background(), params)
					require.NoError(t, err)
					got = *resp
				} else {
					s := client.Responses.NewStreaming(context.Background(), params)
					var types []string
					var text strings.Builder
					for s.Next() {
						ev := s.Current()
						types = append(types, ev.Type)
						switch ev.Type {
						case "response.output_text.delta":
							text.WriteString(ev.Delta)
						case "response.completed", "response.incomplete":
							got = ev.Response
						}
					}
					require.NoError(t, s.Err())
					require.Equal(t, "response.created", types[0])
					require.Contains(t, types, "response.output_text.delta")
					require.Equal(t, got.OutputText(), text.String())
				}
				call := onlyCall(t, fake)
				require.Equal(t, "responses", call.Endpoint)
				require.Equal(t, tc.status, got.Status)
				require.Equal(t, tc.want, responsesUsage(got.Usage))
				require.Equal(t, tc.want, *call.Usage)
				require.True(t, call.Completed)
				require.Equal(t, call.Usage, call.DeliveredUsage)
			})
		}
	}
}

func TestOpenAIEmbeddings(t *testing.T) {
	tests := []struct {
		name   string
		input  openai.EmbeddingNewParamsInputUnion
		format openai.EmbeddingNewParamsEncodingFormat
		count  int
		tokens int64
	}{
		{name: "string float", input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("embed this text")}, format: "float", count: 1, tokens: 4},
		{name: "strings base64", input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "bcdef"}}, format: "base64", count: 2, tokens: 3},
		{name: "tokens", input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{1, 2, 3, 4, 5}}, count: 1, tokens: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, fakevendor.Options{})
			client := openaiClient(url + "/openai/v1/")
			resp, err := client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
				Model: "text-embedding-3-small", Input: tc.input, EncodingFormat: tc.format, Dimensions: openai.Int(8),
			})
			require.NoError(t, err)
			require.Len(t, resp.Data, tc.count)
			for _, d := range resp.Data {
				require.Len(t, d.Embedding, 8)
			}
			require.Equal(t, tc.tokens, resp.Usage.PromptTokens)
			call := onlyCall(t, fake)
			require.Equal(t, fakevendor.Usage{InputTokens: tc.tokens, TotalTokens: tc.tokens}, *call.Usage)
		})
	}
}

func TestOpenAIModels(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := openaiClient(url + "/openai/v1/")
	page, err := client.Models.List(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, page.Data)
	require.Equal(t, "models.list", onlyCall(t, fake).Endpoint)
}

func TestOpenAIErrors(t *testing.T) {
	tests := []struct {
		name     string
		base     string
		headers  []string
		status   int
		typ      string
		code     string
		wantBody string
	}{
		{name: "429 default", base: "/openai/v1/", headers: []string{"x-fake-status", "429"}, status: 429, typ: "requests", code: "rate_limit_exceeded"},
		{name: "429 insufficient_quota", base: "/openai/v1/", headers: []string{"x-fake-status", "429", "x-fake-error-type", "insufficient_quota"}, status: 429, typ: "insufficient_quota", code: "insufficient_quota"},
		{name: "429 tokens", base: "/openai/v1/", headers: []string{"x-fake-status", "429", "x-fake-error-type", "tokens"}, status: 429, typ: "tokens", code: "rate_limit_exceeded"},
		{name: "500", base: "/openai/v1/", headers: []string{"x-fake-status", "500"}, status: 500, typ: "server_error"},
		{name: "503", base: "/openai/v1/", headers: []string{"x-fake-status", "503"}, status: 503, typ: "server_error"},
		{name: "401", base: "/openai/v1/", headers: []string{"x-fake-status", "401"}, status: 401, typ: "invalid_request_error", code: "invalid_api_key"},
		{name: "404", base: "/openai/v1/", headers: []string{"x-fake-status", "404"}, status: 404, typ: "invalid_request_error", code: "model_not_found", wantBody: "gpt-4o"},
		{name: "400", base: "/openai/v1/", headers: []string{"x-fake-status", "400"}, status: 400, typ: "invalid_request_error"},
		{name: "custom type", base: "/openai/v1/", headers: []string{"x-fake-status", "502", "x-fake-error-type", "upstream_error"}, status: 502, typ: "upstream_error", code: "upstream_error"},
		{name: "bad directive", base: "/openai/v1/", headers: []string{"x-fake-status", "abc"}, status: 400, typ: "invalid_request_error", wantBody: "x-fake-status"},
		{name: "anthropic compatible 529", base: "/anthropic/v1/", headers: []string{"x-fake-status", "529"}, status: 529, typ: "overloaded_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, fakevendor.Options{})
			client := openaiClient(url+tc.base, headerOpts(tc.headers...)...)
			_, err := client.Chat.Completions.New(context.Background(), chatParams(0))
			var apiErr *openai.Error
			require.True(t, errors.As(err, &apiErr), "error %v", err)
			require.Equal(t, tc.status, apiErr.StatusCode)
			require.Equal(t, tc.typ, apiErr.Type)
			require.Equal(t, tc.code, apiErr.Code)
			require.Contains(t, apiErr.RawJSON(), tc.wantBody)
			call := onlyCall(t, fake)
			require.Equal(t, tc.status, call.Status)
			require.Nil(t, call.Usage)
			require.NotEmpty(t, call.RequestID)
			require.Equal(t, call.RequestID, apiErr.Response.Header.Get(map[string]string{
				"/openai/v1/": "x-request-id", "/anthropic/v1/": "request-id"}[tc.base]))
		})
	}
}

func TestOpenAIUnknownPath(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := openaiClient(url + "/openai/v1/")
	err := client.Post(context.Background(), "nope", map[string]any{}, nil, option.WithMaxRetries(0))
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr))
	require.Equal(t, 404, apiErr.StatusCode)
	require.Empty(t, onlyCall(t, fake).Endpoint)
}
