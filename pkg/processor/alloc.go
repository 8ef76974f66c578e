package processor

import (
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The replies that carry metadata and usage headers are built on every
// request; these builders take their small objects from a few slabs
// instead of one allocation each (the lifecycle benchmark showed them among
// the server's main allocation sources).

// fieldSlab builds structpb values for one metadata struct.
type fieldSlab struct {
	vals []structpb.Value
	strs []structpb.Value_StringValue
	nums []structpb.Value_NumberValue
	f    map[string]*structpb.Value
}

func newFieldSlab(n int) *fieldSlab {
	return &fieldSlab{
		vals: make([]structpb.Value, 0, n),
		strs: make([]structpb.Value_StringValue, 0, n),
		nums: make([]structpb.Value_NumberValue, 0, n),
		f:    make(map[string]*structpb.Value, n),
	}
}

func (s *fieldSlab) next() *structpb.Value {
	if len(s.vals) == cap(s.vals) {
		return &structpb.Value{}
	}
	s.vals = s.vals[:len(s.vals)+1]
	return &s.vals[len(s.vals)-1]
}

// str sets k to v, with any byte that is not UTF-8 replaced by U+FFFD: a
// protobuf string must be UTF-8 (Envoy refuses a reply whose metadata is
// not), and values such as the user come from request headers.
func (s *fieldSlab) str(k, v string) {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	val := s.next()
	if len(s.strs) < cap(s.strs) {
		s.strs = s.strs[:len(s.strs)+1]
		sv := &s.strs[len(s.strs)-1]
		sv.StringValue = v
		val.Kind = sv
	} else {
		val.Kind = &structpb.Value_StringValue{StringValue: v}
	}
	s.f[k] = val
}

func (s *fieldSlab) num(k string, v float64) {
	val := s.next()
	if len(s.nums) < cap(s.nums) {
		s.nums = s.nums[:len(s.nums)+1]
		nv := &s.nums[len(s.nums)-1]
		nv.NumberValue = v
		val.Kind = nv
	} else {
		val.Kind = &structpb.Value_NumberValue{NumberValue: v}
	}
	s.f[k] = val
}

func (s *fieldSlab) boolean(k string, v bool) {
	val := s.next()
	val.Kind = &structpb.Value_BoolValue{BoolValue: v}
	s.f[k] = val
}

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
