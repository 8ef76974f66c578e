package cost

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// realCall is the part of a record of the real-traffic corpus
// (bench/estimation/testdata/real, see its README) that pricing needs.
type realCall struct {
	Path     string          `json:"path"`
	Vendor   string          `json:"vendor"`
	Endpoint string          `json:"endpoint"`
	URLPath  string          `json:"url_path"`
	RawQuery string          `json:"raw_query"`
	Stream   bool            `json:"stream"`
	Request  json.RawMessage `json:"request"`
	Response string          `json:"response"`
}

func loadRealCalls(t *testing.T) []realCall {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "bench", "estimation", "testdata", "real", "*.jsonl.gz"))
	require.NoError(t, err)
	if len(files) == 0 {
		t.Skip("coverage skipped: no real-traffic corpus in bench/estimation/testdata/real")
	}
	var calls []realCall
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		zr, err := gzip.NewReader(fh)
		require.NoError(t, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var c realCall
			require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
			calls = append(calls, c)
		}
		require.NoError(t, sc.Err())
		require.NoError(t, fh.Close())
	}
	return calls
}

// replay reads a call as the gateway does: the request through the
// provider's parser, the response through its usage parser.
func (c realCall) replay(reg providers.Registry) (providers.RequestInfo, providers.Usage) {
	p := reg[c.Vendor]
	req := providers.Request{Method: "POST", Path: c.URLPath, RawQuery: c.RawQuery,
		ContentType: "application/json", Body: c.Request}
	info := p.ParseRequest(req)
	ct := "application/json"
	if body := strings.TrimSpace(c.Response); strings.HasPrefix(body, "data:") || strings.HasPrefix(body, "event:") {
		ct = "text/event-stream"
	}
	up := p.NewUsageParser(req, info, ct)
	up.Write([]byte(c.Response))
	return info, up.Usage()
}

// TestRealTrafficCoverage replays every priceable call of the real-traffic
// corpus (all but token counting, which is free) and requires at least 99 %
// of them to be priced by the shipped prices, resolving the vendor's
// reported model first and the requested one second, as the gateway's
// pricer does. It logs the models left unpriced, and the coverage the
// hand-written table that preceded the catalog reached on the same calls.
func TestRealTrafficCoverage(t *testing.T) {
	calls := loadRealCalls(t)
	reg := providers.Default()
	tables := map[string]*Table{"catalog": DefaultTable(), "handwritten": handwrittenTable(t)}
	priced := map[string]int{}
	unpriced := map[string]map[string]int{}
	n := 0
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range calls {
		if c.Endpoint == string(providers.EndpointCountTokens) {
			continue
		}
		info, u := c.replay(reg)
		require.True(t, u.Found, "%s: no usage read from the response", c.Path)
		n++
		for name, tab := range tables {
			ok := false
			for _, m := range []string{u.Model, info.Model} {
				if m == "" {
					continue
				}
				if _, _, ok = tab.LookupAt(c.Vendor, m, at); ok {
					break
				}
			}
			if ok {
				priced[name]++
				continue
			}
			if unpriced[name] == nil {
				unpriced[name] = map[string]int{}
			}
			unpriced[name][fmt.Sprintf("%s/%s (requested %s)", c.Vendor, u.Model, info.Model)]++
		}
	}
	require.Positive(t, n)
	for _, name := range []string{"handwritten", "catalog"} {
		t.Logf("%s: %d of %d calls priced (%.1f %%)", name, priced[name], n, 100*float64(priced[name])/float64(n))
	}
	var left []string
	for m, k := range unpriced["catalog"] {
		left = append(left, fmt.Sprintf("%s ×%d", m, k))
	}
	slices.Sort(left)
	t.Logf("unpriced with the catalog: %s", strings.Join(left, "; "))
	require.GreaterOrEqual(t, float64(priced["catalog"]), 0.99*float64(n), "coverage below 99 %%: %v", left)
}
