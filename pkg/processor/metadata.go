package processor

import (
	"google.golang.org/protobuf/types/known/structpb"
)

// metadata returns the dynamic metadata for Envoy's access log and later
// filters: one namespace (config processing.metadata_namespace) with the
// request's provider, model, user and, once settled, its usage. Token counts
// are numbers; ids are strings.
func (st *stream) metadata() *structpb.Struct {
	if st.provider == nil {
		return nil
	}
	f := map[string]*structpb.Value{
		"provider":               structpb.NewStringValue(st.call.Provider),
		"model":                  structpb.NewStringValue(st.call.Info.Model),
		"user":                   structpb.NewStringValue(st.call.Identity.User),
		"stream":                 structpb.NewBoolValue(st.call.Info.Stream),
		"estimated_input_tokens": structpb.NewNumberValue(float64(st.call.EstimatedInputTokens)),
	}
	if r := st.rec; r != nil {
		u := r.Usage
		f["status"] = structpb.NewNumberValue(float64(r.Status))
		f["outcome"] = structpb.NewStringValue(string(r.Outcome))
		if u.Model != "" {
			f["model"] = structpb.NewStringValue(u.Model)
		}
		if u.Found {
			f["input_tokens"] = structpb.NewNumberValue(float64(u.InputTokens))
			f["output_tokens"] = structpb.NewNumberValue(float64(u.OutputTokens))
			f["total_tokens"] = structpb.NewNumberValue(float64(u.TotalTokens))
			f["cache_read_tokens"] = structpb.NewNumberValue(float64(u.CacheReadTokens))
			f["cache_write_tokens"] = structpb.NewNumberValue(float64(u.CacheWriteTokens))
			f["reasoning_tokens"] = structpb.NewNumberValue(float64(u.ReasoningTokens))
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
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		st.s.cfg.Processing.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: f}),
	}}
}
