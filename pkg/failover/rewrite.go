package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Request is what Rewrite needs of the client's request.
type Request struct {
	// From is the provider and model the client asked for.
	From Target
	// User is the user of a /meta/{user}/{provider}/ path, "" otherwise.
	User string
	// Path is the vendor path without the provider prefix and without the
	// query ("/v1/chat/completions", "/v1beta/models/gemini-2.5-pro:generateContent").
	Path string
	// RawQuery is the query without '?', "" when none.
	RawQuery string
	// Shape is ChatCompletions for OpenAI-shaped chat requests.
	Shape Shape
	// Body is the decoded request body (JSON).
	Body []byte
}

// Rewritten is the request as it must leave Envoy for a target.
type Rewritten struct {
	// Path is the new :path, provider prefix (and /meta/{user}/) and query
	// included, so that Envoy's routes send it to the target's cluster.
	Path string
	// Body is the new body; it is Request.Body itself when unchanged.
	Body []byte
	// BodyChanged tells whether Body differs from the request's.
	BodyChanged bool
}

// chatPath is each vendor's path for OpenAI's chat-completions shape.
var chatPath = map[string]string{
	"openai":    "/v1/chat/completions",
	"anthropic": "/v1/chat/completions",
	"gemini":    "/v1beta/openai/chat/completions",
}

// ErrCannotRewrite is returned (wrapped) when a request cannot be carried
// to a target: the caller then serves the call as if there were no chain.
var ErrCannotRewrite = errors.New("request cannot be rewritten for the target")

// Rewrite returns the request for target t. Same-vendor hops keep the path
// and query and swap the model (in the body, or in the path for Gemini's
// native API); cross-vendor hops (ChatCompletions shape only) go to the
// target's OpenAI-compatible endpoint with the model swapped and the query
// dropped (credentials travel in headers, see pkg/credentials). Nothing
// else in the body changes: fields a target's compatible endpoint ignores
// stay in the body and are ignored there.
func Rewrite(r Request, t Target) (Rewritten, error) {
	path, query := r.Path, r.RawQuery
	if t.Provider != r.From.Provider {
		p, ok := chatPath[t.Provider]
		if !ok || r.Shape != ChatCompletions {
			return Rewritten{}, fmt.Errorf("%w: %s has no equivalent of %s %s", ErrCannotRewrite, t, r.From.Provider, r.Path)
		}
		path, query = p, ""
	}
	out := Rewritten{Body: r.Body}
	if model, method, ok := geminiNativePath(t.Provider, path); ok {
		path = model + t.Model + method
	} else {
		body, err := setModel(r.Body, t.Model)
		if err != nil {
			return Rewritten{}, fmt.Errorf("%w: %w", ErrCannotRewrite, err)
		}
		out.Body, out.BodyChanged = body, true
	}
	var b strings.Builder
	if r.User != "" {
		b.WriteString("/meta/")
		b.WriteString(r.User)
	}
	b.WriteByte('/')
	b.WriteString(t.Provider)
	b.WriteString(path)
	if query != "" {
		b.WriteByte('?')
		b.WriteString(query)
	}
	out.Path = b.String()
	return out, nil
}

// geminiNativePath splits a Gemini native path
// "/v1beta/models/{model}:{method}" (or tunedModels/) into the part before
// the model ("/v1beta/models/") and the method suffix (":generateContent").
// ok is false for every other path, including the OpenAI-compatible ones.
func geminiNativePath(provider, path string) (prefix, method string, ok bool) {
	if provider != "gemini" {
		return "", "", false
	}
	for _, v := range []string{"/v1beta/", "/v1/", "/v1alpha/"} {
		rest, found := strings.CutPrefix(path, v)
		if !found {
			continue
		}
		if _, found = strings.CutPrefix(rest, "models/"); !found {
			if _, found = strings.CutPrefix(rest, "tunedModels/"); !found {
				return "", "", false
			}
		}
		i := strings.LastIndexByte(path, ':')
		if i < len(v) {
			return "", "", false
		}
		// A tuned model fails over to a base model: models/{target}.
		return v + "models/", path[i:], true
	}
	return "", "", false
}

// setModel returns body with every top-level "model" member set to model,
// leaving every other byte as it was. A body without one gets the member
// added first. It fails when body is not a JSON object or "model" is not
// a string.
func setModel(body []byte, model string) ([]byte, error) {
	quoted, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("body is not a JSON object")
	}
	type span struct{ from, to int64 }
	var spans []span
	depth := 1
	expectKey := true
	for depth > 0 {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, errors.New("body ends inside its object")
		}
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			expectKey = depth == 1
			continue
		}
		if depth != 1 || !expectKey {
			expectKey = depth == 1
			continue
		}
		// A top-level key; its value follows.
		expectKey = false
		if tok != "model" {
			continue
		}
		vstart := dec.InputOffset()
		v, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if _, ok := v.(string); !ok {
			return nil, errors.New(`body: "model" is not a string`)
		}
		// InputOffset after the key points past the key's closing quote;
		// the value starts after the ':' and any space.
		from := vstart
		for from < int64(len(body)) && body[from] != '"' {
			from++
		}
		spans = append(spans, span{from, dec.InputOffset()})
		expectKey = true
	}
	if len(spans) == 0 {
		i := bytes.IndexByte(body, '{') + 1
		out := make([]byte, 0, len(body)+len(quoted)+10)
		out = append(out, body[:i]...)
		out = append(out, `"model":`...)
		out = append(out, quoted...)
		if rest := bytes.TrimLeft(body[i:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i:]...), nil
	}
	out := make([]byte, 0, len(body)+len(quoted))
	last := int64(0)
	for _, s := range spans {
		out = append(out, body[last:s.from]...)
		out = append(out, quoted...)
		last = s.to
	}
	return append(out, body[last:]...), nil
}
