package envoyconfig

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Load reads the Envoy bootstrap YAML (or JSON) file at path and parses it
// into a Bootstrap. It rejects unknown fields and unregistered @types but
// does not validate; call Validate for that.
func Load(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read envoy config: %w", err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Parse parses an Envoy bootstrap given as YAML or JSON. Both snake_case and
// lowerCamelCase field names are accepted, as Envoy does.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := UnmarshalYAML(data, b); err != nil {
		return nil, err
	}
	return b, nil
}

// UnmarshalYAML parses YAML or JSON into m with the protobuf JSON mapping.
// Unknown fields are an error, and every Any's @type must be registered (see
// the package documentation). Errors quote the JSON text around the failure
// because protojson positions refer to the converted JSON, not to the YAML.
func UnmarshalYAML(data []byte, m proto.Message) error {
	if len(data) == 0 {
		return errors.New("empty document")
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if string(js) == "null" {
		return errors.New("empty document")
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, m); err != nil {
		return fmt.Errorf("decode %s: %w%s", m.ProtoReflect().Descriptor().FullName(), err, near(js, err))
	}
	return nil
}

var linecol = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// near returns " near `...`" with the JSON around the position protojson
// reported, or "" when the error carries no position.
func near(js []byte, err error) string {
	m := linecol.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	off := 0
	for l := 1; l < line && off < len(js); off++ {
		if js[off] == '\n' {
			l++
		}
	}
	off += col - 1
	if off < 0 || off > len(js) {
		return ""
	}
	start, end := max(off-60, 0), min(off+60, len(js))
	return fmt.Sprintf(" near `%s`", js[start:end])
}
