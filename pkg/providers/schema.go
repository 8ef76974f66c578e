package providers

// This file counts function definitions and JSON schemas the way OpenAI
// renders them into the prompt: not as the JSON sent, but as a compact
// TypeScript-like declaration ("namespace functions { // description
// type name = (_: { // property description
// key?: string, ... }) => any; }"). Only names, descriptions, types and
// enum values reach the model as text; the punctuation around them costs a
// fixed number of tokens per function, property and enum value. The
// constants are the ones OpenAI's cookbook ("How to count tokens with
// tiktoken", function calling section) gives for the gpt-4o and gpt-4
// families.
const (
	layoutFuncInit = 7  // per function
	layoutPropInit = 3  // per non-empty property list
	layoutPropKey  = 3  // per property
	layoutEnumInit = -3 // per enum
	layoutEnumItem = 3  // per enum value
	layoutFuncEnd  = 12 // once, after the function list
)

// schemaLayout walks a JSON Schema at i and adds the text the model sees to
// TextRunes (property names, types, descriptions, enum values, nested
// definitions) and the rendering's fixed tokens to OverheadTokens. Other
// keywords (required, additionalProperties, strict, title, $schema, ...)
// shape the rendering without adding text and count nothing.
func schemaLayout(s *jscan, info *RequestInfo, i int) int {
	if s.at(i) != '{' {
		// Booleans and other non-object schemas render as "any".
		return s.skip(i)
	}
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "description", "type", "format", "const":
			if s.at(v) == '"' {
				return s.text(v, &info.TextRunes)
			}
			if s.at(v) == '[' { // "type": ["string", "null"]
				return s.array(v, func(e int) int { return s.text(e, &info.TextRunes) })
			}
			return s.skip(v)
		case "properties", "$defs", "definitions", "patternProperties":
			if s.at(v) != '{' {
				return s.skip(v)
			}
			info.OverheadTokens += layoutPropInit
			return s.object(v, func(name []byte, pv int) int {
				info.OverheadTokens += layoutPropKey
				info.TextRunes += rawKeyRunes(name)
				return schemaLayout(s, info, pv)
			})
		case "items", "additionalProperties", "not", "if", "then", "else":
			return schemaLayout(s, info, v)
		case "anyOf", "oneOf", "allOf", "prefixItems":
			if s.at(v) != '[' {
				return s.skip(v)
			}
			return s.array(v, func(e int) int { return schemaLayout(s, info, e) })
		case "enum":
			if s.at(v) != '[' {
				return s.skip(v)
			}
			info.OverheadTokens += layoutEnumInit
			return s.array(v, func(e int) int {
				info.OverheadTokens += layoutEnumItem
				if s.at(e) == '"' {
					return s.text(e, &info.TextRunes)
				}
				n, end := s.rawRunes(e)
				info.TextRunes += n
				return end
			})
		case "$ref":
			return s.text(v, &info.TextRunes)
		}
		return s.skip(v)
	})
}

// rawKeyRunes counts the code points of a raw object key (escapes count
// one each, like the text they stand for).
func rawKeyRunes(raw []byte) int64 {
	var n int64
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				i += 5
			} else {
				i++
			}
			n++
		case c&0xC0 != 0x80:
			n++
		}
	}
	return n
}
