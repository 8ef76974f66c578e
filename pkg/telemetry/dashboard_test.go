package telemetry

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// dashboardPath is the Grafana dashboard shipped in the repository.
const dashboardPath = "../../deploy/grafana/llm-proxy.json"

// exported describes a metric family the server registers.
type exported struct {
	kind   string // counter, gauge or histogram
	labels map[string]bool
}

// describer is a prometheus.Registerer that records what is registered
// instead of serving it: every family with its type and label names, even
// before it has a series.
type describer map[string]exported

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	descConst  = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
)

func (d describer) Register(c prometheus.Collector) error {
	var kind string
	switch c.(type) {
	case *prometheus.HistogramVec, prometheus.Histogram:
		kind = "histogram"
	case *prometheus.GaugeVec, prometheus.Gauge: // before Counter: a Gauge has Inc and Add too
		kind = "gauge"
	case *prometheus.CounterVec, prometheus.Counter:
		kind = "counter"
	default:
		return fmt.Errorf("describer: unknown collector %T", c)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		s := desc.String()
		m := descName.FindStringSubmatch(s)
		if m == nil {
			return fmt.Errorf("describer: no name in %s", s)
		}
		labels := map[string]bool{}
		for _, re := range []*regexp.Regexp{descLabels, descConst} {
			if lm := re.FindStringSubmatch(s); lm != nil && lm[1] != "" {
				for _, l := range strings.Split(lm[1], ",") {
					l, _, _ = strings.Cut(l, "=")
					labels[strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")] = true
				}
			}
		}
		d[m[1]] = exported{kind: kind, labels: labels}
	}
	return nil
}

func (d describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d describer) Unregister(prometheus.Collector) bool { return false }

// serverMetrics are the families pkg/gateway registers for the request,
// rate-limit and circuit-breaker metrics.
func serverMetrics() describer {
	d := describer{}
	NewMetrics(d)
	NewRateLimitMetrics(d)
	NewBreakerMetrics(d)
	return d
}

// promqlFuncs are the functions and aggregations the dashboard may use.
var promqlFuncs = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "topk": true,
	"rate": true, "increase": true, "histogram_quantile": true, "label_values": true,
}

// groupingWords introduce a parenthesised list of label names.
var groupingWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true}

var promqlIdent = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*$`)

var promqlToken = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[A-Za-z_:][A-Za-z0-9_:]*|=~|!~|!=|[(){},=]|[^\sA-Za-z_:"(){},=\[]+`)

// checkQuery checks a PromQL expression (or a Grafana label_values query)
// against the exported families: every metric exists (histograms through
// _bucket, _sum and _count), every matcher's label is the metric's, every
// grouping label belongs to a metric of the expression, and counters and
// histogram series are the only things rate and increase are applied to.
func checkQuery(expr string, fams describer) error {
	toks := promqlToken.FindAllString(expr, -1)
	var funcs []string // enclosing function per open parenthesis ("" for plain grouping)
	var grouping []string
	pending := "" // the function the next parenthesis opens
	metrics := map[string]exported{}
	bucket := false
	inFunc := func(names ...string) bool {
		for _, f := range funcs {
			for _, n := range names {
				if f == n {
					return true
				}
			}
		}
		return false
	}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tok == "(":
			funcs = append(funcs, pending)
			pending = ""
		case tok == ")":
			if len(funcs) == 0 {
				return fmt.Errorf("unbalanced ) in %q", expr)
			}
			funcs = funcs[:len(funcs)-1]
		case groupingWords[tok] && next == "(":
			i += 2
			for ; i < len(toks) && toks[i] != ")"; i++ {
				if toks[i] != "," {
					grouping = append(grouping, toks[i])
				}
			}
		case promqlFuncs[tok] && (next == "(" || groupingWords[next]):
			pending = tok
		case promqlIdent.MatchString(tok):
			if inFunc("label_values") && i > 0 && toks[i-1] == "," {
				grouping = append(grouping, tok) // label_values(metric, label)
				continue
			}
			if next == "(" {
				return fmt.Errorf("unknown function %s in %q", tok, expr)
			}
			fam, series, err := resolve(tok, fams)
			if err != nil {
				return fmt.Errorf("%w in %q", err, expr)
			}
			metrics[tok] = fam
			if series == "_bucket" {
				bucket = true
			}
			if fam.kind == "gauge" && inFunc("rate", "increase") {
				return fmt.Errorf("rate/increase over gauge %s in %q", tok, expr)
			}
			if next == "{" {
				i += 2
				for ; i+1 < len(toks) && toks[i] != "}"; i++ {
					if op := toks[i+1]; op == "=" || op == "!=" || op == "=~" || op == "!~" {
						if !fam.labels[toks[i]] && (toks[i] != "le" || series != "_bucket") {
							return fmt.Errorf("%s has no label %s in %q", tok, toks[i], expr)
						}
						i += 2 // operator, value
					}
				}
			}
		}
	}
	if len(funcs) != 0 {
		return fmt.Errorf("unbalanced ( in %q", expr)
	}
	if len(metrics) == 0 {
		return fmt.Errorf("no metric in %q", expr)
	}
label:
	for _, l := range grouping {
		if l == "le" && bucket {
			continue
		}
		for _, fam := range metrics {
			if fam.labels[l] {
				continue label
			}
		}
		return fmt.Errorf("label %s is on none of the metrics of %q", l, expr)
	}
	return nil
}

// resolve finds the family of a series name and the histogram suffix used.
func resolve(name string, fams describer) (exported, string, error) {
	if fam, ok := fams[name]; ok {
		if fam.kind == "histogram" {
			return exported{}, "", fmt.Errorf("histogram %s used without _bucket, _sum or _count", name)
		}
		return fam, "", nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if fam, ok := fams[base]; ok && fam.kind == "histogram" {
				return fam, suffix, nil
			}
		}
	}
	return exported{}, "", fmt.Errorf("the server exports no %s", name)
}

func TestCheckQuery(t *testing.T) {
	fams := serverMetrics()
	tests := []struct {
		expr    string
		wantErr string // empty: valid
	}{
		{`sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{gen_ai_provider_name=~"$provider"}[5m]))`, ""},
		{`histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m])))`, ""},
		{`label_values(gen_ai_server_request_duration_seconds_count, gen_ai_provider_name)`, ""},
		{`min(llm_proxy_ratelimit_backend_healthy)`, ""},
		{`sum(rate(gen_ai_client_operation_duration_seconds_count[5m]))`, "exports no gen_ai_client_operation_duration_seconds_count"},
		{`sum(rate(gen_ai_client_token_usage_count{gen_ai_system="openai"}[5m]))`, "has no label gen_ai_system"},
		{`sum by (model) (rate(gen_ai_client_token_usage_sum[5m]))`, "label model is on none"},
		{`rate(llm_proxy_requests_total_bucket[5m])`, "exports no llm_proxy_requests_total_bucket"},
		{`rate(gen_ai_client_token_usage[5m])`, "used without _bucket"},
		{`rate(llm_proxy_ratelimit_backend_healthy[5m])`, "over gauge"},
		{`label_values(llm_proxy_requests_total, gen_ai_provider_name)`, "label gen_ai_provider_name is on none"},
		{`irate(llm_proxy_requests_total[5m])`, "unknown function irate"},
		{`sum(`, "unbalanced"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			err := checkQuery(tt.expr, fams)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

type dashPanel struct {
	ID      int         `json:"id"`
	Type    string      `json:"type"`
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestDashboardQueriesUseExportedSeries parses the shipped Grafana
// dashboard and checks every panel query and template variable against
// the metrics the server registers.
func TestDashboardQueriesUseExportedSeries(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var dash struct {
		Title      string      `json:"title"`
		UID        string      `json:"uid"`
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.UID)
	fams := serverMetrics()

	var queries []string
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
			ids[p.ID] = true
			if p.Type != "row" {
				require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.Expr, "panel %q", p.Title)
				queries = append(queries, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q), v.Name)
		queries = append(queries, q.Query)
	}
	require.NotEmpty(t, queries)
	used := map[string]bool{}
	for _, q := range queries {
		require.NoError(t, checkQuery(q, fams))
		for _, name := range []string{"gen_ai_client_token_usage", "gen_ai_server_request_duration_seconds",
			"gen_ai_server_time_to_first_token_seconds", "gen_ai_server_time_per_output_token_seconds"} {
			if strings.Contains(q, name) {
				used[name] = true
			}
		}
	}
	require.Len(t, used, 4, "the dashboard is built on every GenAI metric")
}
