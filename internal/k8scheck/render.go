package k8scheck

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// Release names the release a chart is rendered for.
type Release struct {
	Name, Namespace string
}

// Manifest is one YAML document a template rendered.
type Manifest struct {
	// Template is the template's path in the chart
	// ("llm-proxy-extproc/templates/deployment.yaml").
	Template string
	// YAML is the document, without its "---" separator.
	YAML []byte
}

// RenderChart renders the chart in dir for rel with values merged over the
// chart's values.yaml, as `helm template` would (install, revision 1,
// Helm's default capabilities), with missing values an error. NOTES.txt and
// empty documents are left out; manifests come in template order.
func RenderChart(ctx context.Context, dir string, rel Release, values map[string]any) ([]Manifest, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: rel.Name, Namespace: rel.Namespace,
		Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	out, err := engine.Engine{Strict: true}.RenderWithContext(ctx, ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	var manifests []Manifest
	for _, name := range names {
		if path.Base(name) == "NOTES.txt" || strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		for _, doc := range SplitDocuments([]byte(out[name])) {
			manifests = append(manifests, Manifest{Template: name, YAML: doc})
		}
	}
	return manifests, nil
}

// SplitDocuments splits a multi-document YAML stream at lines that are
// exactly "---", dropping documents that hold only comments and blank
// lines.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		cur = cur[:0]
		for _, line := range strings.Split(doc, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, []byte(doc+"\n"))
				return
			}
		}
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}
