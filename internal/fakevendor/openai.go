package fakevendor

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
)

// mustJSON marshals values built from maps, slices, strings and numbers,
// which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakevendor: marshal: " + err.Error())
	}
	return b
}

// openAIChatUsage renders u as a Chat Completions usage object.
func openAIChatUsage(u Usage) map[string]any {
	prompt := map[string]any{"cached_tokens": u.CacheReadTokens, "audio_tokens": 0}
	if u.CacheWriteTokens > 0 {
		prompt["cache_write_tokens"] = u.CacheWriteTokens
	}
	return map[string]any{
		"prompt_tokens":         u.InputTokens,
		"completion_tokens":     u.OutputTokens,
		"total_tokens":          u.TotalTokens,
		"prompt_tokens_details": prompt,
		"completion_tokens_details": map[string]any{
			"reasoning_tokens":           u.ReasoningTokens,
			"audio_tokens":               0,
			"accepted_prediction_tokens": 0,
			"rejected_prediction_tokens": 0,
		},
	}
}

// handleChat serves POST /v1/chat/completions for OpenAI and for the
// OpenAI-compatible endpoints of Anthropic and Gemini.
func handleChat(q *request) (*reply, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, badRequest("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
	}
	q.model = str(m, "model")
	if q.model == "" {
		return nil, badRequest("you must provide a model parameter")
	}
	msgs := list(m, "messages")
	if len(msgs) == 0 {
		return nil, badRequest("[] is too short - 'messages'")
	}
	var tc textCollector
	for _, raw := range msgs {
		if msg, ok := raw.(map[string]any); ok {
			tc.content(msg["content"])
		}
	}
	maxTokens := num(m, "max_completion_tokens")
	if maxTokens == 0 {
		maxTokens = num(m, "max_tokens")
	}
	p := planUsage(styleOpenAI, tc.String(), maxTokens, q.dir, q.opts.DefaultOutputTokens)
	finish := "stop"
	if p.truncated {
		finish = "length"
	}
	rid := requestID(q)
	h := baseHeaders(q, rid)
	if q.vendor == VendorGemini {
		rid = "" // Gemini's compatible endpoint carries no request id
	}
	id := "chatcmpl-" + q.randString(alnum, 29)
	created := q.now.Unix()
	fingerprint := "fp_" + q.randString(hexdig, 10)
	usage := p.usage

	stream, _ := m["stream"].(bool)
	if !stream {
		body := mustJSON(map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": q.model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": text(p.words), "refusal": nil, "annotations": []any{}},
				"logprobs":      nil,
				"finish_reason": finish,
			}},
			"usage":              openAIChatUsage(usage),
			"service_tier":       "default",
			"system_fingerprint": fingerprint,
		})
		rp := jsonReply(200, h, body, &usage)
		rp.requestID = rid
		return rp, nil
	}

	includeUsage, _ := obj(m, "stream_options")["include_usage"].(bool)
	chunk := func(delta map[string]any, finishReason any) segment {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": q.model,
			"service_tier": "default", "system_fingerprint": fingerprint,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finishReason}},
		}
		if includeUsage {
			c["usage"] = nil
		}
		return segment{data: sseEvent("", mustJSON(c))}
	}
	segs := []segment{chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil)}
	for _, d := range deltas(p.words) {
		segs = append(segs, chunk(map[string]any{"content": d}, nil))
	}
	segs = append(segs, chunk(map[string]any{}, finish))
	rp := &reply{status: 200, header: sseHeaders(h, "text/event-stream; charset=utf-8"), stream: true, requestID: rid}
	if includeUsage {
		segs = append(segs, segment{
			data: sseEvent("", mustJSON(map[string]any{
				"id": id, "object": "chat.completion.chunk", "created": created, "model": q.model,
				"service_tier": "default", "system_fingerprint": fingerprint,
				"choices": []any{}, "usage": openAIChatUsage(usage),
			})),
			usage: &usage,
		})
		rp.usage = &usage
	}
	rp.segments = append(segs, segment{data: sseEvent("", []byte("[DONE]"))})
	return rp, nil
}

// responsesUsage renders u as a Responses API usage object.
func responsesUsage(u Usage) map[string]any {
	return map[string]any{
		"input_tokens":          u.InputTokens,
		"input_tokens_details":  map[string]any{"cached_tokens": u.CacheReadTokens, "cache_write_tokens": u.CacheWriteTokens},
		"output_tokens":         u.OutputTokens,
		"output_tokens_details": map[string]any{"reasoning_tokens": u.ReasoningTokens},
		"total_tokens":          u.TotalTokens,
	}
}

// handleResponses serves POST /v1/responses.
func handleResponses(q *request) (*reply, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, badRequest("We could not parse the JSON body of your request.")
	}
	q.model = str(m, "model")
	if q.model == "" {
		return nil, badRequest("Missing required parameter: 'model'.")
	}
	var tc textCollector
	tc.add(str(m, "instructions"))
	switch in := m["input"].(type) {
	case string:
		tc.add(in)
	case []any:
		for _, raw := range in {
			if item, ok := raw.(map[string]any); ok {
				tc.content(item["content"])
			}
		}
	default:
		return nil, badRequest("Missing required parameter: 'input'.")
	}
	maxTokens := num(m, "max_output_tokens")
	p := planUsage(styleOpenAI, tc.String(), maxTokens, q.dir, q.opts.DefaultOutputTokens)
	usage := p.usage
	rid := requestID(q)
	h := baseHeaders(q, rid)
	respID := "resp_" + q.randString(hexdig, 48)
	msgID := "msg_" + q.randString(hexdig, 48)
	full := text(p.words)
	status, final := "completed", "response.completed"
	var incomplete any
	if p.truncated {
		status, final = "incomplete", "response.incomplete"
		incomplete = map[string]any{"reason": "max_output_tokens"}
	}
	var maxOut any
	if maxTokens > 0 {
		maxOut = maxTokens
	}
	part := func(t string) map[string]any {
		return map[string]any{"type": "output_text", "annotations": []any{}, "logprobs": []any{}, "text": t}
	}
	item := func(st string, content []any) map[string]any {
		return map[string]any{"id": msgID, "type": "message", "status": st, "content": content, "role": "assistant"}
	}
	response := func(st string, output []any, u any, inc any) map[string]any {
		return map[string]any{
			"id": respID, "object": "response", "created_at": q.now.Unix(), "status": st,
			"background": false, "error": nil, "incomplete_details": inc,
			"instructions": m["instructions"], "max_output_tokens": maxOut, "model": q.model,
			"output": output, "parallel_tool_calls": true, "previous_response_id": nil,
			"reasoning": map[string]any{"effort": nil, "summary": nil}, "service_tier": "default",
			"store": true, "temperature": 1.0, "text": map[string]any{"format": map[string]any{"type": "text"}},
			"tool_choice": "auto", "tools": []any{}, "top_p": 1.0, "truncation": "disabled",
			"usage": u, "user": nil, "metadata": map[string]any{},
		}
	}
	done := item("completed", []any{part(full)})

	stream, _ := m["stream"].(bool)
	if !stream {
		rp := jsonReply(200, h, mustJSON(response(status, []any{done}, responsesUsage(usage), incomplete)), &usage)
		rp.requestID = rid
		return rp, nil
	}
	seq := 0
	var segs []segment
	emit := func(typ string, fields map[string]any, u *Usage) {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		segs = append(segs, segment{data: sseEvent(typ, mustJSON(fields)), usage: u})
	}
	emit("response.created", map[string]any{"response": response("in_progress", []any{}, nil, nil)}, nil)
	emit("response.in_progress", map[string]any{"response": response("in_progress", []any{}, nil, nil)}, nil)
	emit("response.output_item.added", map[string]any{"output_index": 0, "item": item("in_progress", []any{})}, nil)
	loc := func(f map[string]any) map[string]any {
		f["item_id"], f["output_index"], f["content_index"] = msgID, 0, 0
		return f
	}
	emit("response.content_part.added", loc(map[string]any{"part": part("")}), nil)
	for _, d := range deltas(p.words) {
		emit("response.output_text.delta", loc(map[string]any{"delta": d, "logprobs": []any{}}), nil)
	}
	emit("response.output_text.done", loc(map[string]any{"text": full, "logprobs": []any{}}), nil)
	emit("response.content_part.done", loc(map[string]any{"part": part(full)}), nil)
	emit("response.output_item.done", map[string]any{"output_index": 0, "item": done}, nil)
	emit(final, map[string]any{"response": response(status, []any{done}, responsesUsage(usage), incomplete)}, &usage)
	return &reply{status: 200, header: sseHeaders(h, "text/event-stream; charset=utf-8"), segments: segs,
		stream: true, usage: &usage, requestID: rid}, nil
}

// maxEmbeddingInputs is OpenAI's limit on the inputs of one embeddings request.
const maxEmbeddingInputs = 2048

// handleEmbeddings serves POST /v1/embeddings. Every input string counts
// as prompt text; an input given as token ids counts one token per id.
func handleEmbeddings(q *request) (*reply, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, badRequest("We could not parse the JSON body of your request.")
	}
	q.model = str(m, "model")
	if q.model == "" {
		return nil, badRequest("you must provide a model parameter")
	}
	var inputs []any
	switch in := m["input"].(type) {
	case string:
		inputs = []any{in}
	case []any:
		inputs = in
		if len(in) > 0 {
			if _, isNum := in[0].(float64); isNum {
				inputs = []any{in}
			}
		}
	}
	if len(inputs) == 0 {
		return nil, badRequest("'input' is a required property")
	}
	if len(inputs) > maxEmbeddingInputs {
		return nil, badRequest("'input' must have at most %d items", maxEmbeddingInputs)
	}
	var tokens int64
	for _, in := range inputs {
		switch v := in.(type) {
		case string:
			tokens += estimateTokens(v)
		case []any:
			tokens += int64(len(v))
		default:
			return nil, badRequest("'input' must be a string, an array of strings or an array of token arrays")
		}
	}
	if q.dir.inputTokens >= 0 {
		tokens = q.dir.inputTokens
	}
	dims := num(m, "dimensions")
	if dims <= 0 || dims > 4096 {
		dims = 1536
	}
	b64 := str(m, "encoding_format") == "base64"
	data := make([]any, len(inputs))
	for i := range inputs {
		vec := make([]float32, dims)
		var norm float64
		for j := range vec {
			vec[j] = float32(q.rng.NormFloat64())
			norm += float64(vec[j]) * float64(vec[j])
		}
		scale := float32(1 / math.Sqrt(max(norm, 1e-12)))
		var emb any
		if b64 {
			buf := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f*scale))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		} else {
			fs := make([]float64, len(vec))
			for j, f := range vec {
				fs[j] = float64(f * scale)
			}
			emb = fs
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	usage := Usage{InputTokens: tokens, TotalTokens: tokens}
	rid := requestID(q)
	body := mustJSON(map[string]any{"object": "list", "data": data, "model": q.model,
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens}})
	rp := jsonReply(200, baseHeaders(q, rid), body, &usage)
	rp.requestID = rid
	return rp, nil
}

// openAIModels are listed by GET /v1/models.
var openAIModels = []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "gpt-5", "text-embedding-3-small"}

func handleOpenAIModels(q *request) (*reply, *apiError) {
	data := make([]any, len(openAIModels))
	for i, id := range openAIModels {
		data[i] = map[string]any{"id": id, "object": "model", "created": 1715367049, "owned_by": "system"}
	}
	rid := requestID(q)
	rp := jsonReply(200, baseHeaders(q, rid), mustJSON(map[string]any{"object": "list", "data": data}), nil)
	rp.requestID = rid
	return rp, nil
}
