package credentials

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzStripKeyParam: the result never carries a key parameter, keeps
// everything before the query, and only ever drops parameters.
func FuzzStripKeyParam(f *testing.F) {
	for _, s := range []string{"/p", "/p?key=a", "/p?a=1&key=x&b=2", "/p?k%65y=x", "/p?%zz&key", "/p??key=&&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		out, changed := StripKeyParam(path)
		if !changed && out != path {
			t.Fatalf("unchanged but different: %q -> %q", path, out)
		}
		base, _, _ := strings.Cut(path, "?")
		if !strings.HasPrefix(out, base) {
			t.Fatalf("path before the query changed: %q -> %q", path, out)
		}
		if len(out) > len(path) {
			t.Fatalf("grew: %q -> %q", path, out)
		}
		_, q, ok := strings.Cut(out, "?")
		if !ok {
			return
		}
		for part := range strings.SplitSeq(q, "&") {
			name, _, _ := strings.Cut(part, "=")
			if n, err := url.QueryUnescape(name); err == nil && n == "key" {
				t.Fatalf("key parameter survived: %q -> %q", path, out)
			}
		}
	})
}
