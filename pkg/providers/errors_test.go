package providers

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestErrorBody(t *testing.T) {
	msg := `limit "x" reached`
	tests := []struct {
		name string
		p    Provider
		info RequestInfo
		kind ErrorKind
		want string
	}{
		{"openai 429", OpenAI{}, RequestInfo{}, ErrorRateLimited,
			`{"error":{"message":"limit \"x\" reached","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}`},
		{"openai 503", OpenAI{}, RequestInfo{}, ErrorUnavailable,
			`{"error":{"message":"limit \"x\" reached","type":"server_error","param":null,"code":"service_unavailable"}}`},
		{"anthropic 429", Anthropic{}, RequestInfo{Endpoint: EndpointMessages}, ErrorRateLimited,
			`{"type":"error","error":{"type":"rate_limit_error","message":"limit \"x\" reached"}}`},
		{"anthropic 503", Anthropic{}, RequestInfo{Endpoint: EndpointMessages}, ErrorUnavailable,
			`{"type":"error","error":{"type":"overloaded_error","message":"limit \"x\" reached"}}`},
		{"anthropic compatible endpoint speaks openai", Anthropic{}, RequestInfo{OpenAICompatible: true}, ErrorRateLimited,
			`{"error":{"message":"limit \"x\" reached","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}`},
		{"gemini 429", Gemini{}, RequestInfo{}, ErrorRateLimited,
			`{"error":{"code":429,"message":"limit \"x\" reached","status":"RESOURCE_EXHAUSTED"}}`},
		{"gemini 503", Gemini{}, RequestInfo{}, ErrorUnavailable,
			`{"error":{"code":503,"message":"limit \"x\" reached","status":"UNAVAILABLE"}}`},
		{"openai 413", OpenAI{}, RequestInfo{}, ErrorRequestTooLarge,
			`{"error":{"message":"limit \"x\" reached","type":"invalid_request_error","param":null,"code":"request_too_large"}}`},
		{"anthropic 413", Anthropic{}, RequestInfo{Endpoint: EndpointMessages}, ErrorRequestTooLarge,
			`{"type":"error","error":{"type":"request_too_large","message":"limit \"x\" reached"}}`},
		{"gemini 413", Gemini{}, RequestInfo{}, ErrorRequestTooLarge,
			`{"error":{"code":413,"message":"limit \"x\" reached","status":"INVALID_ARGUMENT"}}`},
		{"openai 401", OpenAI{}, RequestInfo{}, ErrorUnauthenticated,
			`{"error":{"message":"limit \"x\" reached","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{"openai 403", OpenAI{}, RequestInfo{}, ErrorPermissionDenied,
			`{"error":{"message":"limit \"x\" reached","type":"invalid_request_error","param":null,"code":"permission_denied"}}`},
		{"anthropic 401", Anthropic{}, RequestInfo{Endpoint: EndpointMessages}, ErrorUnauthenticated,
			`{"type":"error","error":{"type":"authentication_error","message":"limit \"x\" reached"}}`},
		{"anthropic 403", Anthropic{}, RequestInfo{Endpoint: EndpointMessages}, ErrorPermissionDenied,
			`{"type":"error","error":{"type":"permission_error","message":"limit \"x\" reached"}}`},
		{"gemini 401", Gemini{}, RequestInfo{}, ErrorUnauthenticated,
			`{"error":{"code":401,"message":"limit \"x\" reached","status":"UNAUTHENTICATED"}}`},
		{"gemini 403", Gemini{}, RequestInfo{}, ErrorPermissionDenied,
			`{"error":{"code":403,"message":"limit \"x\" reached","status":"PERMISSION_DENIED"}}`},
		{"gemini compatible endpoint speaks openai", Gemini{}, RequestInfo{OpenAICompatible: true}, ErrorBudgetExceeded,
			`{"error":{"message":"limit \"x\" reached","type":"insufficient_quota","param":null,"code":"budget_exceeded"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.ErrorBody(tt.info, tt.kind, msg)
			require.JSONEq(t, tt.want, string(got))
			require.True(t, json.Valid(got))
		})
	}
}
