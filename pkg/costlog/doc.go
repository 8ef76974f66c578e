// Package costlog records one cost record per request (a [Record], one
// JSON object per line) and delivers it to sinks without ever blocking the
// request path.
//
// # Record fields
//
// Field names are stable; every field is present on every line.
//
//	timestamp            RFC 3339 with nanoseconds, UTC: when the request arrived
//	request_id           gateway request id (x-request-id)
//	user                 user id, empty when unknown
//	key_id               API key hash (processor.KeyID), or a gateway key's id; never a raw key
//	team                 gateway key's team (omitted when empty)
//	key_owner            gateway key's owner (omitted when empty)
//	client_ip            client address, no port
//	provider             "openai", "anthropic" or "gemini"
//	model                model as requested by the client; a failed-over call's target model
//	requested_provider   a failed-over call's requested provider (omitted otherwise)
//	requested_model      a failed-over call's requested model (omitted otherwise)
//	priced_model         canonical model used for pricing; empty when unpriced
//	endpoint             operation, e.g. "chat_completions"
//	path                 inbound path
//	stream               true for streamed responses
//	status               HTTP status returned to the client
//	outcome              "completed", "aborted" or "refused"
//	input_tokens         prompt tokens, cached ones included
//	output_tokens        completion tokens, reasoning ones included
//	total_tokens         vendor total, or input + output
//	cache_read_tokens    prompt tokens read from the vendor's cache
//	cache_write_tokens   prompt tokens written to the vendor's cache
//	reasoning_tokens     output tokens spent on reasoning
//	input_cost_usd       uncached input cost, USD
//	cache_read_cost_usd  cache read cost, USD
//	cache_write_cost_usd cache write cost, USD
//	output_cost_usd      output cost, USD
//	total_cost_usd       sum of the four costs, USD
//	cost_known           false when the model has no price (costs are then 0)
//	usage_estimated      true when the vendor reported no usage and the
//	                     token counts are the gateway's estimates
//	finish_reason        vendor finish/stop reason as sent
//	vendor_request_id    vendor's request id header
//	ttfb_ms              milliseconds to the first response byte
//	duration_ms          milliseconds to the end of the response
//
// # Writer
//
// The request path calls [Writer.Enqueue], which copies the record into a
// bounded in-memory queue and returns at once (about 45 ns, no
// allocation). When the queue is full the record is dropped: Enqueue
// returns false, [Stats].Dropped grows, [Hooks].OnDrop fires and the
// writer logs the number of drops at its next tick. Nothing is lost
// silently.
//
// One background goroutine takes records in enqueue order, in batches of
// batch_size (written as soon as full) or whatever is waiting every
// flush_interval, and writes each batch to every sink in turn. A failed
// write is retried with exponential backoff (retry_backoff doubling up to
// max_retry_backoff) up to max_attempts times per sink; each failed
// attempt reaches [Hooks].OnWriteError as a *[WriteError]; after the last
// the batch is counted in [Stats].Failed and logged at error level. A
// record is acknowledged, counted in [Stats].Written and reported through
// [Hooks].OnWritten, only once every sink accepted its batch. Delivery is
// at-least-once: a retried batch may reach a sink twice (request_id tells
// the copies apart). A slow or failing sink delays the others and, while
// it retries, lets the queue fill.
//
// [Writer.Close] stops accepting, writes everything still queued within
// its context, closes the sinks and reports in its error how many records
// it could not flush. Call it on SIGTERM with the shutdown deadline.
// [Writer.Flush] writes what is queued and waits; [Writer.Reopen] reopens
// file sinks after log rotation (call it on SIGHUP).
//
// # Sinks
//
// [FileSink] appends JSON lines to a file opened with O_APPEND. Each batch
// is one write call followed by fsync; a record counts as written only
// after the fsync of its batch returned, so an acknowledged record
// survives a crash of the process or the host. A failed write is
// truncated away so that no partial line precedes the retry.
//
// [RedisStreamSink] sends one XADD per record, field "record" holding the
// JSON, in one pipeline per batch, with approximate trimming
// (MAXLEN ~ max_len). Redis acknowledges to memory; durability beyond
// that is the server's persistence configuration.
//
// # Configuration
//
// [Config] is read under features.cost_tracking:
//
//	features:
//	  cost_tracking:
//	    enabled: true            # default false
//	    queue_size: 10000
//	    batch_size: 256          # at most queue_size
//	    flush_interval: 200ms    # Go duration string
//	    max_attempts: 5
//	    retry_backoff: 100ms
//	    max_retry_backoff: 5s
//	    sinks:                   # default: one file sink at cost_records.jsonl
//	      - type: file
//	        file: {path: /var/log/llm-proxy/cost_records.jsonl}
//	      - type: redis_stream
//	        redis_stream:
//	          url: redis://redis:6379/0   # or address, password, db
//	          stream: llm_cost_records    # default
//	          max_len: 1000000            # default; approximate
//
// [New] builds the sinks and the Writer from it; when the feature is
// disabled it returns a nil *Writer, on which every method is a no-op.
package costlog
