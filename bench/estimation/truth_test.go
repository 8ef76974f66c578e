package estimation

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tiktoken-go/tokenizer"
)

// Chat framing of the gpt-4o family, as OpenAI documents it for counting
// prompt tokens: every message costs 3 tokens besides its values, a name 1
// more, and the reply is primed with 3.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPrimer      = 3
)

// Tool-definition overheads of the gpt-4o family. OpenAI renders tools into
// the prompt in a format it does not publish; these constants are the ones
// its cookbook fitted against the API for gpt-4o and gpt-4o-mini, so tool
// counts are approximate: exact for flat parameter schemas like those in
// testdata/tools.json, unknown for nested objects, arrays of objects and
// $refs (which this corpus does not use).
const (
	toolFuncInit = 7
	toolPropInit = 3
	toolPropKey  = 3
	toolEnumInit = -3
	toolEnumItem = 3
	toolFuncEnd  = 12
)

// o200k counts tokens with OpenAI's o200k_base encoding. The vocabulary is
// compiled into the tokenizer module: nothing is read from the network or
// the file system. Not safe for concurrent use.
type o200k struct {
	codec tokenizer.Codec
}

func newO200k() (*o200k, error) {
	c, err := tokenizer.Get(tokenizer.O200kBase)
	if err != nil {
		return nil, fmt.Errorf("o200k_base: %w", err)
	}
	return &o200k{codec: c}, nil
}

// count returns the tokens of s as plain text (special-token spellings such
// as "<|endoftext|>" count as ordinary text, as the API treats them).
func (o *o200k) count(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := o.codec.Count(s)
	if err != nil {
		return 0, fmt.Errorf("count: %w", err)
	}
	return n, nil
}

// chat returns the prompt tokens of a Chat Completions request for the
// gpt-4o family: per message the framing, the role, the optional name and
// the content (text parts are counted one by one, which may differ by a
// token at each part boundary from how the API joins them), then the reply
// primer and the tool definitions.
func (o *o200k) chat(system string, msgs []message, tools []toolDef) (int, error) {
	all := msgs
	if system != "" {
		all = append([]message{{Role: "system", Parts: []string{system}}}, msgs...)
	}
	total := replyPrimer
	for _, m := range all {
		total += tokensPerMessage
		for _, s := range append([]string{m.Role}, m.Parts...) {
			n, err := o.count(s)
			if err != nil {
				return 0, err
			}
			total += n
		}
		if m.Name != "" {
			n, err := o.count(m.Name)
			if err != nil {
				return 0, err
			}
			total += n + tokensPerName
		}
	}
	n, err := o.tools(tools)
	if err != nil {
		return 0, err
	}
	return total + n, nil
}

// toolSchema is the part of a parameters schema the tool count reads.
type toolSchema struct {
	Properties map[string]struct {
		Type        string   `json:"type"`
		Description string   `json:"description"`
		Enum        []string `json:"enum"`
	} `json:"properties"`
}

// tools returns the approximate tokens of tool definitions; see the
// toolFuncInit constants.
func (o *o200k) tools(tools []toolDef) (int, error) {
	if len(tools) == 0 {
		return 0, nil
	}
	total := 0
	add := func(s string) error {
		n, err := o.count(s)
		total += n
		return err
	}
	for _, t := range tools {
		f := t.Function
		total += toolFuncInit
		if err := add(f.Name + ":" + strings.TrimSuffix(f.Description, ".")); err != nil {
			return 0, err
		}
		var sc toolSchema
		if len(f.Parameters) > 0 {
			if err := json.Unmarshal(f.Parameters, &sc); err != nil {
				return 0, fmt.Errorf("tool %s parameters: %w", f.Name, err)
			}
		}
		if len(sc.Properties) == 0 {
			continue
		}
		total += toolPropInit
		for name, p := range sc.Properties {
			total += toolPropKey
			if p.Enum != nil {
				total += toolEnumInit
				for _, e := range p.Enum {
					total += toolEnumItem
					if err := add(e); err != nil {
						return 0, err
					}
				}
			}
			if err := add(name + ":" + p.Type + ":" + strings.TrimSuffix(p.Description, ".")); err != nil {
				return 0, err
			}
		}
	}
	return total + toolFuncEnd, nil
}
