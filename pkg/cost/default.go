package cost

import (
	_ "embed"
	"fmt"
	"sync"
)

//go:embed default_pricing.yml
var defaultPricing []byte

var defaultTable = sync.OnceValues(func() (*Table, error) {
	m, err := ParseYAML(defaultPricing)
	if err != nil {
		return nil, err
	}
	return NewTable(m)
})

// DefaultModels returns the embedded default price list (default_pricing.yml)
// by provider and model, as a fresh copy the caller may modify, typically to
// pass to [Merge] with the configured models.
func DefaultModels() map[string]map[string]Model {
	m, err := ParseYAML(defaultPricing)
	if err != nil {
		panic(fmt.Sprintf("cost: embedded default_pricing.yml: %v", err))
	}
	return m
}

// DefaultTable returns the Table built from the embedded default price list.
// The same immutable Table is returned on every call; it is safe for
// concurrent use. The embedded file is checked by the package tests, so an
// invalid file is a build defect and panics.
func DefaultTable() *Table {
	t, err := defaultTable()
	if err != nil {
		panic(fmt.Sprintf("cost: embedded default_pricing.yml: %v", err))
	}
	return t
}

// NewTableWithDefaults builds a Table from the embedded defaults with
// configured merged over them per model (see [Merge]).
func NewTableWithDefaults(configured map[string]map[string]Model) (*Table, error) {
	return NewTable(Merge(DefaultModels(), configured))
}
