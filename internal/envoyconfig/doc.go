// Package envoyconfig loads and checks Envoy v3 configuration without an
// Envoy binary.
//
// Load, Parse and UnmarshalYAML turn YAML into go-control-plane protos with
// unknown fields rejected, so a typo fails instead of being ignored. Every
// google.protobuf.Any type the project's configurations use is registered by
// this package's imports; an unregistered @type is reported by name.
//
// Validate and ValidateMessage run the protoc-gen-validate rules on the
// message and on every nested Any (which those rules never descend into), and
// then the load-time checks Envoy performs in C++ that the proto rules cannot
// express: referenced clusters exist, gRPC clusters speak HTTP/2, the router
// is the last HTTP filter, ext_proc settings are consistent, per-route filter
// configs name a configured filter, upstream TLS verifies the server, no
// deprecated field is used. All problems are reported together.
//
// MatchRoute and RewritePath pick a route for a request and rewrite its
// path as Envoy's route table does, so tests can route configurations
// that are not bootstraps (the routes Istio or Envoy Gateway generate);
// ReroutePaths lists the :paths a failover at admission sets
// (pkg/failover.Rewrite), which every variant must route to the target's
// vendor.
//
// Everything here is read-only on its inputs and safe for concurrent use.
package envoyconfig
