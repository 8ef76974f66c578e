package envoyconfig

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// ErrNoRoute is returned (wrapped) by MatchRoute when no route takes the
// request: Envoy answers it 404 (route_not_found).
var ErrNoRoute = errors.New("no route matches")

// MatchRoute returns the first of rs that takes a request for path (query
// included) with headers, as Envoy's route table does for the match kinds
// the project's configurations use (source/common/router/config_impl.cc,
// each kind's matches(); every path matcher drops the query and fragment
// first, source/common/common/matchers.cc PathMatcher::match): path equal,
// prefix, safe_regex (RE2, whole string), path_separated_prefix equal or
// followed by '/'. Every header matcher
// (exact string or present, inverted or not) must hold; a header absent
// from headers is absent from the request. Other match kinds are an error,
// so a configuration using one is not silently misjudged. It is pure and
// safe for concurrent use.
func MatchRoute(rs []*routev3.Route, path string, headers map[string]string) (*routev3.Route, error) {
	bare := pathOnly(path)
	for _, r := range rs {
		m := r.GetMatch()
		ok, err := headersMatch(m.GetHeaders(), headers)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		if !ok {
			continue
		}
		switch {
		case m.GetPath() != "":
			ok = bare == m.GetPath()
		case m.GetSafeRegex() != nil:
			re, err := regexp.Compile("^(?:" + m.GetSafeRegex().GetRegex() + ")$")
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
			}
			ok = re.MatchString(bare)
		case m.GetPathSeparatedPrefix() != "":
			p := m.GetPathSeparatedPrefix()
			ok = bare == p || strings.HasPrefix(bare, p+"/")
		case m.GetPrefix() != "":
			ok = strings.HasPrefix(bare, m.GetPrefix())
		default:
			return nil, fmt.Errorf("route %q: match %v not handled", r.GetName(), m)
		}
		if ok {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w %s", ErrNoRoute, path)
}

// pathOnly is path without its query and fragment
// (Http::PathUtil::removeQueryAndFragment).
func pathOnly(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

func headersMatch(ms []*routev3.HeaderMatcher, headers map[string]string) (bool, error) {
	for _, hm := range ms {
		v, ok := headers[hm.GetName()]
		switch {
		case hm.GetStringMatch().GetExact() != "":
			ok = ok && v == hm.GetStringMatch().GetExact()
		case hm.GetPresentMatch():
		default:
			return false, fmt.Errorf("header matcher %v not handled", hm)
		}
		if ok == hm.GetInvertMatch() {
			return false, nil
		}
	}
	return true, nil
}

// backref is RE2's \N in a regex_rewrite substitution.
var backref = regexp.MustCompile(`\\(\d)`)

// RewritePath returns the :path the router sends upstream for path on
// route r (RouteEntryImplBase::currentUrlPathAfterRewriteWithMatchedPath):
// regex_rewrite replaces every match in the path without its query and
// fragment (\N in the substitution is group N) and keeps what followed;
// prefix_rewrite replaces the matched prefix (prefix or
// path_separated_prefix); without either the path is unchanged. It is pure
// and safe for concurrent use.
func RewritePath(r *routev3.Route, path string) (string, error) {
	a := r.GetRoute()
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return "", fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		bare := pathOnly(path)
		sub := backref.ReplaceAllString(strings.ReplaceAll(rr.GetSubstitution(), "$", "$$"), "$${$1}")
		return re.ReplaceAllString(bare, sub) + path[len(bare):], nil
	}
	if pr := a.GetPrefixRewrite(); pr != "" {
		prefix := r.GetMatch().GetPrefix()
		if prefix == "" {
			prefix = r.GetMatch().GetPathSeparatedPrefix()
		}
		return pr + strings.TrimPrefix(path, prefix), nil
	}
	return path, nil
}
