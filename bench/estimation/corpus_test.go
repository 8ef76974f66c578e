package estimation

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Content types of a request: what most of its text is.
const (
	kindProse = "prose"        // English prose from testdata/prose.txt
	kindCode  = "code"         // Go source of this repository, in code reviews
	kindDocs  = "docs"         // the repository's Markdown, as RAG context
	kindJSON  = "json"         // generated JSON records
	kindMulti = "multilingual" // one non-English language (or emoji) per chat
	kindMixed = "mixed"        // every message of a different kind
	kindTools = "tools"        // tool definitions plus a short chat
)

// Language mixes. Non-English languages use their codes from
// testdata/multilingual.txt.
const (
	langEnglish = "en"
	langCode    = "en+code" // code and JSON with English around them
	langMixed   = "mixed"
)

// languages are the non-English keys of testdata/multilingual.txt.
var languages = []string{"de", "fr", "es", "zh", "ja", "ru", "ar", "emoji"}

// corpusPlan is how many requests of each kind the corpus holds; kindMulti is
// per language.
var corpusPlan = []struct {
	kind string
	n    int
}{
	{kindProse, 40},
	{kindCode, 36},
	{kindDocs, 30},
	{kindJSON, 30},
	{kindMulti, 12},
	{kindMixed, 24},
	{kindTools, 30},
}

// Models named in the bodies. The corrector learns one factor per provider
// and model, so every request of a provider names the same model.
const (
	openAIModel    = "gpt-4o"
	anthropicModel = "claude-sonnet-4-5"
	geminiModel    = "gemini-2.5-flash"
)

// message is one chat turn. A single part is sent as a plain string; more
// parts are sent as text parts (content arrays).
type message struct {
	Role  string // "user" or "assistant"
	Name  string // optional participant name (OpenAI only)
	Parts []string
}

// conversation is one request, independent of the vendor's wire format.
type conversation struct {
	ID        int
	Kind      string
	Lang      string
	System    string
	Messages  []message
	Tools     []toolDef
	MaxTokens int64
	// Train marks the half of the corpus the corrector learns from.
	Train bool
}

// toolDef is an OpenAI function tool as sent, with its parsed fields.
type toolDef struct {
	Raw      json.RawMessage `json:"-"`
	Type     string          `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// sources is the text the corpus is drawn from.
type sources struct {
	prose, questions, systems []string
	multi                     map[string][]string
	docs                      []string   // Markdown paragraphs of the repo
	code                      [][]string // lines of the repo's Go files
	tools                     []toolDef
}

// repoRoot finds the module root (the directory holding go.mod) above the
// working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// loadSources reads testdata and the repository's own Go and Markdown files
// under root. This package's directory is skipped so that editing the
// benchmark does not change its corpus.
func loadSources(root string) (*sources, error) {
	s := &sources{multi: map[string][]string{}}
	var err error
	if s.prose, err = readBlocks("testdata/prose.txt"); err != nil {
		return nil, err
	}
	if s.questions, err = readLines("testdata/questions.txt"); err != nil {
		return nil, err
	}
	if s.systems, err = readLines("testdata/system.txt"); err != nil {
		return nil, err
	}
	lines, err := readLines("testdata/multilingual.txt")
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		lang, text, ok := strings.Cut(l, "\t")
		if !ok {
			return nil, fmt.Errorf("multilingual.txt: line without a tab: %q", l)
		}
		s.multi[lang] = append(s.multi[lang], text)
	}
	for _, lang := range languages {
		if len(s.multi[lang]) == 0 {
			return nil, fmt.Errorf("multilingual.txt: no lines for %q", lang)
		}
	}
	raw, err := os.ReadFile("testdata/tools.json")
	if err != nil {
		return nil, fmt.Errorf("read tools: %w", err)
	}
	if s.tools, err = parseTools(raw); err != nil {
		return nil, fmt.Errorf("tools.json: %w", err)
	}

	self, err := filepath.Abs(".")
	if err != nil {
		return nil, fmt.Errorf("package directory: %w", err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "vendor", "node_modules", "bin":
				return fs.SkipDir
			}
			if path == self {
				return fs.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if utf8.Valid(b) && len(b) > 0 {
				s.code = append(s.code, strings.Split(string(b), "\n"))
			}
		case ".md":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, p := range strings.Split(string(b), "\n\n") {
				if p = strings.TrimSpace(p); p != "" && utf8.ValidString(p) {
					s.docs = append(s.docs, p)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	if len(s.code) == 0 || len(s.docs) == 0 {
		return nil, fmt.Errorf("no Go or Markdown files under %s", root)
	}
	return s, nil
}

// parseTools reads a JSON array of OpenAI function tools, keeping each
// tool's JSON compacted.
func parseTools(raw []byte) ([]toolDef, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	tools := make([]toolDef, 0, len(items))
	for i, it := range items {
		var t toolDef
		if err := json.Unmarshal(it, &t); err != nil {
			return nil, fmt.Errorf("tool %d: %w", i, err)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, it); err != nil {
			return nil, fmt.Errorf("tool %d: %w", i, err)
		}
		t.Raw = b.Bytes()
		tools = append(tools, t)
	}
	return tools, nil
}

// readLines returns the non-empty lines of a file that do not start with #.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return out, nil
}

// readBlocks returns the blank-line separated paragraphs of a file.
func readBlocks(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []string
	for _, p := range strings.Split(string(b), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return out, nil
}

// buildCorpus generates the corpus: the same sources always give the same
// conversations. Each kind draws from its own random stream, so a change in
// the repository's files moves only the kinds that read them. The result is
// shuffled, and within each kind and language every other request is in the
// training half.
func buildCorpus(s *sources) []*conversation {
	var out []*conversation
	for i, p := range corpusPlan {
		g := &gen{s: s, r: rand.New(rand.NewPCG(uint64(i+1), 0x9e3779b97f4a7c15))}
		for range p.n {
			switch p.kind {
			case kindMulti:
				for _, lang := range languages {
					out = append(out, g.multilingual(lang))
				}
			default:
				out = append(out, g.build(p.kind))
			}
		}
	}
	rand.New(rand.NewPCG(42, 7)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	seen := map[[2]string]int{}
	for i, c := range out {
		c.ID = i
		k := [2]string{c.Kind, c.Lang}
		c.Train = seen[k]%2 == 0
		seen[k]++
	}
	return out
}

// gen draws conversations from sources with one random stream.
type gen struct {
	s *sources
	r *rand.Rand
}

func (g *gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

// turns returns a number of user turns in [1, maxTurns], skewed to short
// chats as real traffic is.
func (g *gen) turns(maxTurns int) int { return 1 + g.r.IntN(1+g.r.IntN(maxTurns)) }

func (g *gen) maxTokens() int64 { return int64(256 * (1 + g.r.IntN(16))) }

// chat builds user and assistant turns ending with a user turn.
func (g *gen) chat(n int, user, assistant func() []string) []message {
	var ms []message
	for i := range n {
		if i > 0 {
			ms = append(ms, message{Role: "assistant", Parts: assistant()})
		}
		ms = append(ms, message{Role: "user", Parts: user()})
	}
	return ms
}

// join returns pieces as one part, or (one time in four) as separate text
// parts.
func (g *gen) join(sep string, pieces ...string) []string {
	if len(pieces) > 1 && g.r.IntN(4) == 0 {
		return pieces
	}
	return []string{strings.Join(pieces, sep)}
}

func (g *gen) build(kind string) *conversation {
	c := &conversation{Kind: kind, Lang: langEnglish, MaxTokens: g.maxTokens()}
	switch kind {
	case kindProse:
		if g.r.IntN(10) < 7 {
			c.System = g.pick(g.s.systems)
		}
		c.Messages = g.chat(g.turns(20), g.proseUser, g.proseAssistant)
	case kindCode:
		c.Lang = langCode
		c.System = g.s.systems[1]
		c.Messages = g.chat(g.turns(8), func() []string {
			return g.join("\n\n", g.pick(codeAsks), "```go\n"+g.codeSnippet()+"\n```")
		}, func() []string {
			return []string{g.pick(codeAnswers) + "\n\n```go\n" + g.codeSnippet() + "\n```\n\n" + g.pick(g.s.prose)}
		})
	case kindDocs:
		c.System = g.s.systems[4]
		c.Messages = g.chat(g.turns(4), func() []string {
			return g.join("\n\n", "Context:\n\n"+g.docsContext(2+g.r.IntN(9)), "Question: "+g.pick(g.s.questions))
		}, func() []string { return []string{g.pick(g.s.docs)} })
	case kindJSON:
		c.Lang = langCode
		c.System = g.s.systems[5]
		c.Messages = g.chat(g.turns(6), func() []string {
			return g.join("\n\n", g.pick(jsonAsks), g.jsonSnippet(1+g.r.IntN(12)))
		}, func() []string { return []string{g.jsonSnippet(1 + g.r.IntN(3))} })
	case kindMixed:
		c.Lang = langMixed
		c.System = g.pick(g.s.systems)
		c.Messages = g.chat(4+g.r.IntN(17), g.anything, g.anything)
	case kindTools:
		c.System = g.pick(g.s.systems)
		lang := langEnglish
		if g.r.IntN(10) < 4 {
			lang = g.pick(languages)
		}
		c.Lang = lang
		for _, i := range g.r.Perm(len(g.s.tools))[:1+g.r.IntN(6)] {
			c.Tools = append(c.Tools, g.s.tools[i])
		}
		if lang == langEnglish {
			c.Messages = g.chat(g.turns(5), g.proseUser, g.proseAssistant)
		} else {
			c.Messages = g.chat(g.turns(5), g.lines(lang), g.lines(lang))
		}
	default:
		panic("unknown kind " + kind) // corpusPlan and build disagree: a bug in this file
	}
	return c
}

func (g *gen) multilingual(lang string) *conversation {
	c := &conversation{Kind: kindMulti, Lang: lang, MaxTokens: g.maxTokens()}
	switch g.r.IntN(10) {
	case 0, 1:
	case 2, 3, 4:
		c.System = g.pick(g.s.systems)
	default:
		c.System = g.s.systems[10]
	}
	c.Messages = g.chat(g.turns(20), g.lines(lang), g.lines(lang))
	return c
}

// lines returns a message maker of 1 to 4 lines of lang.
func (g *gen) lines(lang string) func() []string {
	return func() []string {
		n := 1 + g.r.IntN(4)
		ls := make([]string, n)
		for i := range ls {
			ls[i] = g.pick(g.s.multi[lang])
		}
		sep := " "
		if lang == "emoji" || g.r.IntN(3) == 0 {
			sep = "\n"
		}
		return g.join(sep, ls...)
	}
}

func (g *gen) proseUser() []string {
	if g.r.IntN(2) == 0 {
		return []string{g.pick(g.s.questions)}
	}
	return g.join("\n\n", g.pick(g.s.prose), g.pick(g.s.questions))
}

func (g *gen) proseAssistant() []string {
	if g.r.IntN(3) == 0 {
		return []string{g.pick(g.s.prose) + "\n\n" + g.pick(g.s.prose)}
	}
	return []string{g.pick(g.s.prose)}
}

// anything returns one message of a random kind, for mixed chats.
func (g *gen) anything() []string {
	switch g.r.IntN(6) {
	case 0:
		return g.proseAssistant()
	case 1:
		return []string{g.pick(g.s.questions)}
	case 2:
		return []string{"```go\n" + g.codeSnippet() + "\n```"}
	case 3:
		return []string{g.jsonSnippet(1 + g.r.IntN(4))}
	case 4:
		return g.lines(g.pick(languages))()
	default:
		return []string{g.docsContext(1 + g.r.IntN(3))}
	}
}

// codeSnippet returns 8 to 127 consecutive lines of one of the repository's
// Go files, at most about 6 KB.
func (g *gen) codeSnippet() string {
	for {
		lines := g.s.code[g.r.IntN(len(g.s.code))]
		start := g.r.IntN(len(lines))
		end := min(start+8+g.r.IntN(120), len(lines))
		var b strings.Builder
		for _, l := range lines[start:end] {
			if b.Len()+len(l) > 6000 {
				break
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
		if s := strings.TrimSpace(b.String()); s != "" {
			return s
		}
	}
}

// docsContext returns n consecutive Markdown paragraphs of the repository.
func (g *gen) docsContext(n int) string {
	start := g.r.IntN(len(g.s.docs))
	end := min(start+n, len(g.s.docs))
	return strings.Join(g.s.docs[start:end], "\n\n")
}

// Record shapes for generated JSON.
type (
	jsonCustomer struct {
		Name    string `json:"name"`
		Email   string `json:"email"`
		Country string `json:"country"`
	}
	jsonLine struct {
		SKU        string  `json:"sku"`
		Quantity   int     `json:"quantity"`
		UnitPrice  float64 `json:"unit_price"`
		Discounted bool    `json:"discounted"`
	}
	jsonOrder struct {
		ID        string       `json:"id"`
		CreatedAt string       `json:"created_at"`
		Status    string       `json:"status"`
		Customer  jsonCustomer `json:"customer"`
		Lines     []jsonLine   `json:"lines"`
		Total     float64      `json:"total"`
		Notes     *string      `json:"notes"`
	}
	jsonEvent struct {
		TS        string            `json:"ts"`
		Level     string            `json:"level"`
		Msg       string            `json:"msg"`
		Service   string            `json:"service"`
		LatencyMS int               `json:"latency_ms"`
		Status    int               `json:"status"`
		TraceID   string            `json:"trace_id"`
		Attrs     map[string]string `json:"attrs,omitempty"`
	}
)

var (
	names     = []string{"Ana Souza", "Jonas Becker", "Mei Lin", "Omar Haddad", "Chloé Martin", "Kenji Sato", "Olga Ivanova", "Liam O'Connor", "Priya Nair", "Lucía Fernández", "Fatima Zahra", "Noah Smith"}
	countries = []string{"BR", "DE", "CN", "JO", "FR", "JP", "RU", "IE", "IN", "ES", "MA", "US"}
	statuses  = []string{"pending", "paid", "shipped", "delivered", "cancelled", "refunded"}
	levels    = []string{"debug", "info", "info", "info", "warn", "error"}
	services  = []string{"checkout", "gateway", "search", "billing", "auth", "inventory"}
	logMsgs   = []string{"request completed", "upstream timeout", "cache miss", "rate limit exceeded", "retrying request", "user signed in", "payment authorised", "invalid signature"}
	noteTexts = []string{"Leave at the back door.", "Gift wrap, no invoice in the box.", "Customer called twice about delivery time.", "Fragile: glassware."}

	codeAsks = []string{
		"Can you review this Go code? I am mostly worried about error handling.",
		"Why does this fail the race detector sometimes?",
		"Please explain what this does, line by line.",
		"Is there a simpler way to write this?",
		"Write table tests for the following function.",
		"Find the bug. The tests pass but production logs show wrong counts.",
	}
	codeAnswers = []string{
		"Here is a version with the errors wrapped and the early returns made explicit:",
		"The problem is the shared map; this version guards it with a mutex:",
		"A shorter equivalent, with the same behaviour:",
		"These tests cover the empty, normal and invalid inputs:",
	}
	jsonAsks = []string{
		"Extract the customer names and order totals from this JSON as a list.",
		"Which of these records are errors? Return their trace ids as a JSON array.",
		"Convert this to CSV with a header row.",
		"Validate this payload against the schema we discussed and list the problems.",
		"Summarise these events per service: count and mean latency, as JSON.",
	}
)

// jsonSnippet returns n generated records of one shape, indented or
// compact.
func (g *gen) jsonSnippet(n int) string {
	var v any
	if g.r.IntN(2) == 0 {
		orders := make([]jsonOrder, n)
		for i := range orders {
			c := g.r.IntN(len(names))
			o := jsonOrder{
				ID:        fmt.Sprintf("ord_%016x", g.r.Uint64()),
				CreatedAt: fmt.Sprintf("2025-%02d-%02dT%02d:%02d:%02dZ", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60)),
				Status:    g.pick(statuses),
				Customer: jsonCustomer{
					Name:    names[c],
					Email:   strings.ToLower(strings.NewReplacer(" ", ".", "'", "").Replace(names[c])) + "@example.com",
					Country: countries[c],
				},
			}
			for range 1 + g.r.IntN(4) {
				l := jsonLine{SKU: fmt.Sprintf("SKU-%05d", g.r.IntN(100000)), Quantity: 1 + g.r.IntN(5), UnitPrice: float64(g.r.IntN(20000)) / 100, Discounted: g.r.IntN(4) == 0}
				o.Lines = append(o.Lines, l)
				o.Total += float64(l.Quantity) * l.UnitPrice
			}
			o.Total = float64(int(o.Total*100)) / 100
			if g.r.IntN(3) == 0 {
				note := g.pick(noteTexts)
				o.Notes = &note
			}
			orders[i] = o
		}
		v = orders
	} else {
		events := make([]jsonEvent, n)
		for i := range events {
			e := jsonEvent{
				TS:        fmt.Sprintf("2025-06-%02dT%02d:%02d:%02d.%03dZ", 1+g.r.IntN(30), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(1000)),
				Level:     g.pick(levels),
				Msg:       g.pick(logMsgs),
				Service:   g.pick(services),
				LatencyMS: g.r.IntN(3000),
				Status:    []int{200, 200, 200, 201, 204, 400, 404, 429, 500, 503}[g.r.IntN(10)],
				TraceID:   fmt.Sprintf("%016x%016x", g.r.Uint64(), g.r.Uint64()),
			}
			if g.r.IntN(2) == 0 {
				e.Attrs = map[string]string{"region": []string{"eu-west-1", "us-east-1", "ap-northeast-1"}[g.r.IntN(3)], "user": fmt.Sprintf("u%d", g.r.IntN(10000))}
			}
			events[i] = e
		}
		v = events
	}
	var b []byte
	if g.r.IntN(2) == 0 {
		b, _ = json.MarshalIndent(v, "", "  ") // plain structs: cannot fail
	} else {
		b, _ = json.Marshal(v)
	}
	return string(b)
}

// marshal encodes v as JSON without HTML escaping (as SDKs send text) and
// without a trailing newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// content renders parts as a string or, for several parts, as text parts
// shaped by part.
func content(parts []string, part func(string) any) any {
	if len(parts) == 1 {
		return parts[0]
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = part(p)
	}
	return out
}

type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func newTextPart(s string) any { return textPart{Type: "text", Text: s} }

// openAIBody renders c as a Chat Completions request.
func openAIBody(c *conversation) ([]byte, error) {
	type msg struct {
		Role    string `json:"role"`
		Name    string `json:"name,omitempty"`
		Content any    `json:"content"`
	}
	req := struct {
		Model     string            `json:"model"`
		Messages  []msg             `json:"messages"`
		Tools     []json.RawMessage `json:"tools,omitempty"`
		MaxTokens int64             `json:"max_completion_tokens,omitempty"`
	}{Model: openAIModel, MaxTokens: c.MaxTokens}
	if c.System != "" {
		req.Messages = append(req.Messages, msg{Role: "system", Content: c.System})
	}
	for _, m := range c.Messages {
		req.Messages = append(req.Messages, msg{Role: m.Role, Name: m.Name, Content: content(m.Parts, newTextPart)})
	}
	for _, t := range c.Tools {
		req.Tools = append(req.Tools, t.Raw)
	}
	return marshal(req)
}

// anthropicBody renders c as a Messages API request.
func anthropicBody(c *conversation) ([]byte, error) {
	type msg struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	}
	type tool struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	req := struct {
		Model     string `json:"model"`
		MaxTokens int64  `json:"max_tokens"`
		System    string `json:"system,omitempty"`
		Messages  []msg  `json:"messages"`
		Tools     []tool `json:"tools,omitempty"`
	}{Model: anthropicModel, MaxTokens: c.MaxTokens, System: c.System}
	for _, m := range c.Messages {
		req.Messages = append(req.Messages, msg{Role: m.Role, Content: content(m.Parts, newTextPart)})
	}
	for _, t := range c.Tools {
		req.Tools = append(req.Tools, tool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: t.Function.Parameters})
	}
	return marshal(req)
}

// geminiBody renders c as a generateContent request.
func geminiBody(c *conversation) ([]byte, error) {
	type part struct {
		Text string `json:"text"`
	}
	type content struct {
		Role  string `json:"role,omitempty"`
		Parts []part `json:"parts"`
	}
	type decl struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	}
	type tool struct {
		FunctionDeclarations []decl `json:"functionDeclarations"`
	}
	type genConfig struct {
		MaxOutputTokens int64 `json:"maxOutputTokens"`
	}
	req := struct {
		SystemInstruction *content   `json:"systemInstruction,omitempty"`
		Contents          []content  `json:"contents"`
		Tools             []tool     `json:"tools,omitempty"`
		GenerationConfig  *genConfig `json:"generationConfig,omitempty"`
	}{GenerationConfig: &genConfig{MaxOutputTokens: c.MaxTokens}}
	if c.System != "" {
		req.SystemInstruction = &content{Parts: []part{{Text: c.System}}}
	}
	for _, m := range c.Messages {
		role := "user"
		if m.Role == "assistant" {
			role = "model"
		}
		ct := content{Role: role}
		for _, p := range m.Parts {
			ct.Parts = append(ct.Parts, part{Text: p})
		}
		req.Contents = append(req.Contents, ct)
	}
	if len(c.Tools) > 0 {
		var t tool
		for _, d := range c.Tools {
			t.FunctionDeclarations = append(t.FunctionDeclarations, decl{Name: d.Function.Name, Description: d.Function.Description, Parameters: d.Function.Parameters})
		}
		req.Tools = []tool{t}
	}
	return marshal(req)
}

// vendor is one provider's rendering of the corpus.
type vendor struct {
	name string // key in providers.Default()
	path string // vendor path after the routing prefix
	body func(*conversation) ([]byte, error)
}

var vendors = []vendor{
	{"openai", "/v1/chat/completions", openAIBody},
	{"anthropic", "/v1/messages", anthropicBody},
	{"gemini", "/v1beta/models/" + geminiModel + ":generateContent", geminiBody},
}

// textRunes returns the code points of every text of c: the system prompt
// and message parts, not the tools.
func textRunes(c *conversation) int64 {
	n := int64(utf8.RuneCountInString(c.System))
	for _, m := range c.Messages {
		for _, p := range m.Parts {
			n += int64(utf8.RuneCountInString(p))
		}
	}
	return n
}

// corpusKinds returns the kinds in plan order, for tables.
func corpusKinds() []string {
	out := make([]string, 0, len(corpusPlan))
	for _, p := range corpusPlan {
		out = append(out, p.kind)
	}
	return out
}

// corpusLangs returns the language mixes in table order.
func corpusLangs() []string {
	return slices.Concat([]string{langEnglish, langCode}, languages, []string{langMixed})
}
