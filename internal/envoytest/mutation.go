package envoytest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// maxMutationEntries is the HCM default header count limit (100) that bounds
// the number of set/remove entries of one mutation.
const maxMutationEntries = 100

// checkOp is the kind of header operation being checked.
type checkOp int

const (
	opSet checkOp = iota
	opAppend
	opRemove
)

// checkResult is the outcome of the mutation checker.
type checkResult int

const (
	checkOK checkResult = iota
	checkIgnore
	checkFail
)

// routingHeaders may only change with allow_all_routing.
var routingHeaders = map[string]bool{":authority": true, ":method": true, ":scheme": true, "host": true}

// check mirrors Envoy's mutation_rules Checker::check.
func (r MutationRules) check(op checkOp, name, value string, replacing bool) checkResult {
	fail := checkIgnore
	if r.DisallowIsError {
		fail = checkFail
	}
	if op == opRemove && (strings.HasPrefix(name, ":") || name == "host") {
		return fail
	}
	if r.DisallowAll {
		return fail
	}
	if !r.allowed(op, name, replacing) {
		return fail
	}
	if op != opRemove && !validValueFor(name, value) {
		return fail
	}
	return checkOK
}

func (r MutationRules) allowed(op checkOp, name string, replacing bool) bool {
	if r.DisallowExpression != nil && r.DisallowExpression.MatchString(name) {
		return false
	}
	if r.AllowExpression != nil && r.AllowExpression.MatchString(name) {
		return true
	}
	if strings.HasPrefix(name, ":") || name == "host" {
		if routingHeaders[name] {
			return r.AllowAllRouting || (replacing && name == ":method")
		}
		if r.DisallowSystem || op == opAppend {
			return false
		}
		return true
	}
	if strings.HasPrefix(name, "x-envoy") {
		return r.AllowEnvoy
	}
	return true
}

// validValueFor applies the checker's value checks for special headers.
func validValueFor(name, value string) bool {
	switch name {
	case ":status":
		n, err := strconv.Atoi(value)
		return err == nil && n >= 200 && n <= 999
	case ":authority", "host":
		return value != "" && !strings.ContainsAny(value, " /?#@")
	case ":scheme":
		return value == "http" || value == "https"
	}
	return true
}

// mutationContext describes where a header mutation is applied.
type mutationContext struct {
	rules MutationRules
	// replacing is true for a CONTINUE_AND_REPLACE headers reply.
	replacing bool
	// removeCL makes content-length sets silently skipped (the filter already
	// removed it because of the body mode).
	removeCL bool
}

// mutationOutcome collects what happened while applying a mutation.
type mutationOutcome struct {
	// rejected lists skipped mutations (checker IGNORE), for counters.
	rejected []string
	// notes lists Envoy-ignored but suspicious inputs (append_action,
	// value-only headers, content-length skips).
	notes []string
}

// applyHeaderMutation applies m to h exactly like Envoy's
// MutationUtils::applyHeaderMutations: removals first, then sets in order;
// mutationError is a header mutation Envoy refuses: Error explains it; envoy
// is MutationUtils' status message, which Envoy's handleErrorResponse makes
// the local reply's details (spaces replaced by "_").
type mutationError struct{ msg, envoy string }

func (e *mutationError) Error() string { return e.msg }

// envoyDetails is the response code details Envoy gives a refused mutation.
func envoyDetails(err error) string {
	var me *mutationError
	if errors.As(err, &me) {
		return strings.ReplaceAll(me.envoy, " ", "_")
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// only the append BoolValue is honoured. A non-nil error means the whole
// reply fails (local reply status_on_error).
func applyHeaderMutation(h *headerMap, m *extprocsvc.HeaderMutation, mc mutationContext) (mutationOutcome, error) {
	var out mutationOutcome
	if m == nil {
		return out, nil
	}
	if len(m.GetRemoveHeaders()) > maxMutationEntries || len(m.GetSetHeaders()) > maxMutationEntries {
		return out, &mutationError{msg: fmt.Sprintf("too many header mutations (%d removes, %d sets)", len(m.GetRemoveHeaders()), len(m.GetSetHeaders())),
			envoy: fmt.Sprintf("Header mutation remove header count %d or set header count %d exceed the HCM header countlimit %d", len(m.GetRemoveHeaders()), len(m.GetSetHeaders()), maxMutationEntries)}
	}
	for _, raw := range m.GetRemoveHeaders() {
		name := strings.ToLower(raw)
		if !validHeaderName(name) {
			return out, &mutationError{msg: fmt.Sprintf("invalid header name %q in remove_headers", raw), envoy: "Invalid character in remove_headers mutation."}
		}
		switch mc.rules.check(opRemove, name, "", mc.replacing) {
		case checkFail:
			return out, &mutationError{msg: fmt.Sprintf("header removal of %q disallowed", name), envoy: "Invalid attempt to remove " + name}
		case checkIgnore:
			out.rejected = append(out.rejected, "remove "+name)
			continue
		}
		h.del(name)
	}
	for _, opt := range m.GetSetHeaders() {
		hv := opt.GetHeader()
		if hv == nil {
			continue
		}
		name := strings.ToLower(hv.GetKey())
		// MutationUtils::applyHeaderMutations order: the content-length skip,
		// then value vs raw_value, then name and value characters.
		if mc.removeCL && name == "content-length" {
			out.notes = append(out.notes, "content-length mutation skipped: the filter removed content-length for this body mode")
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return out, &mutationError{msg: fmt.Sprintf("header %q has both value and raw_value", name),
				envoy: "Only one of value or raw_value in the HeaderValue message should be set."}
		}
		if !validHeaderName(name) {
			return out, &mutationError{msg: fmt.Sprintf("invalid header name %q in set_headers", hv.GetKey()), envoy: "Invalid character in set_headers mutation."}
		}
		value := string(hv.GetRawValue())
		if hv.GetValue() != "" {
			out.notes = append(out.notes, fmt.Sprintf("header %q set with value instead of raw_value: Envoy 1.32+ sets it empty", name))
		}
		if !validHeaderValue(value) {
			return out, &mutationError{msg: fmt.Sprintf("invalid value for header %q", name), envoy: "Invalid character in set_headers mutation."}
		}
		appendMode := opt.GetAppend() != nil && opt.GetAppend().GetValue()
		if opt.GetAppend() == nil {
			switch opt.GetAppendAction() {
			case corev3.HeaderValueOption_ADD_IF_ABSENT, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				out.notes = append(out.notes, fmt.Sprintf("header %q: append_action %s is ignored by ext_proc (overwrite applied)", name, opt.GetAppendAction()))
			}
		}
		op := opSet
		if appendMode {
			op = opAppend
		}
		switch mc.rules.check(op, name, value, mc.replacing) {
		case checkFail:
			return out, &mutationError{msg: fmt.Sprintf("header mutation of %q disallowed", name), envoy: "Invalid attempt to modify " + name}
		case checkIgnore:
			out.rejected = append(out.rejected, "set "+name)
			continue
		}
		if name == "host" {
			name = ":authority"
		}
		if appendMode {
			h.add(name, value)
		} else {
			h.set(name, value)
		}
	}
	return out, nil
}
