// Package envoytest emulates the parts of Envoy that an external processing
// (ext_proc) server talks to, so the server can be tested end to end without
// an Envoy binary: the HTTP connection manager (HCM), the ext_proc HTTP
// filter and the router. It follows Envoy's documented and source-level
// behaviour (Envoy 1.34+ semantics, with the 1.37 stream close optimisation)
// and does not import any package of this project: it is test machinery,
// independent of the code under test.
//
// # Use
//
// Build a Config by hand or from a real bootstrap with FromBootstrap, create
// a Front with New and either mount it as an http.Handler or Start it on a
// loopback port. After requests finish, AccessLog / WaitAccessLog return what
// an Envoy access log would print (status, RESPONSE_CODE_DETAILS, response
// flags, attempt count, the ext_proc dynamic metadata) plus every ext_proc
// message exchanged, and Violations lists every protocol deviation of the
// server. Set Config.OnViolation to Strict(t) to fail a test on any deviation,
// including those Envoy would silently ignore.
//
// # What is emulated
//
// HCM: request headers as Envoy builds them (lower-case keys, repeated
// headers as repeated entries, :method :path :scheme :authority, generated
// x-request-id, x-forwarded-proto, x-forwarded-for/x-envoy-internal with
// use_remote_address), virtual host and route matching (prefix, path,
// safe_regex, path_separated_prefix, header matchers), local replies, the
// server header, per-stream buffer limit (per_connection_buffer_limit_bytes).
//
// ext_proc filter, one gRPC Process stream per HTTP request opened lazily on
// the first message:
//   - messages: values only in raw_value, end_of_stream rules (no body message
//     after headers with end_of_stream), metadata_context on every message
//     (forwarding namespaces), attributes once per direction under
//     "envoy.filters.http.ext_proc", protocol_config on the first message;
//   - processing modes per direction: headers SEND/SKIP, bodies NONE,
//     BUFFERED, STREAMED (pipelined: chunks are sent without waiting, replies
//     are matched FIFO and each chunk is re-injected in order, chunk sizes as
//     the peer delivered them, possibly an empty final chunk) and
//     BUFFERED_PARTIAL, trailers only when present and SEND; a body that
//     arrived completely while the header reply was pending goes out as one
//     message; send_body_without_waiting_for_header_response;
//   - strict reply matching: a reply of the wrong type or without a response
//     is spurious (fail-open: close and continue; otherwise status_on_error);
//     override_message_timeout (1 ms..max_message_timeout, once per message);
//     per-message timeout (continue or 504); server OK close (continue
//     without ext_proc), non-OK close (continue or 500); messages after
//     completion are ignored;
//   - mutations: removals then sets, only the append BoolValue is honoured,
//     value+raw_value is a 500, value alone yields an empty header (1.32+),
//     invalid names/values are a 500, the default mutation checker
//     (allow_all_routing, allow_envoy, disallow_system, disallow_all,
//     allow/disallow_expression, disallow_is_error, :status >= 200);
//   - content-length: removed at header time for STREAMED, BUFFERED_PARTIAL
//     and BUFFERED with header SKIP (decided from the pre-override mode);
//     BUFFERED with header SEND keeps it and a body replacement of another
//     length is a 500; header mutations in body replies apply only while the
//     headers are held; wire framing is checked on both sides;
//   - CONTINUE_AND_REPLACE, clear_route_cache (re-routes; honoured only on
//     request-side replies carrying a header_mutation), mode_override (only
//     with allow_mode_override, not with send_body_without_waiting, only on
//     headers replies, allowed_override_modes, DEFAULT header/trailer modes
//     mean "filter-level value", body modes literal, both directions);
//   - ImmediateResponse by phase: filter-chain local reply before any
//     response (upstream not called or reset), direct local reply while the
//     response headers are held, downstream reset once headers went out;
//     status < 200 becomes 200, default content-type text/plain, details;
//   - dynamic_metadata only for receiving namespaces (merged per namespace);
//   - per-route ExtProcPerRoute: disabled, processing_mode,
//     failure_mode_allow, metadata_options; forward_rules.
//   - stream closing: reset (server sees Canceled) by default, or half-close
//     and wait (server sees io.EOF) with GracefulClose; the stream is closed as
//     soon as no further message can be needed (KeepStreamUntilEnd disables).
//
// Router: prefix_rewrite, regex_rewrite, host_rewrite_literal,
// x-envoy-original-path, x-envoy-expected-rq-timeout-ms and
// x-envoy-upstream-service-time (unless suppress_envoy_headers), route
// timeout (from the end of the request), per-try timeout, retry_on (5xx,
// gateway-error, reset, connect-failure, retriable-4xx,
// retriable-status-codes), num_retries, fully jittered exponential back-off,
// rate_limited_retry_back_off (retry-after seconds, x-ratelimit-reset Unix
// timestamps, max_interval), retries resend the (possibly mutated) body the
// router saw and only the final attempt reaches the downstream ext_proc;
// local replies 503 "upstream connect error or disconnect/reset before
// headers. reset reason: ..." and 504 "upstream request timeout" pass through
// the ext_proc response path; an upstream reset after headers resets the
// downstream; bodies are forwarded chunk by chunk with a flush each (SSE is
// never buffered unless a BUFFERED mode asks for it); direct_response routes.
//
// # What is not emulated
//
//   - FULL_DUPLEX_STREAMED and GRPC body modes, observability_mode,
//     http_service, streamed_immediate_response, typed_dynamic_metadata
//     (reported as violations or rejected by New);
//   - an ext_proc filter in the upstream (per-attempt) filter chain, more
//     than one ext_proc filter, other HTTP filters (cors, compressor, ...:
//     parsed but ignored);
//   - h2c and HTTP/2 downstream, TLS (TLS clusters are reached over plain
//     HTTP), RDS/EDS/xDS, load balancing (first endpoint only), weighted
//     clusters, redirects, hedging, retry budgets, shadowing;
//   - header wire order (net/http does not keep it: regular headers are
//     sorted by name), header count/size limits other than 100 mutation
//     entries, local_reply_config, CEL attributes beyond the common
//     request/response/source/destination/upstream/xds names;
//   - the per-try timeout stops at response headers.
//
// Timing: per-message and route timers use real time; retry back-off uses
// Config.Sleep and Config.Jitter so tests need not wait.
package envoytest
