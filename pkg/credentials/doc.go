// Package credentials holds the vendor API keys the gateway puts on
// requests when a provider runs in gateway_keys mode: where each key comes
// from (inline, with ${ENV_VAR} expansion done by pkg/config, or a file that
// is re-read when it changes, as Kubernetes secret mounts do), which of
// several keys a request uses (round robin, or the key least recently
// rate-limited by the vendor), and the header mutation that writes it the
// way each vendor expects.
//
// A vendor key is held as a [Secret]: it never appears in an error, a log
// line or any formatted output. The package does not import Envoy types;
// [HeaderMutation] is plain data the processor turns into an ext_proc
// header mutation.
package credentials
