// Package config loads the gateway's rule files: YAML documents merged in
// order, checked against the schema (unknown keys are errors), expanded
// (${VAR} from the environment) and validated, with every problem reported
// at once.
//
// Process settings (listen addresses, log format) come from the environment
// and live in cmd/extproc; this package owns only the rules.
package config
