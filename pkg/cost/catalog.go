package cost

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The embedded catalog: a snapshot of pydantic's genai-prices
// (https://github.com/pydantic/genai-prices, MIT licence, see
// catalog/LICENSE.genai-prices), refreshed by `make update-prices`.
//
//go:embed catalog/genai-prices.json
var embeddedCatalog []byte

// CatalogLicense is the licence of the embedded catalog, shipped with it.
//
//go:embed catalog/LICENSE.genai-prices
var CatalogLicense string

var defaultCatalog = sync.OnceValues(func() (*Catalog, error) { return ParseCatalog(embeddedCatalog) })

// DefaultCatalog returns the catalog embedded at build time. The same
// immutable Catalog is returned on every call. The embedded file is checked
// by the package tests, so an invalid file is a build defect and panics.
func DefaultCatalog() *Catalog {
	c, err := defaultCatalog()
	if err != nil {
		panic(fmt.Sprintf("cost: embedded catalog: %v", err))
	}
	return c
}

// Catalog is a price catalog in the format of genai-prices: per provider an
// ordered list of models, each with a match rule over the requested model
// name and its prices, possibly dated (the price in force at the request's
// time applies). A name resolves to the first model whose rule matches it,
// as in the catalog's reference implementation.
//
// A Catalog is immutable and safe for concurrent use. Resolving a name the
// catalog lists takes one map lookup; any other name is matched against
// the rules once and the outcome remembered, for at most [memoLimit]
// distinct names per provider (past that, such names are matched on every
// lookup, so memory stays bounded whatever clients send).
type Catalog struct {
	// Source, Package and Version name where the snapshot comes from;
	// SnapshotDate (YYYY-MM-DD) is the day it was taken; License is the
	// catalog's licence notice.
	Source, Package, Version, SnapshotDate, License string

	providers map[string]*catalogProvider
}

// memoLimit bounds the remembered outcomes of names resolved by matching,
// per provider.
const memoLimit = 1024

type catalogProvider struct {
	models []catalogModel
	// exact maps every name the catalog spells out (model ids and
	// "equals" rules) to its resolution, computed by the ordered match.
	exact map[string]int32
	// memo holds resolutions of other names (copy on write); -1 = none.
	memo   atomic.Pointer[map[string]int32]
	memoMu sync.Mutex
}

type catalogModel struct {
	id     string
	match  matcher
	prices []datedPrice
}

// datedPrice applies from from on; always is set for an entry without a
// start date.
type datedPrice struct {
	from   time.Time
	always bool
	price  Price
}

// catalogFile is the JSON written by tools/pricecheck/snapshot.mjs.
type catalogFile struct {
	Source       string `json:"source"`
	Package      string `json:"package"`
	Version      string `json:"version"`
	License      string `json:"license"`
	SnapshotDate string `json:"snapshot_date"`
	Providers    map[string]struct {
		ID          string   `json:"id"`
		PricingURLs []string `json:"pricing_urls"`
		Models      []struct {
			ID     string          `json:"id"`
			Match  json.RawMessage `json:"match"`
			Prices json.RawMessage `json:"prices"`
		} `json:"models"`
	} `json:"providers"`
}

// ParseCatalog reads and validates a catalog snapshot (the format of
// catalog/genai-prices.json). It reports every problem at once: unknown
// fields, price keys this package cannot bill (other than the ones whose
// usage the gateway never reports, listed in ignoredPriceKeys), negative
// or explicit zero rates, unordered tiers, constraints other than start
// dates, and match rules that do not compile. A Catalog is only returned
// when it is entirely valid, so a bad file never replaces a good one.
func ParseCatalog(data []byte) (*Catalog, error) {
	var f catalogFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse catalog: %w", err)
	}
	var errs []error
	if f.Version == "" || f.Package == "" {
		errs = append(errs, errors.New("catalog: package and version must be set"))
	}
	if _, err := time.Parse(time.DateOnly, f.SnapshotDate); err != nil {
		errs = append(errs, fmt.Errorf("catalog: snapshot_date %q is not YYYY-MM-DD", f.SnapshotDate))
	}
	c := &Catalog{Source: f.Source, Package: f.Package, Version: f.Version, SnapshotDate: f.SnapshotDate,
		License: f.License, providers: make(map[string]*catalogProvider, len(f.Providers))}
	for _, prov := range sortedKeys(f.Providers) {
		fp := f.Providers[prov]
		cp := &catalogProvider{exact: map[string]int32{}}
		for i, fm := range fp.Models {
			where := fmt.Sprintf("catalog: %s model %d (%s)", prov, i, fm.ID)
			if fm.ID == "" {
				errs = append(errs, fmt.Errorf("%s: empty id", where))
			}
			m, merr := parseMatch(fm.Match)
			if merr != nil {
				errs = append(errs, fmt.Errorf("%s: match: %w", where, merr))
			}
			prices, perrs := parseCatalogPrices(where, fm.Prices)
			errs = append(errs, perrs...)
			cp.models = append(cp.models, catalogModel{id: fm.ID, match: m, prices: prices})
		}
		for i := range cp.models {
			names := []string{cp.models[i].id}
			names = cp.models[i].match.equalsNames(names)
			for _, n := range names {
				if _, done := cp.exact[n]; !done {
					cp.exact[n] = cp.scan(n)
				}
			}
		}
		c.providers[prov] = cp
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Providers returns the provider names the catalog prices, sorted.
func (c *Catalog) Providers() []string { return sortedKeys(c.providers) }

// Lookup returns the price in force at at of the model the catalog
// resolves name to at provider, and the catalog's id for that model. ok is
// false when the provider or the name is unknown. Names are matched as the
// catalog's rules say (case-insensitively, as its reference
// implementation does); no prefix is removed. A zero at means now. Lookup
// allocates nothing for names seen before (up to the memo bound).
func (c *Catalog) Lookup(provider, name string, at time.Time) (Price, string, bool) {
	if c == nil {
		return Price{}, "", false
	}
	cp := c.providers[provider]
	if cp == nil {
		return Price{}, "", false
	}
	m := cp.model(name)
	if m == nil {
		return Price{}, "", false
	}
	return *m.priceAt(at), m.id, true
}

// model returns the model name resolves to, or nil.
func (cp *catalogProvider) model(name string) *catalogModel {
	if i := cp.resolve(name); i >= 0 {
		return &cp.models[i]
	}
	return nil
}

func (cp *catalogProvider) resolve(name string) int32 {
	if i, ok := cp.exact[name]; ok {
		return i
	}
	if memo := cp.memo.Load(); memo != nil {
		if i, ok := (*memo)[name]; ok {
			return i
		}
	}
	i := cp.scan(name)
	cp.remember(name, i)
	return i
}

func (cp *catalogProvider) remember(name string, i int32) {
	cp.memoMu.Lock()
	defer cp.memoMu.Unlock()
	old := cp.memo.Load()
	var n int
	if old != nil {
		n = len(*old)
		if _, ok := (*old)[name]; ok {
			return
		}
	}
	if n >= memoLimit {
		return
	}
	next := make(map[string]int32, n+1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[strings.Clone(name)] = i
	cp.memo.Store(&next)
}

// scan returns the first model whose rule matches name, or -1.
func (cp *catalogProvider) scan(name string) int32 {
	for i := range cp.models {
		if cp.models[i].match.match(name) {
			return int32(i)
		}
	}
	return -1
}

// priceAt returns the price in force at at: the last entry whose start
// date is not after at (an entry without one always qualifies), else the
// first entry, as the reference implementation chooses.
func (m *catalogModel) priceAt(at time.Time) *Price {
	if len(m.prices) == 1 {
		return &m.prices[0].price
	}
	if at.IsZero() {
		at = time.Now()
	}
	for i := len(m.prices) - 1; i >= 0; i-- {
		if p := &m.prices[i]; p.always || !at.Before(p.from) {
			return &p.price
		}
	}
	return &m.prices[0].price
}

// Price keys of the catalog and the rates they fill.
var catalogKeys = map[string]unit{
	"input_mtok":            unitInput,
	"output_mtok":           unitOutput,
	"cache_read_mtok":       unitCacheRead,
	"cache_write_mtok":      unitCacheWrite,
	"cache_write_1h_mtok":   unitCacheWrite1h,
	"input_audio_mtok":      unitInputAudio,
	"cache_audio_read_mtok": unitCacheReadAudio,
	"output_audio_mtok":     unitOutputAudio,
	"input_image_mtok":      unitInputImage,
	"cache_image_read_mtok": unitCacheReadImage,
	"output_image_mtok":     unitOutputImage,
}

// ignoredPriceKeys are catalog rates for usage the gateway never reports
// (tool calls, durations, video): the reference implementation bills them
// nothing for such usage, and so does this package. A key in neither list
// fails the catalog, so that a new kind of charge is noticed on update.
var ignoredPriceKeys = map[string]bool{
	"web_searches_kcount":     true,
	"storage_searches_kcount": true,
	"audio_hours":             true,
	"input_audio_hours":       true,
	"input_video_mtok":        true,
	"output_video_mtok":       true,
}

type catalogTiered struct {
	Base  float64 `json:"base"`
	Tiers []struct {
		Start int64   `json:"start"`
		Price float64 `json:"price"`
	} `json:"tiers"`
}

func parseCatalogPrices(where string, raw json.RawMessage) ([]datedPrice, []error) {
	var conds []struct {
		Constraint *struct {
			StartDate string `json:"start_date"`
			Type      string `json:"type"`
		} `json:"constraint"`
		Prices map[string]json.RawMessage `json:"prices"`
	}
	if len(raw) > 0 && raw[0] != '[' {
		var flat map[string]json.RawMessage
		if err := json.Unmarshal(raw, &flat); err != nil {
			return nil, []error{fmt.Errorf("%s: prices: %w", where, err)}
		}
		conds = append(conds, struct {
			Constraint *struct {
				StartDate string `json:"start_date"`
				Type      string `json:"type"`
			} `json:"constraint"`
			Prices map[string]json.RawMessage `json:"prices"`
		}{Prices: flat})
	} else if err := json.Unmarshal(raw, &conds); err != nil {
		return nil, []error{fmt.Errorf("%s: prices: %w", where, err)}
	}
	if len(conds) == 0 {
		return nil, []error{fmt.Errorf("%s: no prices", where)}
	}
	var errs []error
	out := make([]datedPrice, 0, len(conds))
	for j, cond := range conds {
		w := fmt.Sprintf("%s: prices[%d]", where, j)
		dp := datedPrice{always: cond.Constraint == nil}
		if cond.Constraint != nil {
			if cond.Constraint.Type != "start_date" && cond.Constraint.Type != "" {
				errs = append(errs, fmt.Errorf("%s: constraint type %q is not supported (only start_date)", w, cond.Constraint.Type))
			}
			t, err := time.Parse(time.DateOnly, cond.Constraint.StartDate)
			if err != nil {
				t, err = time.Parse(time.RFC3339, cond.Constraint.StartDate)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: start_date %q: %w", w, cond.Constraint.StartDate, err))
			}
			dp.from = t
		}
		p, perrs := catalogPrice(w, cond.Prices)
		errs = append(errs, perrs...)
		dp.price = p
		out = append(out, dp)
	}
	return out, errs
}

// catalogPrice converts one catalog price (key → rate or tiered rate) into
// a Price whose tiers are the union of every key's thresholds, each tier
// holding every key's rate in force above that threshold.
func catalogPrice(where string, prices map[string]json.RawMessage) (Price, []error) {
	var errs []error
	var base rates
	type keyTiers struct {
		u     unit
		tiers []struct {
			start int64
			price float64
		}
	}
	var tiered []keyTiers
	var starts []int64
	for _, key := range sortedKeys(prices) {
		raw := prices[key]
		u, known := catalogKeys[key]
		if !known {
			if !ignoredPriceKeys[key] {
				errs = append(errs, fmt.Errorf("%s: price key %q cannot be billed from gateway usage", where, key))
			}
			continue
		}
		var flat float64
		if err := json.Unmarshal(raw, &flat); err == nil {
			base[u] = flat
			continue
		}
		var t catalogTiered
		if err := json.Unmarshal(raw, &t); err != nil || len(t.Tiers) == 0 {
			errs = append(errs, fmt.Errorf("%s: %s: want a rate or {base, tiers}", where, key))
			continue
		}
		base[u] = t.Base
		kt := keyTiers{u: u}
		for i, tr := range t.Tiers {
			if tr.Start <= 0 || (i > 0 && tr.Start <= t.Tiers[i-1].Start) {
				errs = append(errs, fmt.Errorf("%s: %s: tier starts must be positive and ascending", where, key))
			}
			kt.tiers = append(kt.tiers, struct {
				start int64
				price float64
			}{tr.Start, tr.Price})
			starts = append(starts, tr.Start)
		}
		tiered = append(tiered, kt)
	}
	for u, v := range base {
		if _, set := prices[catalogKeyOf(unit(u))]; set && v == 0 && unit(u) != unitInput && unit(u) != unitOutput {
			// A zero rate here would mean "billed at the enclosing rate".
			errs = append(errs, fmt.Errorf("%s: explicit zero rate for %s is not representable", where, catalogKeyOf(unit(u))))
		}
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	p := priceFromRates(base)
	for _, s := range starts {
		r := base
		for _, kt := range tiered {
			for _, tr := range kt.tiers {
				if tr.start <= s {
					r[kt.u] = tr.price
				}
			}
		}
		p.Tiers = append(p.Tiers, tierFromRates(s, r))
	}
	errs = p.validate(where, errs)
	return p, errs
}

func catalogKeyOf(u unit) string {
	for k, v := range catalogKeys {
		if v == u {
			return k
		}
	}
	return ""
}

func priceFromRates(r rates) Price {
	return Price{Input: r[unitInput], Output: r[unitOutput], CacheRead: r[unitCacheRead],
		CacheWrite: r[unitCacheWrite], CacheWrite1h: r[unitCacheWrite1h],
		InputAudio: r[unitInputAudio], CacheReadAudio: r[unitCacheReadAudio], OutputAudio: r[unitOutputAudio],
		InputImage: r[unitInputImage], CacheReadImage: r[unitCacheReadImage], OutputImage: r[unitOutputImage]}
}

func tierFromRates(above int64, r rates) Tier {
	return Tier{AbovePromptTokens: above, Input: r[unitInput], Output: r[unitOutput], CacheRead: r[unitCacheRead],
		CacheWrite: r[unitCacheWrite], CacheWrite1h: r[unitCacheWrite1h],
		InputAudio: r[unitInputAudio], CacheReadAudio: r[unitCacheReadAudio], OutputAudio: r[unitOutputAudio],
		InputImage: r[unitInputImage], CacheReadImage: r[unitCacheReadImage], OutputImage: r[unitOutputImage]}
}

// matcher is a catalog match rule. String rules compare case-insensitively
// (the reference lower-cases both sides); regex rules are case-sensitive,
// unanchored searches.
type matcher struct {
	kind matchKind
	// s is the pattern of a string rule.
	s string
	// re matches; for a rule "^(?!X)Y" neg is ^X, which must not match.
	re, neg *regexp.Regexp
	subs    []matcher
}

type matchKind uint8

const (
	matchNever matchKind = iota
	matchOr
	matchAnd
	matchEquals
	matchPrefix
	matchSuffix
	matchContains
	matchRegex
)

func parseMatch(raw json.RawMessage) (matcher, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return matcher{}, err
	}
	if len(m) != 1 {
		return matcher{}, fmt.Errorf("want exactly one rule, got %d keys", len(m))
	}
	for k, v := range m {
		switch k {
		case "or", "and":
			var subs []json.RawMessage
			if err := json.Unmarshal(v, &subs); err != nil {
				return matcher{}, fmt.Errorf("%s: %w", k, err)
			}
			out := matcher{kind: matchOr}
			if k == "and" {
				out.kind = matchAnd
			}
			for _, s := range subs {
				sm, err := parseMatch(s)
				if err != nil {
					return matcher{}, err
				}
				out.subs = append(out.subs, sm)
			}
			return out, nil
		case "equals", "starts_with", "ends_with", "contains", "regex":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return matcher{}, fmt.Errorf("%s: %w", k, err)
			}
			switch k {
			case "equals":
				return matcher{kind: matchEquals, s: s}, nil
			case "starts_with":
				return matcher{kind: matchPrefix, s: s}, nil
			case "ends_with":
				return matcher{kind: matchSuffix, s: s}, nil
			case "contains":
				return matcher{kind: matchContains, s: s}, nil
			}
			return compileRegex(s)
		}
		return matcher{}, fmt.Errorf("unknown rule %q", k)
	}
	panic("unreachable")
}

// compileRegex compiles a JavaScript regular expression of the subset RE2
// shares, plus one leading negative lookahead "^(?!X)Y", which RE2 lacks.
func compileRegex(s string) (matcher, error) {
	m := matcher{kind: matchRegex}
	rest := s
	if inner, after, ok := cutLookahead(s); ok {
		neg, err := regexp.Compile("^(?:" + inner + ")")
		if err != nil {
			return matcher{}, fmt.Errorf("regex %q: %w", s, err)
		}
		m.neg = neg
		rest = "^" + after
	}
	re, err := regexp.Compile(rest)
	if err != nil {
		return matcher{}, fmt.Errorf("regex %q: %w", s, err)
	}
	m.re = re
	return m, nil
}

// cutLookahead splits "^(?!X)Y" into X and Y.
func cutLookahead(s string) (inner, after string, ok bool) {
	body, found := strings.CutPrefix(s, "^(?!")
	if !found {
		return "", "", false
	}
	depth := 1
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return body[:i], body[i+1:], true
			}
		}
	}
	return "", "", false
}

func (m *matcher) match(text string) bool {
	switch m.kind {
	case matchOr:
		for i := range m.subs {
			if m.subs[i].match(text) {
				return true
			}
		}
		return false
	case matchAnd:
		for i := range m.subs {
			if !m.subs[i].match(text) {
				return false
			}
		}
		return true
	case matchEquals:
		return strings.EqualFold(text, m.s)
	case matchPrefix:
		return len(text) >= len(m.s) && strings.EqualFold(text[:len(m.s)], m.s)
	case matchSuffix:
		return len(text) >= len(m.s) && strings.EqualFold(text[len(text)-len(m.s):], m.s)
	case matchContains:
		for i := 0; i+len(m.s) <= len(text); i++ {
			if strings.EqualFold(text[i:i+len(m.s)], m.s) {
				return true
			}
		}
		return false
	case matchRegex:
		return (m.neg == nil || !m.neg.MatchString(text)) && m.re.MatchString(text)
	}
	return false
}

// equalsNames appends the names of the rule's "equals" clauses.
func (m *matcher) equalsNames(names []string) []string {
	if m.kind == matchEquals {
		return append(names, m.s)
	}
	for i := range m.subs {
		names = m.subs[i].equalsNames(names)
	}
	return names
}
