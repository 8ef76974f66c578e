// Package envoytest emulates the parts of Envoy that an external processing
// (ext_proc) server talks to, so the server can be tested end to end without
// an Envoy binary: the HTTP connection manager (HCM), the ext_proc HTTP
// filter and the router. It follows Envoy's documented and source-level
// behaviour as of Envoy 1.37, the supported floor (1.34-1.36 did not send
// local replies to ext_proc, runtime guard skip_ext_proc_on_local_reply,
// re-enabled by envoyproxy/envoy#41769; the 1.37 stream close optimisation
// is emulated) and does not import any package of this project: it is test
// machinery, independent of the code under test.
//
// # Use
//
// Build a Config by hand or from a real bootstrap with FromBootstrap, create
// a Front with New and either mount it as an http.Handler or Start it on a
// loopback port. After requests finish, AccessLog / WaitAccessLog return what
// an Envoy access log would print (status, RESPONSE_CODE_DETAILS, response
// flags, attempt count, the ext_proc dynamic metadata) plus every ext_proc
// message exchanged (downstream, and per upstream attempt in
// UpstreamAttempts), and Violations lists every protocol deviation of the
// server (Violation.Attempt tells which upstream filter saw it). Set Config.OnViolation to Strict(t) to fail a test on any deviation,
// including those Envoy would silently ignore.
//
// # What is emulated
//
// HCM: request headers as Envoy builds them (lower-case keys, repeated
// headers as repeated entries, :method :path :scheme :authority, generated
// x-request-id, x-forwarded-proto, x-forwarded-for/x-envoy-internal with
// use_remote_address), virtual host and route matching (prefix, path,
// safe_regex, path_separated_prefix, header matchers), local replies, the
// server header, per-stream buffer limit (per_connection_buffer_limit_bytes),
// HTTP/1.1 trailers only with http_protocol_options.enable_trailers
// (Config.EnableTrailers; otherwise the codec drops request trailers, the
// body then ends the stream, and response trailers).
//
// ext_proc filter, one gRPC Process stream per HTTP request opened lazily on
// the first message:
//   - messages: values only in raw_value, end_of_stream rules (no body message
//     after headers with end_of_stream), metadata_context on every message
//     (forwarding namespaces), attributes once per direction under
//     "envoy.filters.http.ext_proc", protocol_config on the first message;
//   - gRPC message sizes as Envoy's client has them: requests uncapped (a
//     BUFFERED body up to the buffer limit is one message, so a server left
//     at grpc-go's 4 MiB receive default fails the stream), replies
//     uncapped unless envoy_grpc max_receive_message_length is set;
//   - processing modes per direction: headers SEND/SKIP, bodies NONE,
//     BUFFERED, STREAMED (pipelined: chunks are sent without waiting, replies
//     are matched FIFO and each chunk is re-injected in order, chunk sizes as
//     the peer delivered them, possibly an empty final chunk) and
//     BUFFERED_PARTIAL, trailers only when present and SEND; a body that
//     arrived completely while the header reply was pending goes out as one
//     message in every mode and keeps the headers held until its reply
//     (Envoy's BufferedBodyCallback: header mutations honoured,
//     content-length checked); send_body_without_waiting_for_header_response;
//   - BUFFERED_PARTIAL: headers held while the body is queued; at end of
//     stream (or trailers) the queue goes out with end_of_stream as the
//     stream ends; once strictly more than the buffer limit is queued, all
//     of it goes out with end_of_stream=false; the reply may mutate the
//     headers, which then go on with the (mutated) chunk, the data that came
//     meanwhile, and the rest of the body unprocessed (no further body
//     messages, never a 500); BUFFERED over the limit is a 500 for responses
//     and 413 for requests;
//   - strict reply matching: a reply of the wrong type or without a response
//     is spurious (fail-open: close and continue; otherwise status_on_error);
//     override_message_timeout (1 ms..max_message_timeout, once per message);
//     per-message timeout (continue or 504); server OK close (continue
//     without ext_proc), non-OK close (continue or 500); messages after
//     completion are ignored;
//   - mutations: removals then sets, only the append BoolValue is honoured,
//     value+raw_value is a 500, value alone yields an empty header (1.32+),
//     invalid names/values are a 500 (details: MutationUtils' message, e.g.
//     Invalid_character_in_set_headers_mutation.; spurious replies:
//     spurious_message or unhandled_message, as handleErrorResponse sets
//     them), the default mutation checker
//     (allow_all_routing, allow_envoy, disallow_system, disallow_all,
//     allow/disallow_expression, disallow_is_error, :status >= 200);
//   - content-length: removed at header time for STREAMED, BUFFERED_PARTIAL
//     and BUFFERED with header SKIP (decided from the pre-override mode);
//     BUFFERED with header SEND keeps it (decided from the mode at header
//     time: a mode_override keeps it too); a content-length set by a
//     mutation is skipped when the current (post-override) mode removes it;
//     a BufferedBodyCallback body replacement of another length is a 500,
//     a BUFFERED_PARTIAL or STREAMED one leaves a stale content-length;
//     header mutations in body replies apply only while the headers are
//     held; wire framing is checked on both sides;
//   - CONTINUE_AND_REPLACE, clear_route_cache (re-routes; honoured only on
//     request-side replies carrying a header_mutation), mode_override (only
//     with allow_mode_override, not with send_body_without_waiting, only on
//     headers replies, allowed_override_modes, DEFAULT header/trailer modes
//     mean "filter-level value", body modes literal, both directions);
//   - a BUFFERED request body over the buffer limit is answered 413
//     "Payload Too Large" (request_payload_too_large) through the whole
//     encoder chain: the server, which saw request_headers and never
//     request_body, gets the 413's response_headers (and body, per mode),
//     possibly before it answered request_headers; a late reply's
//     dynamic_metadata is still written; a BUFFERED response body over the
//     limit is a direct 500 (response_payload_too_large) bypassing the chain;
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
// Upstream ext_proc (Config.UpstreamExtProc per cluster, from the cluster's
// HttpProtocolOptions.http_filters, else Config.RouterUpstreamExtProc from
// the router's upstream_http_filters; FromBootstrap rejects a chain that
// does not end with envoy.filters.http.upstream_codec):
//   - a new filter instance and Process stream per attempt, with the same
//     state machine, modes, checker, mode_override, timeouts,
//     failure_mode_allow and metadata handling as the downstream filter;
//   - request_headers carry the request as the upstream sees it: rewritten
//     :path/:authority, x-envoy-original-path, x-envoy-expected-rq-timeout-ms,
//     x-envoy-attempt-count (include_request_attempt_count), the downstream
//     x-request-id; the body the router buffered is replayed per attempt;
//   - like Envoy, the upstream filters work on the router's request header
//     map, which all attempts share: a request header mutation made on
//     attempt N is still present on attempt N+1;
//   - response_headers of every attempt, including retried ones; the retry
//     decision uses the headers after the upstream filter (a :status rewrite
//     changes it) and x-envoy-upstream-service-time is added after it;
//   - a local reply of the upstream filter (ImmediateResponse, error, message
//     timeout, buffer overflow) is final, never retried, and passes through
//     the downstream filter chain like any local reply;
//   - an attempt that ends without response headers reaching the router
//     (connect failure, reset, per-try timeout) destroys its filter: the
//     server sees the stream cancelled without response_headers;
//   - like Envoy (acceptHeadersFromRouter: newStream before decodeHeaders)
//     the upstream connection is opened in parallel with the upstream
//     filter chain, so a connect failure can end an attempt while its
//     request_headers are still unanswered: no reply, no metadata from it;
//   - clear_route_cache is ignored (reported); dynamic_metadata is written to
//     the request's StreamInfo, which Envoy's upstream filter manager shares
//     with the downstream stream (UpstreamFilterManager::streamInfo), so it
//     appears in AccessLogEntry.DynamicMetadata and in later downstream
//     metadata_context; each attempt's own writes are also kept in
//     UpstreamAttempt.UpstreamDynamicMetadata.
//
// CORS filter (envoy.filters.http.cors, Config.CORS, placed before or after
// ext_proc as in http_filters; policies from VirtualHost.CORS and Route.CORS,
// i.e. typed_per_filter_config CorsPolicy, else the deprecated cors fields):
//   - the route's policy wins field by field over the virtual host's
//     (allow_origin_string_match, allow_methods, allow_headers,
//     expose_headers, max_age, allow_credentials,
//     forward_not_matching_preflights); filter_enabled 0% or a disabled
//     FilterConfig on the most specific level turns it off; no route or a
//     direct_response route: no CORS;
//   - a preflight (OPTIONS with Origin and access-control-request-method)
//     from an allowed origin is answered with a 200 without body (details
//     "cors_response"): decoder filters after the CORS filter never see the
//     request, but the reply, like every local reply, traverses the whole
//     encoder chain (commonEncodePrefix starts at encoder_filters_.begin()),
//     so with CORS before ext_proc the ext_proc filter opens a stream whose
//     only message is response_headers (end_of_stream) and waits for the
//     reply; "*" methods/headers echo the requested ones; a disallowed
//     origin's preflight is forwarded unless forward_not_matching_preflights
//     is false (then answered without access-control-allow-origin);
//   - response headers of an allowed request get access-control-allow-origin,
//     -allow-credentials and -expose-headers, added by the CORS encoder
//     whenever its decodeHeaders latched the origin: upstream responses, the
//     preflight reply itself and local replies sent while no response
//     started (ext_proc request-phase replies and errors, router replies,
//     413). With CORS after ext_proc, a reply sent while ext_proc still held
//     the request headers finds CORS without a latched origin; ext_proc's
//     response-phase direct replies bypass the chain altogether;
//   - not emulated: shadow_enabled (only stats), partial filter_enabled
//     percentages (rejected), allow_private_network_access, stats.
//
// Upstream protocol per cluster (Config.ClusterProtocols, from
// HttpProtocolOptions explicit_http_config or use_downstream_protocol_config):
// HTTP/1.1 by default, HTTP/2 with prior knowledge (h2c) for
// http2_protocol_options. Envoy's HTTP/1 codec drops response trailers
// unless http_protocol_options.enable_trailers, so only then, or over
// HTTP/2, do trailers reach the filters; with response trailers SKIP the
// last body message then has end_of_stream=false and no trailers message
// follows (STREAMED, BUFFERED and BUFFERED_PARTIAL alike).
//
// Cluster hosts and priorities (Config.ClusterEndpoints, from a
// load_assignment with several endpoints, priorities, hostnames or
// endpoint metadata; a LOGICAL_DNS cluster with more than one endpoint is
// refused as Envoy refuses it):
//   - the host is chosen before each attempt's upstream filter chain exists
//     (Filter::decodeHeaders and Filter::doRetry call createConnPool): the
//     lowest priority with hosts, or on a retry what the retry priority
//     envoy.retry_priorities.previous_priorities leaves (update_frequency;
//     attempted priorities excluded; none left: the original load);
//     RetryPolicy.PreviousPriorities, validated like Envoy's factory;
//   - auto_host_rewrite writes the host's hostname into the shared request
//     header map as :authority before each attempt's upstream filters (in
//     Envoy, UpstreamRequest::onPoolReady does it: before the upstream
//     filters with a pooled connection, after them on a new one, when they
//     saw the previous attempt's :authority; a server must learn the
//     target from the host metadata, not from :authority);
//   - the attempt's upstream filters see their own host in the attributes
//     upstream.address and
//     xds.upstream_host_metadata.filter_metadata['ns']['key'] (a missing
//     key is left out, as a CEL evaluation error is); the downstream filter
//     sees the latest attempt's host;
//   - UpstreamAttempt.Host / Priority record where each attempt went.
//
// Router: prefix_rewrite, regex_rewrite, host_rewrite_literal, auto_host_rewrite,
// x-envoy-original-path, x-envoy-expected-rq-timeout-ms and
// x-envoy-upstream-service-time (unless suppress_envoy_headers),
// x-envoy-attempt-count on upstream requests (include_request_attempt_count)
// and on responses and router local replies passed downstream
// (include_attempt_count_in_response), route
// timeout (from the end of the request), per-try timeout (ignored once the
// response started), per_try_idle_timeout (armed with the per-try timeout,
// re-armed on response headers and each body chunk, so a gap longer than it
// cuts a stream mid-response: downstream reset, details
// upstream_per_try_idle_timeout, flag UT), retry_on (5xx,
// gateway-error, reset, connect-failure, retriable-4xx,
// retriable-status-codes), num_retries, x-envoy-max-retries set by a filter
// before the router (takes precedence over num_retries when the route
// retries on anything; RetryStateImpl::create removes it and the other
// x-envoy retry headers, which are not emulated and reported unsupported,
// from the upstream request), fully jittered exponential back-off
// (uniform in [0, interval), interval base, 2·base, 4·base… until it reaches
// max_interval/2, then max_interval), rate_limited_retry_back_off
// (retry-after seconds, x-ratelimit-reset Unix timestamps, max_interval;
// [interval, 1.5·interval), not advancing the exponential interval; 1 ms or
// less falls back to the exponential one), retries resend the (possibly mutated) body the
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
//   - more than one ext_proc or cors filter per chain, other HTTP filters
//     (compressor, header_mutation, ... downstream or upstream, cors
//     upstream: parsed but ignored);
//   - per-route ExtProcPerRoute for upstream ext_proc filters (not applied);
//     upstream filters are not validated as registered for the upstream
//     category;
//   - pool failures other than a failed connect (overflow, no healthy
//     host); the parallel connect is a TCP probe beside the HTTP
//     transport's own connection;
//   - HTTP/2 downstream, TLS (TLS clusters are reached over plain HTTP;
//     auto_config, which needs ALPN, is rejected as unsupported),
//     RDS/EDS/xDS, health checking and outlier detection (every host is
//     healthy), load balancing within a priority (its first host), weighted
//     clusters, redirects, hedging, retry budgets, retry host predicates
//     (rejected), shadowing; auto_host_rewrite does not set
//     x-forwarded-host;
//   - header wire order (net/http does not keep it: regular headers are
//     sorted by name), header count/size limits other than 100 mutation
//     entries, local_reply_config, CEL attributes beyond the common
//     request/response/source/destination/upstream/xds names;
//   - per-attempt response flags (StreamIdleTimeout on the upstream stream).
//
// Timing: per-message and route timers use real time; retry back-off uses
// Config.Sleep and Config.Jitter so tests need not wait.
package envoytest
