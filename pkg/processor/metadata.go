package processor

import (
	"strings"
	"unicode/utf8"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// metadata returns the dynamic metadata for Envoy's access log and later
// filters, in one namespace (config processing.metadata_namespace). Envoy
// merges each reply's metadata into the namespace, so after the admission
// reply carried provider, model, user, stream and estimated_input_tokens,
// the final reply carries only what the response added: usage (cache and
// reasoning counts only when non-zero), the vendor's request id, finish
// reason, TTFB, and refused_by for local refusals. The status is Envoy's own
// %RESPONSE_CODE%. Token counts are numbers; ids are strings. The fields
// are a list, not a google.protobuf.Struct: the codec writes them as the
// namespace's Struct (mdFields), which spares a map per reply.
func (st *stream) metadata() mdFields {
	if st.provider == nil {
		return nil
	}
	f := mdFields(make([]mdEntry, 0, st.metadataFields()))
	if !st.mdSent {
		f.str("provider", st.call.Provider)
		f.str("model", st.call.Info.Model)
		f.str("user", st.call.Identity.User)
		if st.call.Identity.GatewayKey != nil {
			f.str("key_id", st.call.Identity.KeyID)
			f.str("key_owner", st.call.Identity.Owner)
			f.str("team", st.call.Identity.Team)
		}
		f.boolean("stream", st.call.Info.Stream)
		f.num("estimated_input_tokens", float64(st.call.EstimatedInputTokens))
		if fo := st.call.Failover; fo != nil {
			f.str("requested_provider", fo.Requested.Provider)
			f.str("requested_model", fo.Requested.Model)
			f.str("failover_reason", fo.Reason)
		}
		if st.chained() {
			f.str(mdChain, st.fo.chain.Key)
			f.str(mdChainPath, st.chainPath())
			f.str(mdChainTargets, chainTargets(st.fo.route))
		}
		for k, v := range st.extraMD {
			if pv, err := structpb.NewValue(v); err == nil {
				f.value(k, pv)
			}
		}
	}
	if st.reMD {
		// Served by another target than admission wrote: the log names it.
		st.reMD = false
		f.str("provider", st.call.Provider)
		f.str("model", st.call.Info.Model)
		if fo := st.call.Failover; fo != nil {
			f.str("requested_provider", fo.Requested.Provider)
			f.str("requested_model", fo.Requested.Model)
			f.str("failover_reason", fo.Reason)
		}
	}
	if r := st.rec; r != nil {
		u := r.Usage
		if u.Model != "" && (u.Model != st.call.Info.Model || !st.mdSent) {
			f.str("model", u.Model)
		}
		if u.Found {
			putUsage(&f, u)
		}
		if r.Cost.Known {
			f.num("cost_usd", r.Cost.TotalUSD)
		}
		if u.RequestID != "" {
			f.str("request_id", u.RequestID)
		}
		if u.FinishReason != "" {
			f.str("finish_reason", u.FinishReason)
		}
		if r.TTFB > 0 {
			f.num("ttfb_ms", float64(r.TTFB.Milliseconds()))
		}
		if r.RefusedBy != "" {
			f.str("refused_by", r.RefusedBy)
		}
		if r.ReplacedBy != "" {
			f.str("replaced_by", r.ReplacedBy)
		}
	}
	if len(f) == 0 {
		return nil
	}
	return f
}

// metadataFields returns an upper bound of the fields metadata writes, so
// that its slab is sized for them: a fixed 16 made each reply allocate
// about 2 KiB, twice per request.
func (st *stream) metadataFields() int {
	n := 0
	if !st.mdSent {
		n += 5 + len(st.extraMD)
		if st.call.Failover != nil {
			n += 3 // requested_provider, requested_model, failover_reason
		}
		if st.call.Identity.GatewayKey != nil {
			n += 3 // key_id, key_owner, team
		}
		if st.chained() {
			n += 3 // chain, chain_path, chain_targets
		}
	}
	if st.reMD {
		n += 5
	}
	if r := st.rec; r != nil {
		n++ // model
		if r.Usage.Found {
			n += 3 + nonZero(r.Usage.CacheReadTokens) + nonZero(r.Usage.CacheWriteTokens) + nonZero(r.Usage.ReasoningTokens)
		}
		n += boolInt(r.Cost.Known) + boolInt(r.Usage.RequestID != "") + boolInt(r.Usage.FinishReason != "") +
			boolInt(r.TTFB > 0) + boolInt(r.RefusedBy != "") + boolInt(r.ReplacedBy != "")
	}
	return n
}

func nonZero(n int64) int { return boolInt(n != 0) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// putUsage sets the token counts of u.
func putUsage(f *mdFields, u providers.Usage) {
	f.num("input_tokens", float64(u.InputTokens))
	f.num("output_tokens", float64(u.OutputTokens))
	f.num("total_tokens", float64(u.TotalTokens))
	putCount(f, "cache_read_tokens", u.CacheReadTokens)
	putCount(f, "cache_write_tokens", u.CacheWriteTokens)
	putCount(f, "reasoning_tokens", u.ReasoningTokens)
}

// streamUsageMetadata records the usage read so far from a streamed body
// for resp, a chunk's reply, when its counts changed since the last chunk
// that sent them. Envoy merges each reply's metadata into the namespace, so
// the access log has the usage even when the client hangs up between the
// usage event and the body's end (the OpenAI SDK closes at [DONE], before
// the end-of-stream chunk); the final reply sends it again.
func (st *stream) streamUsageMetadata(resp *extprocv3.ProcessingResponse) {
	u := st.parser.Usage()
	if !u.Found {
		return
	}
	c := usageCounts(u)
	if c == st.mdUsage {
		return
	}
	st.mdUsage = c
	f := mdFields(make([]mdEntry, 0, 6))
	putUsage(&f, u)
	st.mdReply = pendingMD{resp, f}
}

// usageCounts are the counts of u that the metadata carries.
func usageCounts(u providers.Usage) [6]int64 {
	return [6]int64{u.InputTokens, u.OutputTokens, u.TotalTokens, u.CacheReadTokens, u.CacheWriteTokens, u.ReasoningTokens}
}

func putCount(f *mdFields, key string, n int64) {
	if n != 0 {
		f.num(key, float64(n))
	}
}

// mdEntry is one field of a reply's dynamic metadata: a string, a number,
// a bool or (val) any other structpb value.
type mdEntry struct {
	key  string
	kind mdKind
	str  string
	num  float64
	val  *structpb.Value
}

type mdKind uint8

const (
	mdString mdKind = iota
	mdNumber
	mdBool
	mdValue
)

// mdFields are the fields of a reply's metadata namespace, in the order
// set; setting a key again replaces its value, as in a map.
type mdFields []mdEntry

func (f *mdFields) set(m mdEntry) {
	for i := range *f {
		if (*f)[i].key == m.key {
			(*f)[i] = m
			return
		}
	}
	*f = append(*f, m)
}

// str sets k to v, with any byte that is not UTF-8 replaced by U+FFFD: a
// protobuf string must be UTF-8 (Envoy refuses a reply whose metadata is
// not), and values such as the user come from request headers.
func (f *mdFields) str(k, v string) {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	f.set(mdEntry{key: k, kind: mdString, str: v})
}

func (f *mdFields) num(k string, v float64) { f.set(mdEntry{key: k, kind: mdNumber, num: v}) }

func (f *mdFields) boolean(k string, v bool) {
	n := 0.0
	if v {
		n = 1
	}
	f.set(mdEntry{key: k, kind: mdBool, num: n})
}

func (f *mdFields) value(k string, v *structpb.Value) { f.set(mdEntry{key: k, kind: mdValue, val: v}) }

// structValue returns m's value as protobuf-go's structpb.Value.
func (m *mdEntry) structValue() *structpb.Value {
	switch m.kind {
	case mdString:
		return structpb.NewStringValue(m.str)
	case mdNumber:
		return structpb.NewNumberValue(m.num)
	case mdBool:
		return structpb.NewBoolValue(m.num != 0)
	}
	return m.val
}

// Struct returns the metadata as Envoy receives it: namespace ns holding
// the fields (nil for no fields). The codec writes the same message without
// building it.
func (f mdFields) Struct(ns string) *structpb.Struct {
	if len(f) == 0 {
		return nil
	}
	inner := make(map[string]*structpb.Value, len(f))
	for i := range f {
		inner[f[i].key] = f[i].structValue()
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{ns: structpb.NewStructValue(&structpb.Struct{Fields: inner})}}
}

// pendingMD is the metadata built for the reply to the message being
// handled (withMetadata); Process sends it with the reply.
type pendingMD struct {
	resp   *extprocv3.ProcessingResponse
	fields mdFields
}

// withMetadata records the metadata for resp (st.metadata; nothing when it
// has none) and returns resp. A message has one reply: a later call, for
// any reply, replaces what an earlier one recorded.
func (st *stream) withMetadata(resp *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	if f := st.metadata(); len(f) > 0 {
		st.mdReply = pendingMD{resp, f}
	}
	return resp
}

// takeMetadata returns the metadata recorded for resp (nil for none) and
// forgets what was recorded.
func (st *stream) takeMetadata(resp *extprocv3.ProcessingResponse) mdFields {
	p := st.mdReply
	st.mdReply = pendingMD{}
	if p.resp != resp {
		return nil
	}
	return p.fields
}
