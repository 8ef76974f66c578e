// Package cost prices LLM calls: a table of per-model prices in USD per
// million tokens, explicit rules that resolve a requested model name to a
// priced model, and the cost of one response's token usage.
//
// # Prices
//
// A [Price] has input, output, cache-read and cache-write rates plus
// optional long-prompt [Tier]s (Gemini 2.5 Pro and Claude Sonnet 4 / 4.5
// above 200k prompt tokens). A zero cache rate means "no separate rate":
// those tokens are billed at the input rate, never for free. Reasoning
// tokens have no rate of their own because all three vendors bill them as
// output.
//
// # Table and resolution
//
// [NewTable] validates models by provider and reports every problem at once;
// [Table.Lookup] resolves a name by exact name, explicit alias, OpenAI
// fine-tune family ("ft:<base>:...") and a fixed dated-snapshot grammar
// ("-YYYY-MM-DD", "-YYYYMMDD", "@YYYYMMDD", "-DDD"), after removing
// Gemini's "models/" prefix. There is no fuzzy matching: "gpt-4o-mini" is
// never priced as "gpt-4o", and an unknown name returns ok=false so the
// caller can record the cost as unknown. See [Table] for the exact rules.
//
// The embedded default_pricing.yml (see [DefaultTable], [DefaultModels])
// covers the common OpenAI, Anthropic and Gemini models, each price with
// its source and date. Configured models replace defaults per model:
//
//	tab, err := cost.NewTableWithDefaults(cfg.PricingModels) // Merge + NewTable
//	p, model, ok := tab.Lookup("anthropic", usage.Model)
//	if !ok {
//		// cost unknown: record it so and count a metric
//	}
//	b := cost.Compute("anthropic", info.OpenAICompatible, p, cost.Usage{
//		Input: u.InputTokens, Output: u.OutputTokens, CacheRead: u.CacheReadTokens,
//		CacheWrite: u.CacheWriteTokens, Reasoning: u.ReasoningTokens,
//	})
//	// b.TotalUSD for records, b.Micros() for integer counters.
//
// # Computation
//
// [Compute] follows the usage split of package providers: on Anthropic's
// native endpoint input tokens exclude the cache, everywhere else
// (OpenAI, Gemini, every OpenAI-compatible endpoint) input includes the
// cached tokens, which are subtracted before the input rate applies. The
// tier is chosen by the whole prompt (uncached + cache read + cache
// write). Costs keep full float64 precision with no per-field rounding (the
// reference proxy rounded every field up to 1e-4 USD, over-charging small
// calls); [Breakdown.Micros] and [ToMicros] round once, to the nearest
// micro-dollar, for counters. [Estimate] prices a reservation before the
// vendor answers.
//
// Everything here is pure computation over immutable values: safe for
// concurrent use, and Lookup, Compute and Estimate do not allocate.
package cost
