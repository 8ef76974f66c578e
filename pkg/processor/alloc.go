package processor

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// The replies that carry usage headers are built on every request; their
// header mutations take their small objects from one slab instead of one
// allocation each (the lifecycle benchmark showed them among the server's
// main allocation sources).

// headerSlab builds header-mutation entries.
type headerSlab struct {
	opts []corev3.HeaderValueOption
	hvs  []corev3.HeaderValue
	out  []*corev3.HeaderValueOption
}

func newHeaderSlab(n int) *headerSlab {
	return &headerSlab{opts: make([]corev3.HeaderValueOption, n), hvs: make([]corev3.HeaderValue, n),
		out: make([]*corev3.HeaderValueOption, 0, n)}
}

// set adds an overwrite of name with value (raw_value only; see setHeader).
func (s *headerSlab) set(name, value string) {
	i := len(s.out)
	if i == len(s.opts) {
		s.out = append(s.out, setHeader(name, value))
		return
	}
	s.hvs[i].Key, s.hvs[i].RawValue = name, []byte(value)
	s.opts[i].Header = &s.hvs[i]
	s.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	s.out = append(s.out, &s.opts[i])
}
