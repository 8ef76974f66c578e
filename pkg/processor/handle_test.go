package processor

import (
	"context"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// handle is process with the reply's metadata set on it as the Struct
// Envoy receives, for tests that drive a stream without gRPC.
func (st *stream) handle(ctx context.Context, req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	resp := st.process(ctx, req)
	if f := st.takeMetadata(resp); f != nil {
		resp.DynamicMetadata = f.Struct(st.s.cfg.Processing.MetadataNamespace)
	}
	return resp
}
