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
	f := newFieldSlab(st.metadataFields())
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
				f.f[k] = pv
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
			f.num("input_tokens", float64(u.InputTokens))
			f.num("output_tokens", float64(u.OutputTokens))
			f.num("total_tokens", float64(u.TotalTokens))
			putCount(f, "cache_read_tokens", u.CacheReadTokens)
			putCount(f, "cache_write_tokens", u.CacheWriteTokens)
			putCount(f, "reasoning_tokens", u.ReasoningTokens)
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
	if len(f.f) == 0 {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		st.s.cfg.Processing.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: f.f}),
	}}
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

func putCount(f *fieldSlab, key string, n int64) {
	if n != 0 {
		f.num(key, float64(n))
	}
}
