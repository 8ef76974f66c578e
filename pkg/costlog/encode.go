package costlog

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends the JSON object of r, with the same bytes
// encoding/json produces for wireRecord, without reflection. r must be
// sanitised (finite floats, timestamp years 0-9999).
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"timestamp":"`...)
	b = r.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"user":`...)
	b = appendString(b, r.User)
	b = append(b, `,"key_id":`...)
	b = appendString(b, r.KeyID)
	if r.Team != "" {
		b = append(b, `,"team":`...)
		b = appendString(b, r.Team)
	}
	if r.Owner != "" {
		b = append(b, `,"key_owner":`...)
		b = appendString(b, r.Owner)
	}
	b = append(b, `,"client_ip":`...)
	b = appendString(b, r.ClientIP)
	b = append(b, `,"provider":`...)
	b = appendString(b, r.Provider)
	b = append(b, `,"model":`...)
	b = appendString(b, r.Model)
	if r.RequestedProvider != "" {
		b = append(b, `,"requested_provider":`...)
		b = appendString(b, r.RequestedProvider)
	}
	if r.RequestedModel != "" {
		b = append(b, `,"requested_model":`...)
		b = appendString(b, r.RequestedModel)
	}
	b = append(b, `,"priced_model":`...)
	b = appendString(b, r.PricedModel)
	b = append(b, `,"endpoint":`...)
	b = appendString(b, r.Endpoint)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	b = append(b, `,"stream":`...)
	b = strconv.AppendBool(b, r.Stream)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"outcome":`...)
	b = appendString(b, r.Outcome)
	b = append(b, `,"input_tokens":`...)
	b = strconv.AppendInt(b, r.InputTokens, 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, r.OutputTokens, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, r.TotalTokens, 10)
	b = append(b, `,"cache_read_tokens":`...)
	b = strconv.AppendInt(b, r.CacheReadTokens, 10)
	b = append(b, `,"cache_write_tokens":`...)
	b = strconv.AppendInt(b, r.CacheWriteTokens, 10)
	b = append(b, `,"reasoning_tokens":`...)
	b = strconv.AppendInt(b, r.ReasoningTokens, 10)
	b = append(b, `,"input_cost_usd":`...)
	b = appendFloat(b, r.InputCostUSD)
	b = append(b, `,"cache_read_cost_usd":`...)
	b = appendFloat(b, r.CacheReadCostUSD)
	b = append(b, `,"cache_write_cost_usd":`...)
	b = appendFloat(b, r.CacheWriteCostUSD)
	b = append(b, `,"output_cost_usd":`...)
	b = appendFloat(b, r.OutputCostUSD)
	b = append(b, `,"total_cost_usd":`...)
	b = appendFloat(b, r.TotalCostUSD)
	b = append(b, `,"cost_known":`...)
	b = strconv.AppendBool(b, r.CostKnown)
	b = append(b, `,"usage_estimated":`...)
	b = strconv.AppendBool(b, r.UsageEstimated)
	b = append(b, `,"finish_reason":`...)
	b = appendString(b, r.FinishReason)
	b = append(b, `,"vendor_request_id":`...)
	b = appendString(b, r.VendorRequestID)
	b = append(b, `,"ttfb_ms":`...)
	b = strconv.AppendInt(b, r.TTFBMillis, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMillis, 10)
	return append(b, '}')
}

// appendFloat formats a finite f as encoding/json does: plain notation
// for magnitudes in [1e-6, 1e21), exponent notation otherwise.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with encoding/json's escaping:
// quotes, backslashes, control characters, '<', '>', '&', U+2028 and
// U+2029 are escaped and invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
