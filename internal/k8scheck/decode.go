package k8scheck

import (
	"encoding/json"
	"errors"
	"fmt"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is a decoded manifest.
type Object struct {
	// APIVersion, Kind, Name and Namespace identify it.
	APIVersion, Kind, Name, Namespace string
	// Value is a pointer to the typed object (*appsv1.Deployment, ...).
	Value any
}

// types are the kinds Decode knows, by "apiVersion/kind".
var types = map[string]func() any{
	"v1/ConfigMap":                                        func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                           func() any { return new(corev1.Secret) },
	"v1/Service":                                          func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                                   func() any { return new(corev1.ServiceAccount) },
	"v1/Namespace":                                        func() any { return new(corev1.Namespace) },
	"apps/v1/Deployment":                                  func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":                       func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":              func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"monitoring.coreos.com/v1/ServiceMonitor":             func() any { return new(monitoringv1.ServiceMonitor) },
	"gateway.networking.k8s.io/v1/GatewayClass":           func() any { return new(gwapiv1.GatewayClass) },
	"gateway.networking.k8s.io/v1/Gateway":                func() any { return new(gwapiv1.Gateway) },
	"gateway.networking.k8s.io/v1/HTTPRoute":              func() any { return new(gwapiv1.HTTPRoute) },
	"gateway.networking.k8s.io/v1/BackendTLSPolicy":       func() any { return new(gwapiv1.BackendTLSPolicy) },
	"gateway.envoyproxy.io/v1alpha1/Backend":              func() any { return new(egv1a1.Backend) },
	"gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy": func() any { return new(egv1a1.EnvoyExtensionPolicy) },
	"gateway.envoyproxy.io/v1alpha1/BackendTrafficPolicy": func() any { return new(egv1a1.BackendTrafficPolicy) },
	"gateway.envoyproxy.io/v1alpha1/ClientTrafficPolicy":  func() any { return new(egv1a1.ClientTrafficPolicy) },
	"gateway.envoyproxy.io/v1alpha1/EnvoyPatchPolicy":     func() any { return new(egv1a1.EnvoyPatchPolicy) },
	"gateway.envoyproxy.io/v1alpha1/EnvoyProxy":           func() any { return new(egv1a1.EnvoyProxy) },
	"gateway.envoyproxy.io/v1alpha1/HTTPRouteFilter":      func() any { return new(egv1a1.HTTPRouteFilter) },
}

// typeMeta and objectMeta are the fields read before the typed decode.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

// Decode reads one YAML manifest into its typed object. It fails on more
// or less than one document, an unknown apiVersion/kind, a duplicate key, a
// field the type does not have at any depth (names match case-sensitively,
// as in the API server), a value of the wrong type, a missing or invalid
// name (DNS-1123 subdomain), an invalid namespace or label.
func Decode(doc []byte) (Object, error) {
	if n := len(SplitDocuments(doc)); n != 1 {
		return Object{}, fmt.Errorf("want one YAML document, got %d", n)
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, fmt.Errorf("yaml: %w", err)
	}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		return Object{}, fmt.Errorf("header: %w", err)
	}
	id := h.APIVersion + "/" + h.Kind
	newValue, ok := types[id]
	if !ok {
		return Object{}, fmt.Errorf("unknown apiVersion/kind %q", id)
	}
	// The API server's own decoder rules: field names match case-sensitively,
	// unknown and duplicate fields are errors (reported with their path).
	v := newValue()
	strictErrs, err := sigsjson.UnmarshalStrict(js, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return Object{}, fmt.Errorf("%s %q: %w", h.Kind, h.Metadata.Name, err)
	}
	problems := strictErrs
	if msgs := validation.IsDNS1123Subdomain(h.Metadata.Name); len(msgs) > 0 {
		problems = append(problems, fmt.Errorf("name %q: %v", h.Metadata.Name, msgs))
	}
	if h.Metadata.Namespace != "" {
		if msgs := validation.IsDNS1123Label(h.Metadata.Namespace); len(msgs) > 0 {
			problems = append(problems, fmt.Errorf("namespace %q: %v", h.Metadata.Namespace, msgs))
		}
	}
	for k, val := range h.Metadata.Labels {
		for _, m := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(val)...) {
			problems = append(problems, fmt.Errorf("label %s=%s: %s", k, val, m))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return Object{}, fmt.Errorf("%s %q: %w", h.Kind, h.Metadata.Name, err)
	}
	return Object{APIVersion: h.APIVersion, Kind: h.Kind, Name: h.Metadata.Name, Namespace: h.Metadata.Namespace, Value: v}, nil
}

// DecodeAll decodes every document of a multi-document YAML stream.
func DecodeAll(data []byte) ([]Object, error) {
	var out []Object
	for i, doc := range SplitDocuments(data) {
		obj, err := Decode(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, obj)
	}
	return out, nil
}
