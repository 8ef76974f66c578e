package processor

import (
	"google.golang.org/protobuf/types/known/structpb"
)

// metadata returns the dynamic metadata for Envoy's access log and later
// filters, in one namespace (config processing.metadata_namespace). Envoy
// merges each reply's metadata into the namespace, so after the admission
// reply carried provider, model, user, stream and estimated_input_tokens,
// the final reply carries only what the response added: usage (cache and
// reasoning counts only when non-zero), the vendor's request id, finish
// reason, TTFB, and refused_by for local refusals. The status is Envoy's own
// %RESPONSE_CODE%. Token counts are numbers; ids are strings.
func (st *stream) metadata() *structpb.Struct {
	if st.provider == nil {
		return nil
	}
	f := make(map[string]*structpb.Value, 16)
	if !st.mdSent {
		f["provider"] = structpb.NewStringValue(st.call.Provider)
		f["model"] = structpb.NewStringValue(st.call.Info.Model)
		f["user"] = structpb.NewStringValue(st.call.Identity.User)
		f["stream"] = structpb.NewBoolValue(st.call.Info.Stream)
		f["estimated_input_tokens"] = structpb.NewNumberValue(float64(st.call.EstimatedInputTokens))
		for k, v := range st.extraMD {
			if pv, err := structpb.NewValue(v); err == nil {
				f[k] = pv
			}
		}
	}
	if r := st.rec; r != nil {
		u := r.Usage
		if u.Model != "" && (u.Model != st.call.Info.Model || !st.mdSent) {
			f["model"] = structpb.NewStringValue(u.Model)
		}
		if u.Found {
			f["input_tokens"] = structpb.NewNumberValue(float64(u.InputTokens))
			f["output_tokens"] = structpb.NewNumberValue(float64(u.OutputTokens))
			f["total_tokens"] = structpb.NewNumberValue(float64(u.TotalTokens))
			putCount(f, "cache_read_tokens", u.CacheReadTokens)
			putCount(f, "cache_write_tokens", u.CacheWriteTokens)
			putCount(f, "reasoning_tokens", u.ReasoningTokens)
		}
		if r.Cost.Known {
			f["cost_usd"] = structpb.NewNumberValue(r.Cost.TotalUSD)
		}
		if u.RequestID != "" {
			f["request_id"] = structpb.NewStringValue(u.RequestID)
		}
		if u.FinishReason != "" {
			f["finish_reason"] = structpb.NewStringValue(u.FinishReason)
		}
		if r.TTFB > 0 {
			f["ttfb_ms"] = structpb.NewNumberValue(float64(r.TTFB.Milliseconds()))
		}
		if r.RefusedBy != "" {
			f["refused_by"] = structpb.NewStringValue(r.RefusedBy)
		}
		if r.ReplacedBy != "" {
			f["replaced_by"] = structpb.NewStringValue(r.ReplacedBy)
		}
	}
	if len(f) == 0 {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		st.s.cfg.Processing.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: f}),
	}}
}

func putCount(f map[string]*structpb.Value, key string, n int64) {
	if n != 0 {
		f[key] = structpb.NewNumberValue(float64(n))
	}
}
