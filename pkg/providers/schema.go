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
// families, except layoutFuncEmpty: a function without parameters renders
// as "type name = () => any;", without the parameter object's braces; its
// cost is measured on the training split of bench/estimation's real
// corpus (2026-12-07; 2 tokens, where the cookbook's 7 overcounted
// agents that declare many parameterless tools by 4-5 tokens each).
const (
	layoutFuncInit  = 7  // per function with parameters
	layoutFuncEmpty = 2  // per function without parameters
	layoutPropInit  = 3  // per non-empty property list
	layoutPropKey   = 3  // per property
	layoutEnumInit  = -3 // per enum
	layoutEnumItem  = 3  // per enum value
	layoutFuncEnd   = 12 // once, after the function list
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
		case "type":
			if s.at(v) == '"' {
				return schemaType(s, info, v)
			}
			if s.at(v) == '[' { // "type": ["string", "null"]
				return s.array(v, func(e int) int { return schemaType(s, info, e) })
			}
			return s.skip(v)
		case "description", "format", "const":
			if s.at(v) == '"' {
				return s.text(v, &info.text)
			}
			return s.skip(v)
		case "properties", "$defs", "definitions", "patternProperties":
			if s.at(v) != '{' {
				return s.skip(v)
			}
			first := true
			return s.object(v, func(name []byte, pv int) int {
				if first {
					// An empty list renders as "()": nothing to open.
					info.OverheadTokens += layoutPropInit
					first = false
				}
				info.OverheadTokens += layoutPropKey
				info.text.add(s.keyText(name))
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
					return s.text(e, &info.text)
				}
				n, end := s.rawRunes(e)
				info.text.add(n)
				return end
			})
		case "$ref":
			return s.text(v, &info.text)
		}
		return s.skip(v)
	})
}

// schemaType adds a schema's "type" value at i as text, except the
// structural types: the layout renders an object as its braces and an array
// as a "[]" suffix, never the words "object" or "array" (in either case:
// Gemini's Schema spells its types in upper case).
func schemaType(s *jscan, info *RequestInfo, i int) int {
	raw, end := s.optStr(i)
	switch string(raw) {
	case "object", "array", "OBJECT", "ARRAY": // Gemini's Schema types are upper case
		return end
	}
	info.text.add(s.keyText(raw))
	return end
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
