package cost

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Model is one priced model in the YAML schema
// providers.<provider>.models.<model>.
type Model struct {
	// Pricing is the model's price.
	Pricing Price `json:"pricing"`
	// Aliases are other exact names of the same model (for example a
	// "-latest" pointer or a vendor's short id). An alias must be unique
	// within its provider and differ from every model name.
	Aliases []string `json:"aliases,omitempty"`
}

// Table resolves a provider's model names to prices. It is immutable once
// built and safe for concurrent use.
//
// A Table has up to three layers, consulted in order; the first that knows
// the name wins:
//
//   - explicit models (the gateway configuration, or the models passed to
//     [NewTable]), resolved by the rules below;
//   - a price catalog ([Catalog], the embedded genai-prices snapshot by
//     default), resolved by the catalog's own match rules on the name
//     (after rule 1), then on its dated-snapshot base (rule 4);
//   - the shipped supplements (default_pricing.yml: models the catalog
//     lacks, such as fine-tunes of gpt-4.1), resolved by the rules below.
//
// Resolution of a requested name by the explicit rules, in order, with no
// other matching:
//  1. One leading "models/" (Gemini's resource prefix) is removed.
//  2. The name equals a model name or an alias: that model.
//  3. OpenAI fine-tunes "ft:<base>:<suffix...>": the model named
//     "ft:<base>" (or aliased so), else the model named "ft:<b>" where <b>
//     is <base> without a dated-snapshot suffix (rule 4). A fine-tune
//     never resolves to its base model's price, because vendors bill
//     fine-tuned inference at different rates; add "ft:<base>" entries for
//     the bases you use. A full fine-tune id is also a valid entry name,
//     matched exactly by rule 2.
//  4. Dated snapshots: the name is a model name or alias followed by
//     exactly one of these suffixes (D is a decimal digit, MM 01-12 and DD
//     01-31):
//     "-YYYY-MM-DD" (OpenAI: gpt-4o-2024-08-06),
//     "-YYYYMMDD"   (Anthropic: claude-sonnet-4-20250514),
//     "@YYYYMMDD"   (Anthropic on Vertex: claude-sonnet-4@20250514),
//     "-DDD"        (Gemini stable versions: gemini-2.0-flash-001).
//     An exact entry (rule 2) always wins, so a snapshot priced
//     differently from its family (gpt-4o-2024-05-13) gets its own entry.
//     Gemini "-preview-MM-DD" names and OpenAI "-MMDD" names are not
//     snapshots under this grammar: their prices differed from the
//     released model's, so they need explicit entries or aliases.
//  5. Anything else is unknown to that layer.
//
// Explicit names are compared case-sensitively, as the vendors' APIs do;
// the catalog's rules compare as the catalog says.
type Table struct {
	layers map[string]*layers
	// providers is the explicit layer (kept for the tests' fixtures).
	providers map[string]*providerTable
	cat       *Catalog
}

// Catalog returns the catalog the Table consults, or nil (for example to
// report its Version and SnapshotDate).
func (t *Table) Catalog() *Catalog {
	if t == nil {
		return nil
	}
	return t.cat
}

// layers are one provider's layers, in lookup order; any may be nil.
type layers struct {
	explicit   *providerTable
	catalog    *catalogProvider
	supplement *providerTable
}

type providerTable struct {
	entries []entry
	// keys maps every model name and alias to its entry.
	keys map[string]int
	// ft maps "ft:" names and aliases, without the "ft:" prefix.
	ft map[string]int
}

type entry struct {
	name  string
	price Price
}

const (
	geminiPrefix = "models/"
	ftPrefix     = "ft:"
)

// NewTable validates models (provider name → model name → Model) and builds
// a Table from them. It reports every problem at once, joined: empty or
// malformed names, negative or non-finite prices, tiers whose thresholds
// are not positive and strictly ascending, aliases that repeat within a
// provider or equal a model name. The maps are not retained.
func NewTable(models map[string]map[string]Model) (*Table, error) {
	providers, err := buildProviders(models)
	if err != nil {
		return nil, err
	}
	return newTable(providers, nil, nil), nil
}

// NewTableWithCatalog builds a Table whose explicit layer is configured
// (validated as [NewTable] does), followed by catalog (nil for none) and the
// shipped supplements (see [Table]). Reloading prices at run time means
// building a new Table with the new catalog and swapping it in.
func NewTableWithCatalog(configured map[string]map[string]Model, catalog *Catalog) (*Table, error) {
	providers, err := buildProviders(configured)
	if err != nil {
		return nil, err
	}
	supplement, err := supplementProviders()
	if err != nil {
		return nil, err
	}
	return newTable(providers, catalog, supplement), nil
}

func newTable(explicit map[string]*providerTable, catalog *Catalog, supplement map[string]*providerTable) *Table {
	t := &Table{layers: map[string]*layers{}, providers: explicit, cat: catalog}
	get := func(prov string) *layers {
		if t.layers[prov] == nil {
			t.layers[prov] = &layers{}
		}
		return t.layers[prov]
	}
	for prov, pt := range explicit {
		get(prov).explicit = pt
	}
	if catalog != nil {
		for prov, cp := range catalog.providers {
			get(prov).catalog = cp
		}
	}
	for prov, pt := range supplement {
		get(prov).supplement = pt
	}
	return t
}

func buildProviders(models map[string]map[string]Model) (map[string]*providerTable, error) {
	var errs []error
	t := &Table{providers: make(map[string]*providerTable, len(models))}
	for _, prov := range sortedKeys(models) {
		ms := models[prov]
		if strings.TrimSpace(prov) == "" || prov != strings.TrimSpace(prov) {
			errs = append(errs, fmt.Errorf("provider %q: name must be non-empty without surrounding spaces", prov))
			continue
		}
		pt := &providerTable{keys: make(map[string]int), ft: make(map[string]int)}
		owner := map[string]string{} // key → model that claimed it
		names := sortedKeys(ms)
		for _, name := range names {
			where := fmt.Sprintf("providers.%s.models.%s", prov, name)
			if err := checkName(name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			owner[name] = name
		}
		for _, name := range names {
			if _, ok := owner[name]; !ok {
				continue // invalid name, reported above
			}
			m := ms[name]
			where := fmt.Sprintf("providers.%s.models.%s", prov, name)
			errs = m.Pricing.validate(where+".pricing", errs)
			idx := len(pt.entries)
			pt.entries = append(pt.entries, entry{name: name, price: clonePrice(m.Pricing)})
			pt.add(name, idx)
			for _, a := range m.Aliases {
				if err := checkName(a); err != nil {
					errs = append(errs, fmt.Errorf("%s: alias %q: %w", where, a, err))
					continue
				}
				if prev, ok := owner[a]; ok {
					switch {
					case prev == a:
						errs = append(errs, fmt.Errorf("%s: alias %q is already a model name", where, a))
					case prev == name:
						errs = append(errs, fmt.Errorf("%s: alias %q is listed twice", where, a))
					default:
						errs = append(errs, fmt.Errorf("%s: alias %q is already an alias of %s", where, a, prev))
					}
					continue
				}
				owner[a] = name
				pt.add(a, idx)
			}
		}
		t.providers[prov] = pt
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t.providers, nil
}

func (pt *providerTable) add(key string, idx int) {
	pt.keys[key] = idx
	if base, ok := strings.CutPrefix(key, ftPrefix); ok {
		pt.ft[base] = idx
	}
}

// checkName reports why s cannot be a model name or alias.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("name must not be empty")
	case strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n"):
		return errors.New("name must not contain spaces")
	case strings.HasPrefix(s, geminiPrefix):
		return fmt.Errorf("name must not start with %q (it is removed before lookup)", geminiPrefix)
	}
	if base, ok := strings.CutPrefix(s, ftPrefix); ok && (base == "" || base[0] == ':') {
		return errors.New(`a fine-tune entry must be "ft:<base model>" or a full fine-tune id`)
	}
	return nil
}

// Lookup returns the latest price of model at provider (the price in force
// now, for catalog models with a price history) and the name of the entry
// it resolved to (the canonical name), following the layers and rules in
// [Table]. It is LookupAt with the current time; see there.
func (t *Table) Lookup(provider, model string) (p Price, canonical string, ok bool) {
	return t.LookupAt(provider, model, time.Time{})
}

// LookupAt returns the price in force at at (the request's time) of model
// at provider and the name of the entry it resolved to (the canonical
// name). A zero at means now. ok is false when no layer knows the model;
// the caller then records the cost as unknown. The returned Price shares
// its Tiers slice with the table and must not be modified. LookupAt
// allocates nothing (see [Catalog] for the bound on remembered names). A
// nil Table knows no model.
func (t *Table) LookupAt(provider, model string, at time.Time) (p Price, canonical string, ok bool) {
	if t == nil {
		return Price{}, "", false
	}
	l := t.layers[provider]
	if l == nil {
		return Price{}, "", false
	}
	name := strings.TrimPrefix(model, geminiPrefix)
	if e := l.explicit.lookup(name); e != nil {
		return e.price, e.name, true
	}
	if l.catalog != nil {
		if m := l.catalog.model(name); m != nil {
			return *m.priceAt(at), m.id, true
		}
		if !strings.HasPrefix(name, ftPrefix) {
			if b, ok := snapshotBase(name); ok {
				if m := l.catalog.model(b); m != nil {
					return *m.priceAt(at), m.id, true
				}
			}
		}
	}
	if e := l.supplement.lookup(name); e != nil {
		return e.price, e.name, true
	}
	return Price{}, "", false
}

// lookup returns the entry name resolves to by the explicit rules, or nil.
func (pt *providerTable) lookup(name string) *entry {
	if pt == nil {
		return nil
	}
	i, ok := pt.resolve(name)
	if !ok {
		return nil
	}
	return &pt.entries[i]
}

func (pt *providerTable) resolve(name string) (int, bool) {
	if i, ok := pt.keys[name]; ok {
		return i, true
	}
	if rest, ok := strings.CutPrefix(name, ftPrefix); ok {
		base, _, _ := strings.Cut(rest, ":")
		if base == "" {
			return 0, false
		}
		if i, ok := pt.ft[base]; ok {
			return i, true
		}
		if b, ok := snapshotBase(base); ok {
			i, ok := pt.ft[b]
			return i, ok
		}
		return 0, false
	}
	if b, ok := snapshotBase(name); ok {
		i, ok := pt.keys[b]
		return i, ok
	}
	return 0, false
}

// snapshotBase removes one dated-snapshot suffix (see [Table]) from name.
// ok is false when name has none or nothing would remain.
func snapshotBase(name string) (base string, ok bool) {
	n := len(name)
	switch {
	// "-YYYY-MM-DD"
	case n > 11 && name[n-11] == '-' && name[n-6] == '-' && name[n-3] == '-' &&
		digits(name[n-10:n-6]) && isMonthDay(name[n-5:n-3], name[n-2:]):
		return name[:n-11], true
	// "-YYYYMMDD" and "@YYYYMMDD"
	case n > 9 && (name[n-9] == '-' || name[n-9] == '@') &&
		digits(name[n-8:n-4]) && isMonthDay(name[n-4:n-2], name[n-2:]):
		return name[:n-9], true
	// "-DDD"
	case n > 4 && name[n-4] == '-' && digits(name[n-3:]):
		return name[:n-4], true
	}
	return "", false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isMonthDay reports whether mm is 01-12 and dd is 01-31, two digits each.
func isMonthDay(mm, dd string) bool {
	if len(mm) != 2 || len(dd) != 2 || !digits(mm) || !digits(dd) {
		return false
	}
	m := int(mm[0]-'0')*10 + int(mm[1]-'0')
	d := int(dd[0]-'0')*10 + int(dd[1]-'0')
	return m >= 1 && m <= 12 && d >= 1 && d <= 31
}

// Merge returns base with over applied per model: a model present in over
// replaces base's model of the same provider and name entirely (pricing and
// aliases), and any other model is kept. Names and aliases claimed by over
// are removed from the aliases of base's remaining models, so a user's
// entry always wins over a default alias. The inputs are not modified and
// the result shares no slices with them.
func Merge(base, over map[string]map[string]Model) map[string]map[string]Model {
	out := make(map[string]map[string]Model, len(base)+len(over))
	for prov, ms := range base {
		claimed := map[string]bool{}
		for name, m := range over[prov] {
			claimed[name] = true
			for _, a := range m.Aliases {
				claimed[a] = true
			}
		}
		dst := make(map[string]Model, len(ms))
		for name, m := range ms {
			if _, replaced := over[prov][name]; replaced {
				continue
			}
			m = cloneModel(m)
			m.Aliases = slices.DeleteFunc(m.Aliases, func(a string) bool { return claimed[a] })
			dst[name] = m
		}
		out[prov] = dst
	}
	for prov, ms := range over {
		dst := out[prov]
		if dst == nil {
			dst = make(map[string]Model, len(ms))
			out[prov] = dst
		}
		for name, m := range ms {
			dst[name] = cloneModel(m)
		}
	}
	return out
}

// ParseYAML reads a pricing document of the form
//
//	providers:
//	  <provider>:
//	    models:
//	      <model>: {pricing: {input: .., output: .., cache_read: .., cache_write: .., tiers: [..]}, aliases: [..]}
//
// and returns its models by provider. Unknown keys are errors. The result
// is not validated; pass it to [NewTable].
func ParseYAML(data []byte) (map[string]map[string]Model, error) {
	var doc struct {
		Providers map[string]struct {
			Models map[string]Model `json:"models"`
		} `json:"providers"`
	}
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("parse pricing: %w", err)
	}
	out := make(map[string]map[string]Model, len(doc.Providers))
	for prov, p := range doc.Providers {
		out[prov] = p.Models
		if out[prov] == nil {
			out[prov] = map[string]Model{}
		}
	}
	return out, nil
}

func cloneModel(m Model) Model {
	return Model{Pricing: clonePrice(m.Pricing), Aliases: slices.Clone(m.Aliases)}
}

func clonePrice(p Price) Price {
	p.Tiers = slices.Clone(p.Tiers)
	if p.ServiceTiers != nil {
		st := make(map[string]Price, len(p.ServiceTiers))
		for k, v := range p.ServiceTiers {
			st[k] = clonePrice(v)
		}
		p.ServiceTiers = st
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
