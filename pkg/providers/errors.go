package providers

import (
	"encoding/json"
	"strconv"
)

// openAIError renders OpenAI's error object:
// {"error":{"message":..,"type":..,"param":null,"code":..}}.
func openAIError(kind ErrorKind, message string) []byte {
	typ, code := "rate_limit_exceeded", "rate_limit_exceeded"
	switch kind {
	case ErrorUnavailable:
		typ, code = "server_error", "service_unavailable"
	case ErrorBudgetExceeded:
		typ, code = "insufficient_quota", "budget_exceeded"
	case ErrorRequestTooLarge:
		typ, code = "invalid_request_error", "request_too_large"
	case ErrorUnauthenticated:
		typ, code = "invalid_request_error", "invalid_api_key"
	case ErrorPermissionDenied:
		typ, code = "invalid_request_error", "permission_denied"
	}
	return []byte(`{"error":{"message":` + quote(message) + `,"type":"` + typ + `","param":null,"code":"` + code + `"}}`)
}

// anthropicError renders Anthropic's error envelope:
// {"type":"error","error":{"type":..,"message":..}}.
func anthropicError(kind ErrorKind, message string) []byte {
	typ := "rate_limit_error"
	switch kind {
	case ErrorUnavailable:
		typ = "overloaded_error"
	case ErrorBudgetExceeded:
		// Anthropic has no 402; its billing errors are permission_error.
		typ = "permission_error"
	case ErrorRequestTooLarge:
		// Anthropic's own 413 type.
		typ = "request_too_large"
	case ErrorUnauthenticated:
		typ = "authentication_error"
	case ErrorPermissionDenied:
		typ = "permission_error"
	}
	return []byte(`{"type":"error","error":{"type":"` + typ + `","message":` + quote(message) + `}}`)
}

// geminiError renders Google's RPC status shape:
// {"error":{"code":..,"message":..,"status":..}}.
func geminiError(kind ErrorKind, message string) []byte {
	code, status := 429, "RESOURCE_EXHAUSTED"
	switch kind {
	case ErrorUnavailable:
		code, status = 503, "UNAVAILABLE"
	case ErrorBudgetExceeded:
		code, status = 402, "FAILED_PRECONDITION"
	case ErrorRequestTooLarge:
		code, status = 413, "INVALID_ARGUMENT"
	case ErrorUnauthenticated:
		code, status = 401, "UNAUTHENTICATED"
	case ErrorPermissionDenied:
		code, status = 403, "PERMISSION_DENIED"
	}
	return []byte(`{"error":{"code":` + strconv.Itoa(code) + `,"message":` + quote(message) + `,"status":"` + status + `"}}`)
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		return `""`
	}
	return string(b)
}

// ErrorBody implements [Provider.ErrorBody].
func (OpenAI) ErrorBody(_ RequestInfo, kind ErrorKind, message string) []byte {
	return openAIError(kind, message)
}

// ErrorBody implements [Provider.ErrorBody]. The OpenAI-compatible
// endpoint answers in OpenAI's shape.
func (Anthropic) ErrorBody(info RequestInfo, kind ErrorKind, message string) []byte {
	if info.OpenAICompatible {
		return openAIError(kind, message)
	}
	return anthropicError(kind, message)
}

// ErrorBody implements [Provider.ErrorBody]. The OpenAI-compatible
// endpoints answer in OpenAI's shape.
func (Gemini) ErrorBody(info RequestInfo, kind ErrorKind, message string) []byte {
	if info.OpenAICompatible {
		return openAIError(kind, message)
	}
	return geminiError(kind, message)
}
