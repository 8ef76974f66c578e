package glob

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"gpt-4o", "gpt-4o", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"gpt-4o*", "gpt-4o-mini", true},
		{"*-mini", "gpt-4o-mini", true},
		{"*-mini", "gpt-4o-mini-2", false},
		{"g?t", "gpt", true},
		{"g?t", "gt", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"models/*", "models/gemini-2.5-pro", true},
		{"**", "x", true},
		{"*000000*", "000000*00", true}, // found by FuzzMatchGlob
		{"a*", "a*", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Match(tt.pattern, tt.s), "%q ~ %q", tt.pattern, tt.s)
	}
	require.True(t, MatchAny(nil, "x"))
	require.False(t, MatchAny([]string{"a"}, "b"))
}

// FuzzMatch: a pattern always matches itself when it has no
// wildcard, and "*"+s+"*" matches anything containing s.
func FuzzMatch(f *testing.F) {
	f.Add("gpt-4o", "gpt-4o-mini")
	f.Fuzz(func(t *testing.T, s, sub string) {
		if !strings.ContainsAny(s, "*?") && !Match(s, s) {
			t.Fatalf("%q does not match itself", s)
		}
		if !strings.ContainsAny(sub, "*?") && strings.Contains(s, sub) && !Match("*"+sub+"*", s) {
			t.Fatalf("*%s* does not match %q", sub, s)
		}
		_ = Match(sub, s)
	})
}
