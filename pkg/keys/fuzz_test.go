package keys

import (
	"strings"
	"testing"
)

// FuzzExtract: extraction never panics, and what it returns is a
// non-empty, trimmed value of the source it names.
func FuzzExtract(f *testing.F) {
	f.Add("Bearer llmp-x", "", "", "/v1/chat/completions")
	f.Add("", "k", "", "/")
	f.Add("Basic x", "", "g", "/p?key=q")
	f.Add("", "", "", "/p?k%65y=%zz&key=ok")
	f.Fuzz(func(t *testing.T, auth, xAPIKey, goog, path string) {
		h := map[string]string{"authorization": auth, "x-api-key": xAPIKey, "x-goog-api-key": goog}
		got := Extract(func(n string) string { return h[n] }, path)
		p := presented{got.Secret.Reveal(), got.Source}
		switch p.Source {
		case SourceNone:
			if p.Secret != "" {
				t.Fatal("secret without a source")
			}
		case SourceAuthorization:
			if !strings.Contains(auth, p.Secret) || p.Secret == "" {
				t.Fatalf("secret %q not from authorization %q", p.Secret, auth)
			}
		case SourceXAPIKey:
			if strings.TrimSpace(xAPIKey) != p.Secret || p.Secret == "" {
				t.Fatalf("secret %q not x-api-key %q", p.Secret, xAPIKey)
			}
		case SourceGoogAPIKey:
			if strings.TrimSpace(goog) != p.Secret || p.Secret == "" {
				t.Fatalf("secret %q not x-goog-api-key %q", p.Secret, goog)
			}
		case SourceQuery:
			if p.Secret == "" || !strings.Contains(path, "?") {
				t.Fatalf("query secret %q from %q", p.Secret, path)
			}
		default:
			t.Fatalf("unknown source %q", p.Source)
		}
	})
}
