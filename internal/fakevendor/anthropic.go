package fakevendor

// anthropicUsage renders u as a Messages API usage object. output
// overrides u.OutputTokens (message_start reports a partial count).
func anthropicUsage(u Usage, output int64, full bool) map[string]any {
	out := map[string]any{
		"input_tokens":                u.InputTokens,
		"cache_creation_input_tokens": u.CacheWriteTokens,
		"cache_read_input_tokens":     u.CacheReadTokens,
		"output_tokens":               output,
	}
	if full {
		out["service_tier"] = "standard"
		out["cache_creation"] = map[string]any{"ephemeral_5m_input_tokens": u.CacheWriteTokens, "ephemeral_1h_input_tokens": 0}
	}
	if u.ReasoningTokens > 0 {
		out["output_tokens_details"] = map[string]any{"thinking_tokens": u.ReasoningTokens}
	}
	return out
}

// anthropicPrompt validates a Messages request body and returns it with
// its prompt text.
func anthropicPrompt(q *request, needMaxTokens bool) (map[string]any, string, *apiError) {
	m, ok := decodeObject(q.body)
	if !ok {
		return nil, "", badRequest("Invalid JSON in request body")
	}
	q.model = str(m, "model")
	if q.model == "" {
		return nil, "", badRequest("model: Field required")
	}
	msgs := list(m, "messages")
	if len(msgs) == 0 {
		return nil, "", badRequest("messages: Field required")
	}
	if needMaxTokens && num(m, "max_tokens") <= 0 {
		return nil, "", badRequest("max_tokens: Field required")
	}
	var tc textCollector
	tc.content(m["system"])
	for _, raw := range msgs {
		if msg, ok := raw.(map[string]any); ok {
			tc.content(msg["content"])
		}
	}
	return m, tc.String(), nil
}

// handleMessages serves POST /v1/messages.
func handleMessages(q *request) (*reply, *apiError) {
	m, prompt, apiErr := anthropicPrompt(q, true)
	if apiErr != nil {
		return nil, apiErr
	}
	p := planUsage(styleAnthropic, prompt, num(m, "max_tokens"), q.dir, q.opts.DefaultOutputTokens)
	usage := p.usage
	stop := "end_turn"
	if p.truncated {
		stop = "max_tokens"
	}
	rid := requestID(q)
	h := baseHeaders(q, rid)
	msgID := "msg_01" + q.randString(base58, 22)
	message := func(content []any, stopReason any, u map[string]any) map[string]any {
		return map[string]any{"id": msgID, "type": "message", "role": "assistant", "model": q.model,
			"content": content, "stop_reason": stopReason, "stop_sequence": nil, "usage": u}
	}

	stream, _ := m["stream"].(bool)
	if !stream {
		body := mustJSON(message([]any{map[string]any{"type": "text", "text": text(p.words)}}, stop, anthropicUsage(usage, usage.OutputTokens, true)))
		rp := jsonReply(200, h, body, &usage)
		rp.requestID = rid
		return rp, nil
	}
	var segs []segment
	emit := func(typ string, fields map[string]any, u *Usage) {
		fields["type"] = typ
		segs = append(segs, segment{data: sseEvent(typ, mustJSON(fields)), usage: u})
	}
	start := usage
	start.OutputTokens = min(1, usage.OutputTokens)
	start.ReasoningTokens = 0
	emit("message_start", map[string]any{"message": message([]any{}, nil, anthropicUsage(start, start.OutputTokens, true))}, &start)
	emit("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}}, nil)
	emit("ping", map[string]any{}, nil)
	for _, d := range deltas(p.words) {
		emit("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": d}}, nil)
	}
	emit("content_block_stop", map[string]any{"index": 0}, nil)
	emit("message_delta", map[string]any{
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": anthropicUsage(usage, usage.OutputTokens, false),
	}, &usage)
	emit("message_stop", map[string]any{}, nil)
	return &reply{status: 200, header: sseHeaders(h, "text/event-stream; charset=utf-8"), segments: segs,
		stream: true, usage: &usage, requestID: rid}, nil
}

// handleCountTokens serves POST /v1/messages/count_tokens.
func handleCountTokens(q *request) (*reply, *apiError) {
	_, prompt, apiErr := anthropicPrompt(q, false)
	if apiErr != nil {
		return nil, apiErr
	}
	n := estimateTokens(prompt)
	if q.dir.inputTokens >= 0 {
		n = q.dir.inputTokens
	}
	rid := requestID(q)
	rp := jsonReply(200, baseHeaders(q, rid), mustJSON(map[string]any{"input_tokens": n}), nil)
	rp.requestID = rid
	return rp, nil
}

// anthropicModels are listed by GET /v1/models.
var anthropicModels = [][2]string{
	{"claude-opus-4-1-20250805", "Claude Opus 4.1"},
	{"claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"},
	{"claude-haiku-4-5-20251001", "Claude Haiku 4.5"},
}

func handleAnthropicModels(q *request) (*reply, *apiError) {
	data := make([]any, len(anthropicModels))
	for i, md := range anthropicModels {
		data[i] = map[string]any{"type": "model", "id": md[0], "display_name": md[1], "created_at": "2025-08-05T00:00:00Z"}
	}
	body := mustJSON(map[string]any{"data": data, "has_more": false,
		"first_id": anthropicModels[0][0], "last_id": anthropicModels[len(anthropicModels)-1][0]})
	rid := requestID(q)
	rp := jsonReply(200, baseHeaders(q, rid), body, nil)
	rp.requestID = rid
	return rp, nil
}
