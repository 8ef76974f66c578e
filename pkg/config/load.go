package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// SplitPaths splits a comma-separated list of file paths, dropping empty
// entries and surrounding spaces.
func SplitPaths(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Load reads the YAML files in order, deep-merges them (maps merge key by
// key; any other value, lists included, is replaced by the later file),
// expands ${VAR} references in string values with getenv, checks every key
// against the schema, applies defaults and validates. All problems found are
// returned together.
func Load(paths []string, getenv func(string) string) (Config, error) {
	if len(paths) == 0 {
		return Config{}, errors.New("no configuration files given")
	}
	merged := map[string]any{}
	var errs []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		doc, err := parseYAML(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("parse %s: %w", p, err))
			continue
		}
		merge(merged, doc)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return fromMap(merged, getenv)
}

// Parse is Load for in-memory documents, merged in order.
func Parse(getenv func(string) string, docs ...[]byte) (Config, error) {
	merged := map[string]any{}
	for i, data := range docs {
		doc, err := parseYAML(data)
		if err != nil {
			return Config{}, fmt.Errorf("parse document %d: %w", i+1, err)
		}
		merge(merged, doc)
	}
	return fromMap(merged, getenv)
}

func parseYAML(data []byte) (map[string]any, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || bytes.Equal(js, []byte("null")) {
		return map[string]any{}, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("top level must be a mapping: %w", err)
	}
	return doc, nil
}

func fromMap(m map[string]any, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	expanded := expand(m, getenv).(map[string]any)
	var errs []error
	unknownKeys(expanded, reflect.TypeFor[Config](), "", &errs)
	js, err := json.Marshal(expanded)
	if err != nil {
		return Config{}, fmt.Errorf("encode merged configuration: %w", err)
	}
	var c Config
	if err := json.Unmarshal(js, &c); err != nil {
		// A type error leaves c partly filled; its values are not checked.
		return Config{}, errors.Join(append(errs, typeError(err))...)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

func typeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: expected %s, got %s", te.Field, te.Type, te.Value)
	}
	return err
}

// merge deep-merges src into dst.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
			cp := map[string]any{}
			merge(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = v
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func expand(v any, getenv func(string) string) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = expand(e, getenv)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = expand(e, getenv)
		}
		return out
	case string:
		return envRef.ReplaceAllStringFunc(t, func(ref string) string {
			return getenv(ref[2 : len(ref)-1])
		})
	default:
		return v
	}
}

// unknownKeys walks m against the JSON shape of t and records every key the
// schema does not have.
func unknownKeys(v any, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return // type errors are reported by the decoder
		}
		fields := map[string]reflect.Type{}
		jsonFields(t, fields)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s: unknown key", join(path, k)))
				continue
			}
			unknownKeys(m[k], ft, join(path, k), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, e := range m {
			unknownKeys(e, t.Elem(), join(path, k), errs)
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range s {
			unknownKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

// jsonFields records the JSON names of t's fields, descending into
// embedded structs without a name as encoding/json does.
func jsonFields(t reflect.Type, fields map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if name == "" && f.Anonymous {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFields(ft, fields)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
