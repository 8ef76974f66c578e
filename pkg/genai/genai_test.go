package genai

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

func TestOperation(t *testing.T) {
	tests := []struct {
		ep   providers.Endpoint
		want string
	}{
		{providers.EndpointChatCompletions, "chat"},
		{providers.EndpointMessages, "chat"},
		{providers.EndpointResponses, "chat"},
		{providers.EndpointGenerateContent, "generate_content"},
		{providers.EndpointStreamGenerateContent, "generate_content"},
		{providers.EndpointCompletions, "text_completion"},
		{providers.EndpointEmbeddings, "embeddings"},
		{providers.EndpointCountTokens, "count_tokens"},
		{providers.EndpointOther, "other"},
		{"", "other"},
	}
	for _, tt := range tests {
		t.Run(string(tt.ep), func(t *testing.T) { require.Equal(t, tt.want, Operation(tt.ep)) })
	}
}

func TestProvider(t *testing.T) {
	require.Equal(t, "openai", Provider("openai"))
	require.Equal(t, "anthropic", Provider("anthropic"))
	require.Equal(t, "gcp.gemini", Provider("gemini"))
	require.Equal(t, "mistral", Provider("mistral"))
}

func TestErrorTypeOf(t *testing.T) {
	tests := []struct {
		name string
		rec  processor.Record
		want string
	}{
		{"success", processor.Record{Status: 200, Outcome: processor.OutcomeCompleted}, ""},
		{"refused", processor.Record{Status: 429, Outcome: processor.OutcomeRefused, RefusedBy: processor.RateLimitDetails}, "llm_proxy_rate_limited"},
		{"refused without details", processor.Record{Status: 429, Outcome: processor.OutcomeRefused}, "429"},
		{"replaced", processor.Record{Status: 503, Outcome: processor.OutcomeCompleted, ReplacedBy: processor.CircuitDegradedDetails}, "llm_proxy_provider_degraded"},
		{"vendor error", processor.Record{Status: 529, Outcome: processor.OutcomeCompleted}, "529"},
		{"client error", processor.Record{Status: 400, Outcome: processor.OutcomeCompleted}, "400"},
		{"stream cut", processor.Record{Status: 200, Outcome: processor.OutcomeAborted}, "aborted"},
		{"no response", processor.Record{Outcome: processor.OutcomeAborted}, "aborted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { require.Equal(t, tt.want, ErrorTypeOf(&tt.rec)) })
	}
}
