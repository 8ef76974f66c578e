// Command extract builds the real-traffic estimation corpus
// (bench/estimation/testdata/real) from VCR-style cassettes that SDK and
// framework test suites recorded against the real vendor APIs.
//
// It reads a git repository in place (no work tree needed), takes every
// recorded interaction with api.openai.com (chat completions, Responses),
// api.anthropic.com (messages, count_tokens) and the Gemini API
// (generativelanguage.googleapis.com, aiplatform.googleapis.com:
// generateContent, streamGenerateContent, countTokens) that succeeded and
// carries the vendor's usage, and writes one JSON record per call (gzip-compressed JSONL, see Record):
//
//	go run ./bench/estimation/internal/extract -git DIR -repo owner/name \
//	    -licence MIT -out bench/estimation/testdata/real/name.jsonl.gz
//
// Only the request body, the vendor's usage block and a few facts about the
// response are kept; no third-party code is copied. Output is sorted by path
// and interaction, so a re-run on the same commit gives the same file.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Record is one recorded vendor call.
type Record struct {
	Source      string `json:"source"`
	Path        string `json:"path"`
	Commit      string `json:"commit"`
	Licence     string `json:"licence"`
	Interaction int    `json:"interaction"`
	// Vendor is "openai", "anthropic" or "gemini".
	Vendor string `json:"vendor"`
	// Host is the API host the call went to (aiplatform.googleapis.com for
	// Vertex AI, which takes Gemini request bodies).
	Host string `json:"host"`
	// Endpoint is the providers.Endpoint value of the call.
	Endpoint string `json:"endpoint"`
	// URLPath is the vendor path as the gateway sees it, without the
	// query ("/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent").
	URLPath  string `json:"url_path"`
	RawQuery string `json:"raw_query,omitempty"`
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	// Request is the request body as recorded (re-encoded as compact JSON
	// when the cassette stored it parsed).
	Request json.RawMessage `json:"request"`
	// ElidedBytes counts the bytes of base64 payloads (images, audio,
	// video, documents) cut to their first maxPayload bytes to keep the
	// corpus small; the cut keeps a valid base64 prefix, so file headers
	// (image dimensions) stay readable. 0 when nothing was cut.
	ElidedBytes int64 `json:"elided_bytes,omitempty"`
	// Usage is the vendor's usage block as stated: for streams the final
	// one (Anthropic: message_start's usage overlaid with message_delta's).
	Usage json.RawMessage `json:"usage"`
	// PromptTokens is the vendor's count of the request's input tokens:
	// OpenAI prompt_tokens / input_tokens, Anthropic input_tokens +
	// cache_creation_input_tokens + cache_read_input_tokens, Gemini
	// promptTokenCount (countTokens: totalTokens).
	PromptTokens int64 `json:"prompt_tokens"`
	// Response is the response body as recorded: a JSON document, a JSON
	// array (Gemini streams without alt=sse) or an event stream. Cassettes
	// that stored the body parsed give it re-encoded as compact JSON.
	// Base64 strings over maxPayload bytes are cut as in Request.
	Response string `json:"response"`
	// ServerTools is set when the response shows the vendor ran a
	// server-side tool (web search, code execution, ...), whose results the
	// vendor may have added to the counted input.
	ServerTools bool `json:"server_tools"`
}

type cassette struct {
	Interactions []struct {
		Request struct {
			Method     string          `json:"method"`
			URI        string          `json:"uri"`
			Body       json.RawMessage `json:"body"`
			ParsedBody json.RawMessage `json:"parsed_body"`
		} `json:"request"`
		Response struct {
			Status struct {
				Code int `json:"code"`
			} `json:"status"`
			Body       json.RawMessage `json:"body"`
			ParsedBody json.RawMessage `json:"parsed_body"`
		} `json:"response"`
	} `json:"interactions"`
}

func main() {
	gitDir := flag.String("git", "", "git directory of the source repository")
	repo := flag.String("repo", "", "owner/name of the source repository")
	licence := flag.String("licence", "", "SPDX licence of the source repository")
	under := flag.String("under", "", "only paths with this prefix")
	match := flag.String("match", "cassettes/", "only paths containing this")
	out := flag.String("out", "", "output gzip-compressed JSONL file")
	flag.Parse()
	if *gitDir == "" || *repo == "" || *licence == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*gitDir, *repo, *licence, *under, *match, *out); err != nil {
		slog.Error("extract", "err", err)
		os.Exit(1)
	}
}

func git(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return b, nil
}

func run(dir, repo, licence, under, match, out string) error {
	head, err := git(dir, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	commit := strings.TrimSpace(string(head))
	list, err := git(dir, "ls-tree", "-r", "--name-only", "HEAD")
	if err != nil {
		return err
	}
	var paths []string
	for _, p := range strings.Split(string(list), "\n") {
		if strings.HasPrefix(p, under) && strings.Contains(p, match) &&
			(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var recs []Record
	skipped := map[string]int{}
	for _, p := range paths {
		raw, err := git(dir, "show", commit+":"+p)
		if err != nil {
			skipped["unreadable"]++
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			skipped["yaml"]++
			continue
		}
		var c cassette
		if err := json.Unmarshal(js, &c); err != nil {
			skipped["shape"]++
			continue
		}
		for n, it := range c.Interactions {
			r, why := record(it.Request.URI, body(it.Request.Body, it.Request.ParsedBody),
				it.Response.Status.Code, body(it.Response.Body, it.Response.ParsedBody))
			if why != "" {
				skipped[why]++
				continue
			}
			r.Source, r.Path, r.Commit, r.Licence, r.Interaction = repo, p, commit, licence, n
			recs = append(recs, r)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	w := bufio.NewWriter(zw)
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("marshal: %w", err)
		}
		w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	slog.Info("extracted", "files", len(paths), "records", len(recs), "skipped", skipped)
	return nil
}

// body returns a recorded body as bytes: the parsed form re-encoded as JSON,
// a plain string, or vcrpy's {"string": ...}.
func body(raw, parsed json.RawMessage) []byte {
	if len(parsed) > 0 && string(parsed) != "null" {
		return parsed
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s)
	}
	var o struct {
		String *string `json:"string"`
	}
	if json.Unmarshal(raw, &o) == nil && o.String != nil {
		return []byte(*o.String)
	}
	return nil
}

// record classifies one interaction; why is non-empty when it is skipped.
func record(uri string, req []byte, status int, resp []byte) (r Record, why string) {
	u, err := url.Parse(uri)
	if err != nil {
		return r, "uri"
	}
	var vendor, ep string
	path := u.Path
	switch {
	case u.Host == "api.openai.com":
		vendor = "openai"
		switch strings.TrimSuffix(path, "/") {
		case "/v1/chat/completions":
			ep = "chat_completions"
		case "/v1/responses":
			ep = "responses"
		case "/v1/responses/input_tokens":
			ep = "count_tokens"
		}
	case u.Host == "api.anthropic.com":
		vendor = "anthropic"
		switch strings.TrimSuffix(path, "/") {
		case "/v1/messages":
			ep = "messages"
		case "/v1/messages/count_tokens":
			ep = "count_tokens"
		}
	case u.Host == "generativelanguage.googleapis.com" || strings.HasSuffix(u.Host, "aiplatform.googleapis.com"):
		vendor = "gemini"
		i := strings.LastIndex(path, "/models/")
		if i < 0 {
			return r, "gemini path"
		}
		// The gateway sees the Gemini API path; Vertex paths name the
		// same model and method under a project.
		path = "/v1beta" + path[i:]
		switch {
		case strings.HasSuffix(path, ":generateContent"):
			ep = "generate_content"
		case strings.HasSuffix(path, ":streamGenerateContent"):
			ep = "stream_generate_content"
		case strings.HasSuffix(path, ":countTokens"):
			ep = "count_tokens"
		}
	default:
		return r, "host"
	}
	if ep == "" {
		return r, "endpoint"
	}
	if status != 200 {
		return r, "status"
	}
	var reqObj map[string]any
	if err := json.Unmarshal(req, &reqObj); err != nil {
		return r, "request json"
	}
	body, elided, err := elide(req)
	if err != nil {
		return r, "request json"
	}
	r.Vendor, r.Host, r.Endpoint, r.URLPath, r.RawQuery = vendor, u.Host, ep, path, u.RawQuery
	r.Request, r.ElidedBytes = body, elided
	r.Model, _ = reqObj["model"].(string)
	if vendor == "gemini" {
		name := path[strings.LastIndex(path, "/models/")+len("/models/"):]
		r.Model = name[:strings.LastIndexByte(name, ':')]
	}
	s, _ := reqObj["stream"].(bool)
	r.Stream = s || ep == "stream_generate_content"

	events, err := responseEvents(resp)
	if err != nil || len(events) == 0 {
		return r, "response json"
	}
	usage, prompt, ok := vendorUsage(vendor, ep, events)
	if !ok {
		return r, "no usage"
	}
	r.Usage, r.PromptTokens = usage, prompt
	if t := bytes.TrimSpace(resp); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		if b, _, err := elide(t); err == nil {
			resp = b
		}
	}
	r.Response = string(resp)
	for _, e := range events {
		if ranServerTool(vendor, e) {
			r.ServerTools = true
		}
	}
	return r, ""
}

// responseEvents decodes a response body: one JSON document, a JSON array
// of documents (Gemini streams without alt=sse), or an event stream.
func responseEvents(b []byte) ([]map[string]any, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 {
		return nil, errors.New("empty")
	}
	switch t[0] {
	case '{':
		var m map[string]any
		if err := decode(t, &m); err != nil {
			return nil, err
		}
		return []map[string]any{m}, nil
	case '[':
		var a []map[string]any
		if err := decode(t, &a); err != nil {
			return nil, err
		}
		return a, nil
	}
	var out []map[string]any
	for _, line := range strings.Split(string(t), "\n") {
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "" || data == "[DONE]" {
			continue
		}
		var m map[string]any
		if decode([]byte(data), &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

func num(m map[string]any, k string) (int64, bool) {
	n, ok := m[k].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

func obj(m map[string]any, k string) map[string]any {
	o, _ := m[k].(map[string]any)
	return o
}

// vendorUsage finds the vendor's final usage block and its prompt count.
func vendorUsage(vendor, ep string, events []map[string]any) (json.RawMessage, int64, bool) {
	var usage map[string]any
	var prompt int64
	switch vendor {
	case "openai":
		for _, e := range events {
			if ep == "count_tokens" {
				if n, ok := num(e, "input_tokens"); ok {
					usage = e
					prompt = n
				}
				continue
			}
			u := obj(e, "usage")
			if u == nil {
				u = obj(obj(e, "response"), "usage")
			}
			if u == nil {
				continue
			}
			if n, ok := num(u, "prompt_tokens"); ok {
				usage, prompt = u, n
			} else if n, ok := num(u, "input_tokens"); ok {
				usage, prompt = u, n
			}
		}
	case "anthropic":
		merged := map[string]any{}
		for _, e := range events {
			if ep == "count_tokens" {
				if _, ok := num(e, "input_tokens"); ok {
					merged = e
				}
				continue
			}
			u := obj(e, "usage")
			if u == nil {
				u = obj(obj(e, "message"), "usage")
			}
			for k, v := range u {
				if v != nil {
					merged[k] = v
				}
			}
		}
		n, ok := num(merged, "input_tokens")
		if !ok {
			return nil, 0, false
		}
		cw, _ := num(merged, "cache_creation_input_tokens")
		cr, _ := num(merged, "cache_read_input_tokens")
		usage, prompt = merged, n+cw+cr
	case "gemini":
		for _, e := range events {
			if ep == "count_tokens" {
				if n, ok := num(e, "totalTokens"); ok {
					usage, prompt = e, n
				}
				continue
			}
			u := obj(e, "usageMetadata")
			if n, ok := num(u, "promptTokenCount"); ok {
				usage, prompt = u, n
			}
		}
	}
	if usage == nil || prompt <= 0 {
		return nil, 0, false
	}
	b, err := json.Marshal(usage)
	if err != nil {
		return nil, 0, false
	}
	return b, prompt, true
}

// clientRunCalls are Responses output items the client, not OpenAI, runs.
var clientRunCalls = map[string]bool{
	"function_call": true, "custom_tool_call": true, "computer_call": true,
	"local_shell_call": true, "shell_call": true, "apply_patch_call": true,
}

// ranServerTool reports whether a response document shows a server-side
// tool run: Anthropic server_tool_use / mcp_tool_use blocks and their
// *_tool_result blocks; OpenAI Responses *_call output items other than
// client-run calls, and mcp_list_tools; Gemini code execution, grounding
// and URL context, or a tool-use prompt count.
func ranServerTool(vendor string, v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if t, ok := x["type"].(string); ok {
			switch vendor {
			case "anthropic":
				if t == "server_tool_use" || t == "mcp_tool_use" ||
					(strings.HasSuffix(t, "_tool_result") && t != "tool_result") {
					return true
				}
			case "openai":
				if (strings.HasSuffix(t, "_call") && !clientRunCalls[t]) || t == "mcp_list_tools" {
					return true
				}
			}
		}
		if vendor == "gemini" {
			for _, k := range []string{"executableCode", "codeExecutionResult", "groundingMetadata", "urlContextMetadata"} {
				if _, ok := x[k]; ok {
					return true
				}
			}
			if n, ok := num(x, "toolUsePromptTokenCount"); ok && n > 0 {
				return true
			}
		}
		for _, e := range x {
			if ranServerTool(vendor, e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if ranServerTool(vendor, e) {
				return true
			}
		}
	}
	return false
}

// maxPayload is the longest base64 payload kept whole, in bytes.
const maxPayload = 16 << 10

// elide re-encodes a request body as compact JSON (member order kept, no
// HTML escaping) with every base64 string longer than maxPayload cut to a
// prefix of maxPayload bytes; it returns the bytes cut.
func elide(req []byte) ([]byte, int64, error) {
	var out bytes.Buffer
	var cut int64
	d := json.NewDecoder(bytes.NewReader(req))
	d.UseNumber()
	// Walk tokens so member order and numbers stay as recorded.
	var stack []byte // '{' or '['
	needComma := false
	afterKey := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("token: %w", err)
		}
		inObj := len(stack) > 0 && stack[len(stack)-1] == '{'
		switch t := tok.(type) {
		case json.Delim:
			if t == '}' || t == ']' {
				stack = stack[:len(stack)-1]
				out.WriteByte(byte(t))
				needComma, afterKey = true, false
				continue
			}
		}
		if !afterKey && needComma {
			out.WriteByte(',')
		}
		isKey := inObj && !afterKey
		switch t := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(t))
			stack = append(stack, byte(t))
			needComma, afterKey = false, false
			continue
		case string:
			if !isKey && len(t) > maxPayload && looksBase64(t) {
				cut += int64(len(t) - maxPayload)
				t = t[:maxPayload]
			}
			writeString(&out, t)
		case json.Number:
			out.WriteString(t.String())
		case bool:
			fmt.Fprint(&out, t)
		case nil:
			out.WriteString("null")
		}
		if isKey {
			out.WriteByte(':')
			afterKey, needComma = true, false
		} else {
			afterKey, needComma = false, true
		}
	}
	return out.Bytes(), cut, nil
}

func writeString(w *bytes.Buffer, s string) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)
	w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// looksBase64 reports whether s is base64 text, optionally behind a data:
// URL prefix, judged on its first and last kilobyte.
func looksBase64(s string) bool {
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		_, after, found := strings.Cut(rest[:min(len(rest), 200)], ";base64,")
		if !found {
			return false
		}
		s = after + s[len(s)-min(len(s), 1024):]
	}
	check := s[:1024] + s[len(s)-1024:]
	for i := 0; i < len(check); i++ {
		c := check[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
