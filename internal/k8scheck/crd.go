package k8scheck

import (
	"context"
	"errors"
	"fmt"
	"os"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// CRDs validates custom resources against the OpenAPI schemas and CEL rules
// of their CustomResourceDefinitions, as the API server does on create.
// It is safe for concurrent use after LoadCRDs.
type CRDs struct {
	byID map[string]crdVersion // "group/version/kind"
}

type crdVersion struct {
	schema     validation.SchemaValidator
	structural *structuralschema.Structural
	rules      *cel.Validator
}

// LoadCRDs reads CustomResourceDefinitions from multi-document YAML files
// (other kinds are skipped) and prepares every served version's schema.
func LoadCRDs(paths ...string) (*CRDs, error) {
	c := &CRDs{byID: map[string]crdVersion{}}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for _, doc := range SplitDocuments(data) {
			var crd apiextv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				var internal apiextensions.JSONSchemaProps
				if err := apiextv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				sv, _, err := validation.NewSchemaValidator(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				st, err := structuralschema.NewStructural(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
				}
				id := crd.Spec.Group + "/" + v.Name + "/" + crd.Spec.Names.Kind
				c.byID[id] = crdVersion{schema: sv, structural: st,
					rules: cel.NewValidator(st, true, celconfig.PerCallLimit)}
			}
		}
	}
	return c, nil
}

// Has reports whether a schema for apiVersion and kind was loaded.
func (c *CRDs) Has(apiVersion, kind string) bool {
	_, ok := c.byID[apiVersion+"/"+kind]
	return ok
}

// Validate checks one YAML manifest, with its CRD's defaults applied,
// against the CRD's schema (types, enums, patterns, required fields,
// bounds) and CEL rules. A manifest whose
// kind has no loaded CRD is an error.
func (c *CRDs) Validate(ctx context.Context, doc []byte) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	// Integers stay int64, as in the API server (CEL rules are typed).
	var obj map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &obj); err != nil {
		return err
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	v, ok := c.byID[apiVersion+"/"+kind]
	if !ok {
		return fmt.Errorf("no CRD for %s %s", apiVersion, kind)
	}
	// The API server applies the schema's defaults before it validates.
	structuraldefaulting.Default(obj, v.structural)
	errs := validation.ValidateCustomResource(nil, obj, v.schema)
	celErrs, _ := v.rules.Validate(ctx, field.NewPath(""), v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	errs = append(errs, celErrs...)
	if len(errs) == 0 {
		return nil
	}
	var all []error
	for _, e := range errs {
		all = append(all, e)
	}
	return fmt.Errorf("%s: %w", kind, errors.Join(all...))
}
