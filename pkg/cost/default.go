package cost

import (
	_ "embed"
	"fmt"
	"sync"
)

// default_pricing.yml holds the shipped supplements: prices of models the
// embedded catalog lacks, consulted after it (see [Table]).
//
//go:embed default_pricing.yml
var defaultPricing []byte

var supplements = sync.OnceValues(func() (map[string]*providerTable, error) {
	m, err := ParseYAML(defaultPricing)
	if err != nil {
		return nil, err
	}
	return buildProviders(m)
})

func supplementProviders() (map[string]*providerTable, error) {
	p, err := supplements()
	if err != nil {
		return nil, fmt.Errorf("cost: embedded default_pricing.yml: %w", err)
	}
	return p, nil
}

var defaultTable = sync.OnceValues(func() (*Table, error) {
	c, err := defaultCatalog()
	if err != nil {
		return nil, err
	}
	return NewTableWithCatalog(nil, c)
})

// DefaultModels returns the shipped supplements (default_pricing.yml: the
// models the embedded catalog lacks) by provider and model, as a fresh copy
// the caller may modify. The catalog's own models are not included; see
// [DefaultCatalog].
func DefaultModels() map[string]map[string]Model {
	m, err := ParseYAML(defaultPricing)
	if err != nil {
		panic(fmt.Sprintf("cost: embedded default_pricing.yml: %v", err))
	}
	return m
}

// DefaultTable returns the Table of the shipped prices: the embedded
// catalog, then the supplements. The same immutable Table is returned on
// every call; it is safe for concurrent use. The embedded files are checked
// by the package tests, so an invalid file is a build defect and panics.
func DefaultTable() *Table {
	t, err := defaultTable()
	if err != nil {
		panic(fmt.Sprintf("cost: embedded prices: %v", err))
	}
	return t
}

// NewTableWithDefaults builds the gateway's Table: the configured models
// first (they always win), then the embedded catalog, then the shipped
// supplements. See [NewTableWithCatalog].
func NewTableWithDefaults(configured map[string]map[string]Model) (*Table, error) {
	c, err := defaultCatalog()
	if err != nil {
		return nil, fmt.Errorf("cost: embedded catalog: %w", err)
	}
	return NewTableWithCatalog(configured, c)
}
