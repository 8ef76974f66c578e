package processor

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

func TestInjectIncludeUsage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","stream":true}`, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`},
		{"  \n{ \"model\":\"m\"}", "  \n{\"stream_options\":{\"include_usage\":true}, \"model\":\"m\"}"},
		{`{}`, ""},
		{`[1]`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, string(injectIncludeUsage([]byte(tt.in))))
		})
	}
}

func TestWantsUsageInjection(t *testing.T) {
	stream := providers.RequestInfo{Endpoint: providers.EndpointChatCompletions, Stream: true}
	body := []byte(`{"model":"m","stream":true}`)
	require.True(t, wantsUsageInjection("openai", stream, body))
	require.False(t, wantsUsageInjection("anthropic", stream, body))
	require.False(t, wantsUsageInjection("openai", providers.RequestInfo{Endpoint: providers.EndpointChatCompletions}, body))
	require.False(t, wantsUsageInjection("openai", stream, []byte(`{"stream_options":{"include_usage":false}}`)))
	compat := stream
	compat.OpenAICompatible = true
	require.False(t, wantsUsageInjection("openai", compat, body))
}

const sseStream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n" +
	"data: [DONE]\n\n"

func TestUsageChunkFilterAnySplit(t *testing.T) {
	want := strings.Replace(sseStream, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n", "", 1)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		var f usageChunkFilter
		var got []byte
		rest := []byte(sseStream)
		for len(rest) > 0 {
			n := 1 + rng.IntN(40)
			n = min(n, len(rest))
			got = append(got, f.Write(rest[:n])...)
			rest = rest[n:]
		}
		got = append(got, f.Flush()...)
		require.Equal(t, want, string(got))
	}
}

func TestUsageChunkFilterPassesOversizedEvents(t *testing.T) {
	big := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", maxHeld+10) + "\"}}]}\n\n"
	var f usageChunkFilter
	out := f.Write([]byte(big[:maxHeld+5]))
	out = append(out, f.Write([]byte(big[maxHeld+5:]+"data: [DONE]\n\n"))...)
	out = append(out, f.Flush()...)
	require.Equal(t, big+"data: [DONE]\n\n", string(out))
	require.Empty(t, f.held, "nothing is held after the stream")
}
