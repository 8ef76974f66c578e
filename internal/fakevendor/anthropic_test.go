package fakevendor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

func anthropicUsage(u anthropic.Usage) fakevendor.Usage {
	return fakevendor.Usage{
		InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadTokens: u.CacheReadInputTokens, CacheWriteTokens: u.CacheCreationInputTokens,
		ReasoningTokens: u.OutputTokensDetails.ThinkingTokens,
	}
}

func messageParams(maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: maxTokens,
		System:    []anthropic.TextBlockParam{{Text: "you are terse"}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("what is a fake vendor?"))},
	}
}

func TestAnthropicMessages(t *testing.T) {
	// "you are terse" + "\n" + "what is a fake vendor?" = 36 runes -> 9 tokens.
	tests := []struct {
		name      string
		headers   []string
		maxTokens int64
		want      fakevendor.Usage
		stop      anthropic.StopReason
	}{
		{name: "derived", maxTokens: 1024, want: fakevendor.Usage{InputTokens: 9, OutputTokens: 12}, stop: "end_turn"},
		{name: "cache and thinking", maxTokens: 1024, headers: []string{
			"x-fake-cached-tokens", "2048", "x-fake-cache-write-tokens", "512", "x-fake-reasoning-tokens", "10",
		}, want: fakevendor.Usage{InputTokens: 9, OutputTokens: 22, CacheReadTokens: 2048, CacheWriteTokens: 512, ReasoningTokens: 10}, stop: "end_turn"},
		{name: "forced", maxTokens: 1024, headers: []string{"x-fake-input-tokens", "3", "x-fake-output-tokens", "7"},
			want: fakevendor.Usage{InputTokens: 3, OutputTokens: 7}, stop: "end_turn"},
		{name: "max tokens", maxTokens: 4, want: fakevendor.Usage{InputTokens: 9, OutputTokens: 4}, stop: "max_tokens"},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name + "/json"
			if stream {
				name = tc.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				fake, url := startFake(t, fakevendor.Options{})
				client := anthropicClient(url+"/anthropic/", anthropicHeaders(tc.headers...)...)
				var msg anthropic.Message
				if !stream {
					resp, err := client.Messages.New(context.Background(), messageParams(tc.maxTokens))
					require.NoError(t, err)
					msg = *resp
				} else {
					s := client.Messages.NewStreaming(context.Background(), messageParams(tc.maxTokens))
					var types []string
					for s.Next() {
						ev := s.Current()
						types = append(types, ev.Type)
						require.NoError(t, msg.Accumulate(ev))
					}
					require.NoError(t, s.Err())
					require.Equal(t, "message_start", types[0])
					require.Equal(t, "message_stop", types[len(types)-1])
					require.Contains(t, types, "message_delta")
				}
				call := onlyCall(t, fake)
				require.Equal(t, "messages", call.Endpoint)
				require.Equal(t, "sk-ant-test", call.APIKey)
				require.Equal(t, tc.stop, msg.StopReason)
				require.Len(t, msg.Content, 1)
				require.Equal(t, int(tc.want.OutputTokens-tc.want.ReasoningTokens), len(strings.Fields(msg.Content[0].Text)))
				require.Equal(t, tc.want, anthropicUsage(msg.Usage))
				require.Equal(t, tc.want, *call.Usage)
				require.Equal(t, call.Usage, call.DeliveredUsage)
				require.True(t, call.Completed)
				require.True(t, strings.HasPrefix(call.RequestID, "req_"))
			})
		}
	}
}

func TestAnthropicCountTokens(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := anthropicClient(url + "/anthropic/")
	p := messageParams(0)
	resp, err := client.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model: p.Model, Messages: p.Messages, System: anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: p.System},
	})
	require.NoError(t, err)
	require.Equal(t, int64(9), resp.InputTokens)
	require.Equal(t, "messages.count_tokens", onlyCall(t, fake).Endpoint)
}

func TestAnthropicErrors(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		status  int
		typ     string
		message string
	}{
		{name: "529 overloaded", headers: []string{"x-fake-status", "529"}, status: 529, typ: "overloaded_error", message: "Overloaded"},
		{name: "429 rate limit", headers: []string{"x-fake-status", "429"}, status: 429, typ: "rate_limit_error"},
		{name: "401", headers: []string{"x-fake-status", "401"}, status: 401, typ: "authentication_error"},
		{name: "404", headers: []string{"x-fake-status", "404"}, status: 404, typ: "not_found_error", message: "claude-sonnet-4-5"},
		{name: "400", headers: []string{"x-fake-status", "400"}, status: 400, typ: "invalid_request_error"},
		{name: "500", headers: []string{"x-fake-status", "500"}, status: 500, typ: "api_error"},
		{name: "variant", headers: []string{"x-fake-status", "400", "x-fake-error-type", "billing_error"}, status: 400, typ: "billing_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, fakevendor.Options{})
			client := anthropicClient(url+"/anthropic/", anthropicHeaders(tc.headers...)...)
			_, err := client.Messages.New(context.Background(), messageParams(100))
			var apiErr *anthropic.Error
			require.True(t, errors.As(err, &apiErr), "error %v", err)
			require.Equal(t, tc.status, apiErr.StatusCode)
			require.EqualValues(t, tc.typ, apiErr.Type())
			require.Contains(t, apiErr.RawJSON(), tc.message)
			call := onlyCall(t, fake)
			require.Equal(t, call.RequestID, apiErr.RequestID)
			require.Equal(t, "status", call.Fault)
		})
	}
}

func TestAnthropicMissingMaxTokens(t *testing.T) {
	_, url := startFake(t, fakevendor.Options{})
	client := anthropicClient(url + "/anthropic/")
	_, err := client.Messages.New(context.Background(), messageParams(0))
	var apiErr *anthropic.Error
	require.True(t, errors.As(err, &apiErr))
	require.Equal(t, 400, apiErr.StatusCode)
	require.EqualValues(t, "invalid_request_error", apiErr.Type())
}

func TestAnthropicStreamError(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	client := anthropicClient(url+"/anthropic/", anthropicHeaders("x-fake-stream-error-after", "3")...)
	s := client.Messages.NewStreaming(context.Background(), messageParams(100))
	events := 0
	for s.Next() {
		events++
	}
	// message_start, content_block_start; the ping is skipped by the SDK.
	require.Equal(t, 2, events)
	var apiErr *anthropic.Error
	require.True(t, errors.As(s.Err(), &apiErr), "error %v", s.Err())
	require.EqualValues(t, "overloaded_error", apiErr.Type())
	call := onlyCall(t, fake)
	require.Equal(t, "stream-error", call.Fault)
	require.Equal(t, int64(1), call.Usage.OutputTokens, "only message_start usage was sent")
}
