package credentials

import (
	"errors"
	"fmt"
)

// Policy chooses which of several keys a request uses.
type Policy string

// Selection policies accepted in [Config.Selection].
const (
	// PolicyRoundRobin cycles through the keys in order (the default).
	PolicyRoundRobin Policy = "round_robin"
	// PolicyLeastRecentlyLimited picks the key whose last vendor 429 is
	// oldest (keys never limited first), round robin among equals.
	PolicyLeastRecentlyLimited Policy = "least_recently_limited"
)

// Config is the YAML block providers.<name>.credentials. Exactly one of
// APIKey, APIKeyFile and Keys is set. It holds data only.
type Config struct {
	// APIKey is the vendor key itself; write it as "${OPENAI_API_KEY}" so
	// pkg/config expands it from the environment.
	APIKey Secret `json:"api_key,omitzero"`
	// APIKeyFile is a file holding the key (surrounding white space is
	// ignored), re-read every reload interval so a rotated Kubernetes
	// secret mount takes effect without a restart.
	APIKeyFile string `json:"api_key_file,omitempty"`
	// Keys lists several keys for the provider; Selection picks one per
	// request.
	Keys []Source `json:"keys,omitempty"`
	// Selection is "round_robin" (default) or "least_recently_limited".
	Selection Policy `json:"selection,omitempty"`
}

// Source is one key of [Config.Keys]: exactly one of APIKey and APIKeyFile.
type Source struct {
	// Name labels the key in logs and metrics. Default "key<index>"
	// (key0, key1 ...). It must not be the key itself.
	Name       string `json:"name,omitempty"`
	APIKey     Secret `json:"api_key,omitzero"`
	APIKeyFile string `json:"api_key_file,omitempty"`
}

// IsZero reports whether c configures no credential.
func (c Config) IsZero() bool {
	return c.APIKey.IsZero() && c.APIKeyFile == "" && len(c.Keys) == 0
}

// sources returns the configured keys as a list with names filled in.
func (c Config) sources() []Source {
	if len(c.Keys) == 0 {
		return []Source{{Name: "key0", APIKey: c.APIKey, APIKeyFile: c.APIKeyFile}}
	}
	out := make([]Source, len(c.Keys))
	for i, s := range c.Keys {
		if s.Name == "" {
			s.Name = fmt.Sprintf("key%d", i)
		}
		out[i] = s
	}
	return out
}

// Validate reports every problem of c, with field paths under path
// ("providers.openai.credentials"). Messages never quote a key.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(p, msg string) { errs = append(errs, fmt.Errorf("%s: %s", p, msg)) }
	set := 0
	for _, b := range []bool{!c.APIKey.IsZero(), c.APIKeyFile != "", len(c.Keys) > 0} {
		if b {
			set++
		}
	}
	if set != 1 {
		bad(path, "set exactly one of api_key, api_key_file and keys")
	}
	switch c.Selection {
	case "", PolicyRoundRobin, PolicyLeastRecentlyLimited:
	default:
		bad(path+".selection", fmt.Sprintf("must be %q or %q", PolicyRoundRobin, PolicyLeastRecentlyLimited))
	}
	names := map[string]bool{}
	for i, s := range c.Keys {
		p := fmt.Sprintf("%s.keys[%d]", path, i)
		if s.APIKey.IsZero() == (s.APIKeyFile == "") {
			bad(p, "set exactly one of api_key and api_key_file")
		}
		if s.Name != "" && s.Name == s.APIKey.Reveal() {
			bad(p+".name", "must not be the key itself")
		}
		if s.Name != "" && names[s.Name] {
			bad(p+".name", "duplicate name")
		}
		names[s.Name] = true
	}
	return errors.Join(errs...)
}
