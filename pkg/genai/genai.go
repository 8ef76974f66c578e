// Package genai names LLM calls the way OpenTelemetry's GenAI semantic
// conventions do (https://opentelemetry.io/docs/specs/semconv/gen-ai/), so
// that metrics (pkg/telemetry) and traces (pkg/tracing) use one vocabulary.
//
// The conventions are in development; the names here follow the registry
// as of semantic conventions 1.41 (gen_ai.provider.name replaced
// gen_ai.system). Every function is pure and safe for concurrent use.
package genai

import (
	"strconv"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Attribute keys of the GenAI and general semantic conventions used here.
const (
	OperationName      = "gen_ai.operation.name"
	ProviderName       = "gen_ai.provider.name"
	RequestModel       = "gen_ai.request.model"
	RequestMaxTokens   = "gen_ai.request.max_tokens"
	ResponseModel      = "gen_ai.response.model"
	ResponseID         = "gen_ai.response.id"
	ResponseFinish     = "gen_ai.response.finish_reasons"
	UsageInputTokens   = "gen_ai.usage.input_tokens"
	UsageOutputTokens  = "gen_ai.usage.output_tokens"
	UsageCacheRead     = "gen_ai.usage.cache_read.input_tokens"
	UsageCacheCreation = "gen_ai.usage.cache_creation.input_tokens"
	TokenType          = "gen_ai.token.type"
	ErrorType          = "error.type"
	HTTPStatusCode     = "http.response.status_code"
)

// Values of gen_ai.token.type.
const (
	TokenTypeInput  = "input"
	TokenTypeOutput = "output"
)

// Operation returns gen_ai.operation.name for an endpoint: "chat" for chat
// completions, Anthropic messages and the OpenAI Responses API,
// "generate_content" for Gemini, "text_completion", "embeddings"; an
// endpoint the conventions have no value for keeps its own name
// ("count_tokens", "other").
func Operation(ep providers.Endpoint) string {
	switch ep {
	case providers.EndpointChatCompletions, providers.EndpointMessages, providers.EndpointResponses:
		return "chat"
	case providers.EndpointGenerateContent, providers.EndpointStreamGenerateContent:
		return "generate_content"
	case providers.EndpointCompletions:
		return "text_completion"
	case providers.EndpointEmbeddings:
		return "embeddings"
	case "":
		return string(providers.EndpointOther)
	}
	return string(ep)
}

// Provider returns gen_ai.provider.name for a gateway provider name:
// "openai", "anthropic", and "gcp.gemini" for the Gemini API (AI Studio);
// other names pass through.
func Provider(name string) string {
	if name == "gemini" {
		return "gcp.gemini"
	}
	return name
}

// ErrorTypeOf returns error.type for a call that failed, empty for one
// that did not: the Details of the gateway's own answer
// ("llm_proxy_rate_limited", "llm_proxy_provider_degraded", ...), else the
// HTTP status code of an error response ("429", "503"), else "aborted" for
// a stream that ended before its response did. The values are few, so they
// are fit for a metric label.
func ErrorTypeOf(r *processor.Record) string {
	switch {
	case r.Outcome == processor.OutcomeRefused && r.RefusedBy != "":
		return r.RefusedBy
	case r.ReplacedBy != "":
		return r.ReplacedBy
	case r.Status >= 400 && r.Status <= 599:
		return strconv.Itoa(r.Status)
	case r.Outcome == processor.OutcomeAborted:
		return "aborted"
	case r.Outcome == processor.OutcomeRefused:
		return "refused"
	}
	return ""
}
