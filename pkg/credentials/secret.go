package credentials

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// redacted is what every formatting of a Secret prints.
const redacted = "[REDACTED]"

// Secret holds a credential. Every way of printing it (fmt verbs, slog,
// JSON or text marshalling) writes "[REDACTED]"; only Reveal returns the
// value, for the one place it is written: the vendor request header. The
// zero value is the empty secret. Secret is immutable and safe for
// concurrent use.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the raw credential.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (Secret) GoString() string { return redacted }

// Format implements fmt.Formatter, so no verb (%x, %q, %v ...) prints the
// value.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON writes "[REDACTED]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText writes [REDACTED].
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalJSON reads a JSON string, so configuration can hold a Secret.
// Errors never quote the input.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("credential must be a string")
	}
	s.v = v
	return nil
}
