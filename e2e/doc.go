// Package e2e holds the end-to-end suite: the official OpenAI, Anthropic and
// Gemini Go SDKs call the gateway, which is Envoy (emulated by
// internal/envoytest from envoy/envoy-mock.yaml, or a real Envoy container
// in the Docker runner) with this project's ext_proc server, in front of the
// fake vendor (internal/fakevendor). One scenario table runs on both
// runners; scenarios see the gateway only as a URL, the vendor's record of
// what it sent, and Envoy's JSON access log.
package e2e
