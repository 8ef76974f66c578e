// Package cost prices LLM calls: per-model prices in USD per million
// tokens from a maintained open catalog and from explicit entries, the
// resolution of a requested model name to a priced model, and the cost of
// one response's token usage.
//
// # Prices
//
// A [Price] has input, output, cache-read, cache-write (Anthropic's
// 5-minute writes) and 1-hour cache-write rates, audio and image rates,
// optional long-prompt [Tier]s and optional service-tier prices. A zero
// rate means "no separate rate": those tokens are billed at the rate of
// the enclosing kind (cache reads at input, 1-hour writes at the write
// rate, audio output at output), never for free. Reasoning tokens have no
// rate of their own because all three vendors bill them as output.
//
// # Sources and resolution
//
// The shipped prices are a snapshot of pydantic's genai-prices catalog
// (catalog/genai-prices.json, MIT licence, see [DefaultCatalog],
// [CatalogLicense]; `make update-prices` refreshes it from the npm
// package), with its price history: [Table.LookupAt] returns the price in
// force at the request's time. A [Table] consults, in order, the explicit
// entries (the gateway configuration: always wins), the catalog, and the
// shipped supplements for models the catalog lacks (default_pricing.yml,
// [DefaultModels]). Explicit entries resolve by exact name, alias, OpenAI
// fine-tune family ("ft:<base>:...") and a fixed dated-snapshot grammar
// ("-YYYY-MM-DD", "-YYYYMMDD", "@YYYYMMDD", "-DDD"), after removing
// Gemini's "models/" prefix; the catalog resolves by its own match rules
// (as its reference implementation does), then by the snapshot grammar.
// There is no fuzzy matching of ours, and an unknown name returns ok=false
// so the caller can record the cost as unknown. See [Table].
//
//	tab, err := cost.NewTableWithDefaults(cfg.PricingModels)
//	b, model, ok := tab.PriceCall("anthropic", &info, &usage, requestStart)
//	if !ok {
//		// cost unknown: record it so and count a metric
//	}
//	// b.TotalUSD for records, b.Micros() for integer counters.
//
// [Table.PriceCall] is the gateway's one pricing path: it resolves the
// reported model, then the requested one, at the request's start time and
// prices every count the usage parsers surface ([UsageOf]: 1-hour cache
// writes, audio and image tokens, OpenAI's service tier).
//
// # Computation
//
// [Compute] follows the usage split of package providers: on Anthropic's
// native endpoint input tokens exclude the cache, everywhere else
// (OpenAI, Gemini, every OpenAI-compatible endpoint) input includes the
// cached tokens. The whole prompt selects the tier; the prompt and output
// are then split into kinds of tokens as the catalog's reference
// implementation splits them, which the cross-check test
// (crosscheck_test.go, Node.js) verifies to the micro-dollar. Costs keep
// full float64 precision with no per-field rounding; [Breakdown.Micros]
// and [ToMicros] round once, to the nearest micro-dollar, for counters.
// [Estimate] prices a reservation before the vendor answers.
//
// Everything here is pure computation over immutable values: safe for
// concurrent use, and Lookup, LookupAt, PriceCall, Compute and Estimate
// do not allocate (the catalog remembers at most 1,024 names per provider that
// its rules had to match; see [Catalog]).
package cost
