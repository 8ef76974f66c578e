package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The served gRPC server takes a request body as large as envoy.yaml
// buffers (32 MiB) in one message and answers it: with grpc-go's default
// 4 MiB limit the stream would fail and Envoy would forward the request
// unguarded. A body over processing.max_request_body_bytes (default 32
// MiB) is answered 413 in the vendor's shape.
func TestServerReceivesEnvoysLargestBody(t *testing.T) {
	s := Settings{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ConfigFiles: "../../configs/base.yml",
		LogLevel: "error", LogFormat: "json", ShutdownTimeout: 2 * time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, err := start(ctx, s, io.Discard)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.wait(ctx) }()
	defer func() { cancel(); <-done }()

	conn, err := grpc.NewClient(a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)

	send := func(size int) *extprocv3.ProcessingResponse {
		t.Helper()
		st, err := client.Process(t.Context())
		require.NoError(t, err)
		require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				hv(":method", "POST"), hv(":path", "/anthropic/v1/messages"), hv("content-type", "application/json")}}}}}))
		_, err = st.Recv()
		require.NoError(t, err)
		body := append([]byte(`{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[{"role":"user","content":"`),
			bytes.Repeat([]byte("a"), size)...)
		body = append(body, `"}]}`...)
		require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}))
		resp, err := st.Recv()
		require.NoError(t, err, "the stream must not fail on a body Envoy can send")
		return resp
	}
	require.NotNil(t, send(10<<20).GetRequestBody(), "a 10 MiB body is admitted")
	require.NotNil(t, send(32<<20-200).GetRequestBody(), "a body just under envoy.yaml's 32 MiB buffer is admitted")
	ir := send(32 << 20).GetImmediateResponse()
	require.NotNil(t, ir, "a body over max_request_body_bytes is refused")
	require.EqualValues(t, 413, ir.GetStatus().GetCode())
	require.JSONEq(t, `{"type":"error","error":{"type":"request_too_large","message":"[PROXY] Request body is larger than the gateway's limit of 33554432 bytes."}}`,
		string(ir.GetBody()))
}
