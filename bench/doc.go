// Package bench measures what the ext_proc server costs Envoy per request.
//
// It holds [Null], an ext_proc server that does no work but answers with the
// same reply types and the same response-body mode_override as
// pkg/processor, so Envoy exchanges exactly the same messages with either.
// The benchmarks in this package play one Envoy request lifecycle (request
// headers, request body, response headers, response body) over a real gRPC
// connection on 127.0.0.1 against both servers and report latency
// percentiles, allocations, CPU per request and the ratios ours/null. See
// README.md for how to run them and read the numbers.
package bench
