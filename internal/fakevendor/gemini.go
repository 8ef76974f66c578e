package fakevendor

import (
	"encoding/json"
	"strings"
)

// geminiWordsPerChunk is how many generated words one streamed chunk carries.
const geminiWordsPerChunk = 3

// geminiUsage renders u as usageMetadata; zero optional counts are omitted
// as Gemini omits them.
func geminiUsage(u Usage) map[string]any {
	out := map[string]any{
		"promptTokenCount":    u.InputTokens,
		"totalTokenCount":     u.TotalTokens,
		"promptTokensDetails": []any{map[string]any{"modality": "TEXT", "tokenCount": u.InputTokens}},
	}
	if u.OutputTokens > 0 {
		out["candidatesTokenCount"] = u.OutputTokens
	}
	if u.ReasoningTokens > 0 {
		out["thoughtsTokenCount"] = u.ReasoningTokens
	}
	if u.CacheReadTokens > 0 {
		out["cachedContentTokenCount"] = u.CacheReadTokens
		out["cacheTokensDetails"] = []any{map[string]any{"modality": "TEXT", "tokenCount": u.CacheReadTokens}}
	}
	return out
}

// geminiPrompt returns the prompt text of a GenerateContentRequest.
func geminiPrompt(m map[string]any) (string, bool) {
	var tc textCollector
	sys := obj(m, "systemInstruction")
	if sys == nil {
		sys = obj(m, "system_instruction")
	}
	tc.content(sys["parts"])
	contents := list(m, "contents")
	for _, raw := range contents {
		if c, ok := raw.(map[string]any); ok {
			tc.content(c["parts"])
		}
	}
	return tc.String(), len(contents) > 0
}

// marshalIndent renders v as Gemini does for JSON bodies: indented by two spaces.
func marshalIndent(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic("fakevendor: marshal: " + err.Error())
	}
	return b
}

// handleGenerate serves models/{model}:generateContent and
// :streamGenerateContent (SSE with alt=sse, otherwise a streamed JSON array).
func handleGenerate(q *request) (*reply, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, badRequest("Invalid JSON payload received.")
	}
	prompt, hasContents := geminiPrompt(m)
	if !hasContents {
		return nil, badRequest("* GenerateContentRequest.contents: contents is not specified\n")
	}
	cfg := obj(m, "generationConfig")
	if cfg == nil {
		cfg = obj(m, "generation_config")
	}
	maxTokens := num(cfg, "maxOutputTokens")
	if maxTokens == 0 {
		maxTokens = num(cfg, "max_output_tokens")
	}
	p := planUsage(styleGemini, prompt, maxTokens, q.dir, q.opts.DefaultOutputTokens)
	usage := p.usage
	finish := "STOP"
	if p.truncated {
		finish = "MAX_TOKENS"
	}
	rid := requestID(q)
	h := baseHeaders(q, rid)
	response := func(t string, finishReason string, u Usage) map[string]any {
		cand := map[string]any{"content": map[string]any{"parts": []any{map[string]any{"text": t}}, "role": "model"}, "index": 0}
		if finishReason != "" {
			cand["finishReason"] = finishReason
		}
		return map[string]any{"candidates": []any{cand}, "usageMetadata": geminiUsage(u), "modelVersion": q.model, "responseId": rid}
	}

	if !strings.HasSuffix(q.path, ":streamGenerateContent") {
		rp := jsonReply(200, h, marshalIndent(response(text(p.words), finish, usage)), &usage)
		rp.requestID = rid
		return rp, nil
	}

	// Stream: chunks of a few words; every chunk reports the usage so far,
	// the last one the final usage and the finish reason.
	ds := deltas(p.words)
	n := max(1, (len(ds)+geminiWordsPerChunk-1)/geminiWordsPerChunk)
	sse := q.r.URL.Query().Get("alt") == "sse"
	segs := make([]segment, n)
	for i := range n {
		piece := strings.Join(ds[min(len(ds), i*geminiWordsPerChunk):min(len(ds), (i+1)*geminiWordsPerChunk)], "")
		u := usage
		reason := finish
		if i < n-1 {
			u.OutputTokens = usage.OutputTokens * int64(i+1) / int64(n)
			u.TotalTokens = u.InputTokens + u.OutputTokens + u.ReasoningTokens
			reason = ""
		}
		snap := u
		var data []byte
		switch {
		case sse:
			data = append(append([]byte("data: "), mustJSON(response(piece, reason, u))...), "\r\n\r\n"...)
		case i == 0:
			data = append([]byte("["), marshalIndent(response(piece, reason, u))...)
		default:
			data = append([]byte("\n,\r\n"), marshalIndent(response(piece, reason, u))...)
		}
		if !sse && i == n-1 {
			data = append(data, "\n]"...)
		}
		segs[i] = segment{data: data, usage: &snap}
	}
	if sse {
		h = sseHeaders(h, "text/event-stream")
	}
	return &reply{status: 200, header: h, segments: segs, stream: true, usage: &usage, requestID: rid}, nil
}

// handleGeminiCountTokens serves models/{model}:countTokens; the body holds
// contents or a generateContentRequest.
func handleGeminiCountTokens(q *request) (*reply, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, badRequest("Invalid JSON payload received.")
	}
	if inner := obj(m, "generateContentRequest"); inner != nil {
		m = inner
	}
	prompt, _ := geminiPrompt(m)
	n := int64(0)
	if prompt != "" {
		n = estimateTokens(prompt)
	}
	if q.dir.inputTokens >= 0 {
		n = q.dir.inputTokens
	}
	out := map[string]any{"totalTokens": n, "promptTokensDetails": []any{map[string]any{"modality": "TEXT", "tokenCount": n}}}
	if q.dir.cachedTokens > 0 {
		out["cachedContentTokenCount"] = q.dir.cachedTokens
	}
	rp := jsonReply(200, baseHeaders(q, ""), marshalIndent(out), nil)
	return rp, nil
}
