package estimation

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// pair is one estimate and the count it tries to predict, in tokens.
type pair struct{ est, actual float64 }

// summary describes the ratios est/actual of a set of pairs.
type summary struct {
	N                  int
	Median, P10, P90   float64 // quantiles of est/actual
	MAPE               float64 // mean |est-actual|/actual, in per cent
	Under              float64 // share of pairs with est < actual, in per cent
	finite, positivity bool
}

// summarize returns the summary of ps. An empty set gives N 0 and NaNs.
// finite reports whether every ratio is finite, positivity whether every
// ratio is above 0.
func summarize(ps []pair) summary {
	s := summary{N: len(ps), finite: true, positivity: true}
	if len(ps) == 0 {
		nan := math.NaN()
		s.Median, s.P10, s.P90, s.MAPE, s.Under = nan, nan, nan, nan, nan
		return s
	}
	ratios := make([]float64, len(ps))
	var ape float64
	under := 0
	for i, p := range ps {
		r := p.est / p.actual
		ratios[i] = r
		if math.IsNaN(r) || math.IsInf(r, 0) {
			s.finite = false
		}
		if !(r > 0) {
			s.positivity = false
		}
		ape += math.Abs(p.est-p.actual) / p.actual
		if p.est < p.actual {
			under++
		}
	}
	slices.Sort(ratios)
	s.Median = quantile(ratios, 0.5)
	s.P10 = quantile(ratios, 0.1)
	s.P90 = quantile(ratios, 0.9)
	s.MAPE = 100 * ape / float64(len(ps))
	s.Under = 100 * float64(under) / float64(len(ps))
	return s
}

// quantile returns the q-quantile of sorted values by linear interpolation
// between closest ranks; NaN for an empty slice.
func quantile(sorted []float64, q float64) float64 {
	switch len(sorted) {
	case 0:
		return math.NaN()
	case 1:
		return sorted[0]
	}
	q = min(max(q, 0), 1)
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// point is what a chars_per_token estimate is made of: billable runes,
// tokens added regardless of the divisor (images), and the count to predict.
type point struct {
	runes, fixed, actual float64
}

// estimateWith is the gateway's formula: ceil(runes / cpt) + fixed.
func estimateWith(runes, fixed, cpt float64) float64 { return math.Ceil(runes/cpt) + fixed }

// mapeWith returns the MAPE, in per cent, of the estimate with cpt.
func mapeWith(pts []point, cpt float64) float64 {
	ape := 0.0
	for _, p := range pts {
		ape += math.Abs(estimateWith(p.runes, p.fixed, cpt)-p.actual) / p.actual
	}
	return 100 * ape / float64(len(pts))
}

// Grid searched for the best chars_per_token: 1.00 to 8.00 by 0.05.
const (
	cptMin  = 1.0
	cptMax  = 8.0
	cptStep = 0.05
)

// bestCharsPerToken returns the chars_per_token on the grid [cptMin,
// cptMax] that minimises the MAPE of pts, and that MAPE; the smallest such
// divisor on ties. NaNs for an empty set.
func bestCharsPerToken(pts []point) (cpt, mape float64) {
	if len(pts) == 0 {
		return math.NaN(), math.NaN()
	}
	best, bestMAPE := math.NaN(), math.Inf(1)
	steps := int(math.Round((cptMax - cptMin) / cptStep))
	for i := 0; i <= steps; i++ {
		c := math.Round((cptMin+float64(i)*cptStep)*100) / 100
		if m := mapeWith(pts, c); m < bestMAPE {
			best, bestMAPE = c, m
		}
	}
	return best, bestMAPE
}

// table renders rows as a Markdown table with aligned columns.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		switch v := c.(type) {
		case float64:
			row[i] = fmtFloat(v)
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	t.rows = append(t.rows, row)
}

func fmtFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (t *table) String() string {
	width := make([]int, len(t.head))
	for i, h := range t.head {
		width[i] = len(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], len([]rune(c)))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			pad := width[i] - len([]rune(c))
			if i == 0 {
				fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", pad))
			} else {
				fmt.Fprintf(&b, " %s%s |", strings.Repeat(" ", pad), c)
			}
		}
		b.WriteString("\n")
	}
	line(t.head)
	b.WriteString("|")
	for i, w := range width {
		if i == 0 {
			b.WriteString(" " + strings.Repeat("-", w) + " |")
		} else {
			b.WriteString(" " + strings.Repeat("-", w-1) + ": |")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}
