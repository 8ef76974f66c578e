// Package processor implements Envoy's external-processing service
// (envoy.service.ext_proc.v3.ExternalProcessor) for LLM traffic.
//
// Each Process stream carries one HTTP request. A per-stream state machine
// resolves the provider from :path, reads the request body to find the
// model, the stream flag and the billable text, asks the configured Guards
// (rate limits, circuit breaker, budgets) whether the call may go ahead,
// picks the response body mode with mode_override once the response headers
// show what is coming, reads usage from the response body as it streams by,
// and emits exactly one Record per provider request to the Observer. Paths of
// no provider are released at once with every later phase skipped.
//
// The package owns the Envoy wire contract. It depends on pkg/providers and
// pkg/config; guards and observers plug in through the small interfaces in
// guard.go, so the limiter and breaker packages never import this one.
package processor
