package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// Providers known to the gateway, in display order.
var knownProviders = []string{"anthropic", "gemini", "openai"}

// Config is the merged rule configuration. The zero value is not valid; use
// Defaults or Load.
type Config struct {
	// Providers configures each vendor by name ("openai", "anthropic",
	// "gemini"). A provider missing from the map is enabled with defaults.
	Providers map[string]Provider `json:"providers"`
	// Features holds the optional gateway features.
	Features Features `json:"features"`
	// Processing tunes the ext_proc pipeline.
	Processing Processing `json:"processing"`
}

// Provider configures one vendor.
type Provider struct {
	// Enabled turns the provider's routes on. Default true. A disabled
	// provider's paths pass through Envoy untouched by this server.
	Enabled *bool `json:"enabled,omitempty"`
	// Models prices models (USD per million tokens) and names their
	// aliases; they add to, or replace, the shipped default table
	// (pkg/cost/default_pricing.yml) model by model.
	Models map[string]cost.Model `json:"models,omitempty"`
	// ProviderAuth is auth (passthrough, the default, or gateway_keys) and
	// credentials (the vendor key the gateway sends in gateway_keys mode).
	credentials.ProviderAuth
}

// IsEnabled reports whether the provider is enabled (default true).
func (p Provider) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// Features holds the optional gateway features.
type Features struct {
	RateLimiting RateLimiting `json:"rate_limiting"`
	// CircuitBreaker configures failure classification and the per
	// provider/model circuit breaker (see breaker.Config).
	CircuitBreaker breaker.Config `json:"circuit_breaker"`
	// CostTracking configures cost records (see costlog.Config, inline),
	// the spend ledger behind GET /usage, and budgets.
	CostTracking CostTracking `json:"cost_tracking"`
	// GatewayKeys is the key store of the providers in gateway_keys mode
	// (see keys.Config). Nil (the default) when no provider uses it.
	GatewayKeys *keys.Config `json:"gateway_keys,omitempty"`
	// Failover names, per requested provider:model, the targets that may
	// serve a call instead when it is degraded (see failover.Config).
	// Default off.
	Failover failover.Config `json:"failover"`
}

// CostTracking configures cost records and budgets.
type CostTracking struct {
	costlog.Config
	// Budgets are daily and monthly USD limits per key and per user; their
	// backend also holds the spend ledger.
	Budgets budget.Config `json:"budgets"`
}

// RateLimiting configures request and token limits (see
// ratelimit.Config for the keys, inline under features.rate_limiting) and
// the input-token estimation every request gets, limits or not.
type RateLimiting struct {
	ratelimit.Config
	// Estimation configures input-token estimation from request bodies.
	Estimation Estimation `json:"estimation"`
}

// Estimation configures how input tokens are estimated before the vendor
// answers.
type Estimation struct {
	// MaxSampleBytes is the largest decoded request body, in bytes, whose
	// text is read for estimation. 0 means the default (1 MiB); -1 means no
	// limit. Larger bodies are estimated from their length.
	MaxSampleBytes int64 `json:"max_sample_bytes"`
	// BytesPerToken divides the body length when the text cannot be read.
	// Default 4.
	BytesPerToken float64 `json:"bytes_per_token"`

	// CharsPerToken, ProviderCharsPerToken and WideCharsPerToken are
	// accepted and validated (positive numbers, known providers) so that a
	// rule file written for the characters-per-token estimate still loads,
	// but no longer used: text is priced by its tokenizer pieces (see
	// InputTokens). [Config.Deprecated] names them when set.
	CharsPerToken         float64            `json:"chars_per_token"`
	ProviderCharsPerToken map[string]float64 `json:"provider_chars_per_token"`
	WideCharsPerToken     float64            `json:"wide_chars_per_token"`
}

// Deprecated lists the keys set in c that are accepted but no longer have
// an effect, each with its place in the YAML; the server logs them once at
// start and on each reload.
func (c *Config) Deprecated() []string {
	e := c.Features.RateLimiting.Estimation
	const est = "features.rate_limiting.estimation."
	var out []string
	if e.CharsPerToken != 0 {
		out = append(out, est+"chars_per_token")
	}
	if len(e.ProviderCharsPerToken) > 0 {
		out = append(out, est+"provider_chars_per_token")
	}
	if e.WideCharsPerToken != 0 {
		out = append(out, est+"wide_chars_per_token")
	}
	return out
}

// InputTokens estimates the input tokens of a request the provider read:
// the billable text priced by its pieces for the vendor's tokenizer
// (providers.RequestInfo.TextTokens), plus the image tokens and the
// vendor's documented overhead (providers.RequestInfo.OverheadTokens).
// provider is accepted for estimators that differ per provider; the
// pricing per tokenizer family is the provider's own.
func (e Estimation) InputTokens(provider string, info providers.RequestInfo) int64 {
	return info.TextTokens + info.ImageTokens + info.OverheadTokens
}

// Processing tunes the ext_proc pipeline.
type Processing struct {
	// ResponseBufferLimitBytes is the largest response body, in bytes, that
	// the server asks Envoy to deliver whole (BUFFERED). It must not exceed
	// Envoy's buffer limit for the listener, or Envoy answers 500 instead.
	// Larger bodies and bodies of unknown length are STREAMED. Default 1 MiB.
	ResponseBufferLimitBytes int64 `json:"response_buffer_limit_bytes"`
	// MaxRequestBodyBytes is the largest request body, in bytes, the server
	// accepts from Envoy; a larger one (by content-length or by the bytes
	// Envoy sends) is refused with 413 in the vendor's error shape before the
	// vendor is called. Default 32 MiB, envoy.yaml's
	// per_connection_buffer_limit_bytes, which bounds what Envoy can buffer.
	MaxRequestBodyBytes int64 `json:"max_request_body_bytes"`
	// MetadataNamespace is the Envoy dynamic-metadata namespace the server
	// writes usage to. It must be listed in the ext_proc filter's
	// metadata_options.receiving_namespaces. Default "llm_proxy".
	MetadataNamespace string `json:"metadata_namespace"`
	// InjectStreamUsage adds stream_options.include_usage to streamed OpenAI
	// chat requests that do not set stream_options, and removes the extra
	// usage chunk from the stream before the client sees it, so every
	// stream can be priced and reconciled. Default true.
	InjectStreamUsage *bool `json:"inject_stream_usage,omitempty"`
}

// Defaults used when a field is zero.
const (
	DefaultMaxSampleBytes           = 1 << 20
	DefaultBytesPerToken            = 4
	DefaultResponseBufferLimitBytes = 1 << 20
	DefaultMaxRequestBodyBytes      = 32 << 20
	DefaultMetadataNamespace        = "llm_proxy"
)

// Defaults returns the configuration used when no file sets anything.
func Defaults() Config {
	c := Config{}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Providers == nil {
		c.Providers = map[string]Provider{}
	}
	for _, name := range knownProviders {
		if _, ok := c.Providers[name]; !ok {
			c.Providers[name] = Provider{}
		}
	}
	e := &c.Features.RateLimiting.Estimation
	if e.MaxSampleBytes == 0 {
		e.MaxSampleBytes = DefaultMaxSampleBytes
	}
	if e.BytesPerToken == 0 {
		e.BytesPerToken = DefaultBytesPerToken
	}
	c.Features.RateLimiting.Config.ApplyDefaults()
	c.Features.CircuitBreaker.ApplyDefaults()
	c.Features.CostTracking.Config.ApplyDefaults()
	c.Features.CostTracking.Budgets.ApplyDefaults()
	if c.Features.GatewayKeys != nil {
		c.Features.GatewayKeys.ApplyDefaults()
	}
	p := &c.Processing
	if p.ResponseBufferLimitBytes == 0 {
		p.ResponseBufferLimitBytes = DefaultResponseBufferLimitBytes
	}
	if p.MetadataNamespace == "" {
		p.MetadataNamespace = DefaultMetadataNamespace
	}
	if p.MaxRequestBodyBytes == 0 {
		p.MaxRequestBodyBytes = DefaultMaxRequestBodyBytes
	}
}

// Validate reports every problem of c at once, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	names := make([]string, 0, len(c.Providers))
	for name := range c.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	gatewayKeys := false
	for _, name := range names {
		if !isKnownProvider(name) {
			bad("providers."+name, "unknown provider (known: %s)", strings.Join(knownProviders, ", "))
		}
		pa := c.Providers[name].ProviderAuth
		if err := pa.Validate(name); err != nil {
			errs = append(errs, err)
		}
		gatewayKeys = gatewayKeys || pa.GatewayKeys()
	}
	switch gk := c.Features.GatewayKeys; {
	case gatewayKeys && gk == nil:
		bad("features.gateway_keys", "required: a provider has auth: gateway_keys")
	case gk != nil:
		if err := gk.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Features.RateLimiting.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Features.CircuitBreaker.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.FailoverChains(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.PriceTable(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Features.CostTracking.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Features.CostTracking.Budgets.Validate(); err != nil {
		errs = append(errs, err)
	}
	for name := range c.Features.RateLimiting.PerProvider {
		if !isKnownProvider(name) {
			bad("features.rate_limiting.per_provider."+name, "unknown provider")
		}
	}
	e := c.Features.RateLimiting.Estimation
	const est = "features.rate_limiting.estimation"
	if e.MaxSampleBytes < -1 {
		bad(est+".max_sample_bytes", "must be -1 (no limit), 0 (default) or positive, got %d", e.MaxSampleBytes)
	}
	if !positiveFinite(e.BytesPerToken) {
		bad(est+".bytes_per_token", "must be a positive number, got %v", e.BytesPerToken)
	}
	if e.CharsPerToken != 0 && !positiveFinite(e.CharsPerToken) {
		bad(est+".chars_per_token", "must be a positive number, got %v", e.CharsPerToken)
	}
	if e.WideCharsPerToken != 0 && !positiveFinite(e.WideCharsPerToken) {
		bad(est+".wide_chars_per_token", "must be a positive number, got %v", e.WideCharsPerToken)
	}
	for _, name := range slices.Sorted(maps.Keys(e.ProviderCharsPerToken)) {
		if !isKnownProvider(name) {
			bad(est+".provider_chars_per_token."+name, "unknown provider")
		}
		if v := e.ProviderCharsPerToken[name]; !positiveFinite(v) {
			bad(est+".provider_chars_per_token."+name, "must be a positive number, got %v", v)
		}
	}
	if c.Processing.ResponseBufferLimitBytes < 0 {
		bad("processing.response_buffer_limit_bytes", "must be positive, got %d", c.Processing.ResponseBufferLimitBytes)
	}
	if c.Processing.MaxRequestBodyBytes < 0 {
		bad("processing.max_request_body_bytes", "must be positive, got %d", c.Processing.MaxRequestBodyBytes)
	}
	if ns := c.Processing.MetadataNamespace; strings.ContainsAny(ns, " :\t\n") {
		bad("processing.metadata_namespace", "must not contain spaces or colons, got %q", ns)
	}
	return errors.Join(errs...)
}

// FailoverChains compiles features.failover against the configured
// providers: a provider is known when it is enabled, and holds credentials
// in auth: gateway_keys mode. Every impossible chain is reported, each
// named. A disabled block is checked the same way and yields an empty Set.
func (c *Config) FailoverChains() (*failover.Set, error) {
	return failover.Compile(c.Features.Failover, func(name string) failover.ProviderInfo {
		p, ok := c.Providers[name]
		if !isKnownProvider(name) || (ok && !p.IsEnabled()) {
			return failover.ProviderInfo{}
		}
		return failover.ProviderInfo{Known: true, HoldsCredentials: p.GatewayKeys()}
	})
}

func isKnownProvider(name string) bool {
	for _, k := range knownProviders {
		if k == name {
			return true
		}
	}
	return false
}

func positiveFinite(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

// PriceTable returns the shipped default prices with the configured models
// merged over them.
func (c *Config) PriceTable() (*cost.Table, error) {
	return cost.NewTableWithDefaults(c.ConfiguredPrices())
}

// ConfiguredPrices returns the models priced in the rules, by provider.
func (c *Config) ConfiguredPrices() map[string]map[string]cost.Model {
	configured := map[string]map[string]cost.Model{}
	for name, p := range c.Providers {
		if len(p.Models) > 0 {
			configured[name] = p.Models
		}
	}
	return configured
}
