// Package telemetry turns processor Records into Prometheus metrics and one
// structured log line per request. It bounds label cardinality: model names
// chosen by clients collapse to "other" once a cap is reached.
package telemetry
