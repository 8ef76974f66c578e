// Package glob matches model and provider names against shell-like patterns
// ("gpt-4o*", "*-mini", "models/gemini-?.5-*"). It is the one pattern
// language of the rules: gateway keys' allowed models and failover chains.
// Functions are pure and safe for concurrent use.
package glob

// Match reports whether s matches pattern, where '*' matches any run of
// bytes (including '/', so "models/gemini-*" and "*-mini" both work) and
// '?' matches exactly one byte; every other byte matches itself. It runs in
// O(len(pattern)*len(s)) time without allocating.
func Match(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		// '*' first: a literal '*' in s must not consume the wildcard.
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchAny reports whether s matches one of patterns; an empty list
// matches everything.
func MatchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}
