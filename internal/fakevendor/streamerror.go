package fakevendor

import "net/http"

// streamErrorStatus is the status whose canned error a mid-stream error
// event carries, per vendor: OpenAI 500 server_error, Anthropic 529
// overloaded_error, Gemini 503 UNAVAILABLE.
var streamErrorStatus = map[Vendor]int{
	VendorOpenAI:    http.StatusInternalServerError,
	VendorAnthropic: 529,
	VendorGemini:    http.StatusServiceUnavailable,
}

// cutStream ends the stream rp after n segments (at most all but the last)
// with the vendor's in-stream error event, as for x-fake-stream-error-after.
// The reply's final usage becomes the last usage still sent.
func cutStream(q *request, ep endpoint, rp *reply, n int) {
	n = min(n, len(rp.segments)-1)
	n = max(n, 0)
	e := &apiError{status: streamErrorStatus[q.vendor], variant: q.dir.errorType}
	var ev []byte
	switch {
	case ep.name == "messages":
		ev = sseEvent("error", errorBody(dialectAnthropic, e, q.model, requestID(q)))
	case ep.name == "responses":
		inner := openAIErrorValue(e, q.model).(map[string]any)["error"].(map[string]any)
		ev = sseEvent("error", mustJSON(map[string]any{"type": "error", "code": inner["code"],
			"message": inner["message"], "param": nil, "sequence_number": n}))
	case ep.name == "streamGenerateContent" && ep.dialect == dialectGeminiList:
		ev = []byte(",\r\n")
		if n == 0 {
			ev = []byte("[")
		}
		ev = append(append(ev, marshalIndent(geminiErrorValue(e, q.model))...), "\n]"...)
	case ep.name == "streamGenerateContent":
		ev = append(append([]byte("data: "), mustJSON(geminiErrorValue(e, q.model))...), "\r\n\r\n"...)
	default: // chat completions of every vendor: a data line with an error object
		d := ep.dialect
		if d == dialectGeminiList {
			d = dialectGemini
		}
		ev = sseEvent("", errorBody(d, e, q.model, ""))
	}
	rp.segments = append(rp.segments[:n:n], segment{data: ev})
	rp.usage = nil
	for _, sg := range rp.segments {
		if sg.usage != nil {
			u := *sg.usage
			rp.usage = &u
		}
	}
}
