package fakevendor_test

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

const chatBody = `{"model":"m","messages":[{"role":"user","content":"x"}]}`

// rawPost posts chatBody without Go's transparent gzip handling.
func rawPost(t *testing.T, client *http.Client, url string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/openai/v1/chat/completions", strings.NewReader(chatBody))
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func rawClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

// Vendors commonly answer JSON without content-length: x-fake-chunked (or
// Options.ChunkedJSON) sends the body chunked on HTTP/1.1.
func TestChunkedJSON(t *testing.T) {
	for _, byOption := range []bool{false, true} {
		fake, url := startFake(t, fakevendor.Options{ChunkedJSON: byOption})
		var kv []string
		if !byOption {
			kv = []string{"x-fake-chunked", "1"}
		}
		resp, b := rawPost(t, rawClient(), url, kv...)
		require.Equal(t, int64(-1), resp.ContentLength)
		require.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		var body map[string]any
		require.NoError(t, json.Unmarshal(b, &body))
		require.Equal(t, "chat.completion", body["object"])
		call := onlyCall(t, fake)
		require.False(t, call.ContentLength)
		require.True(t, call.Completed)
	}
	fake, url := startFake(t, fakevendor.Options{})
	resp, _ := rawPost(t, rawClient(), url)
	require.Greater(t, resp.ContentLength, int64(0), "JSON carries content-length by default")
	require.True(t, onlyCall(t, fake).ContentLength)
}

// Like the real vendors, the fake compresses when the client accepts gzip,
// with x-fake-gzip: auto or Options.GzipWhenAccepted; not otherwise.
func TestGzipWhenAccepted(t *testing.T) {
	tests := []struct {
		name     string
		opts     fakevendor.Options
		kv       []string
		wantGzip bool
	}{
		{name: "auto, accepted", kv: []string{"x-fake-gzip", "auto", "Accept-Encoding", "br, gzip;q=0.8"}, wantGzip: true},
		{name: "auto, refused by q=0", kv: []string{"x-fake-gzip", "auto", "Accept-Encoding", "gzip;q=0"}},
		{name: "auto, not asked", kv: []string{"x-fake-gzip", "auto"}},
		{name: "option, accepted", opts: fakevendor.Options{GzipWhenAccepted: true}, kv: []string{"Accept-Encoding", "gzip"}, wantGzip: true},
		{name: "option, identity", opts: fakevendor.Options{GzipWhenAccepted: true}, kv: []string{"Accept-Encoding", "identity"}},
		{name: "no option, accepted", kv: []string{"Accept-Encoding", "gzip"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, tc.opts)
			resp, b := rawPost(t, rawClient(), url, tc.kv...)
			call := onlyCall(t, fake)
			if !tc.wantGzip {
				require.Empty(t, resp.Header.Get("Content-Encoding"))
				require.Empty(t, call.ContentEncoding)
				require.True(t, json.Valid(b))
				return
			}
			require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
			require.Equal(t, int64(-1), resp.ContentLength)
			require.Equal(t, "gzip", call.ContentEncoding)
			zr, err := gzip.NewReader(strings.NewReader(string(b)))
			require.NoError(t, err)
			plain, err := io.ReadAll(zr)
			require.NoError(t, err)
			require.True(t, json.Valid(plain))
		})
	}
}

// x-fake-trailer adds response trailers, over HTTP/1.1 (chunked, no
// content-length) and HTTP/2; the call records them and the protocol.
func TestTrailers(t *testing.T) {
	fake := fakevendor.New(fakevendor.Options{Seed: 3})
	hs := httptest.NewUnstartedServer(fake)
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	t.Cleanup(hs.Close)
	h2 := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true}
	h2.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(h2.CloseIdleConnections)
	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  string
	}{{"HTTP/1.1", rawClient(), "HTTP/1.1"}, {"HTTP/2", &http.Client{Transport: h2}, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			fake.Reset()
			resp, b := rawPost(t, tc.client, hs.URL, "x-fake-trailer", "x-usage-total: 17, x-checksum: abc")
			require.True(t, json.Valid(b))
			require.Equal(t, int64(-1), resp.ContentLength)
			require.Equal(t, "17", resp.Trailer.Get("X-Usage-Total"))
			require.Equal(t, "abc", resp.Trailer.Get("X-Checksum"))
			call := onlyCall(t, fake)
			require.Equal(t, tc.proto, call.Proto)
			require.Equal(t, http.Header{"X-Usage-Total": {"17"}, "X-Checksum": {"abc"}}, call.Trailers)
		})
	}
}

func TestTrailerDirectiveErrors(t *testing.T) {
	fake, url := startFake(t, fakevendor.Options{})
	for _, v := range []string{"content-length: 3", "no colon", "x-ok: 1, transfer-encoding: chunked"} {
		fake.Reset()
		resp, b := rawPost(t, rawClient(), url, "x-fake-trailer", v)
		require.Equal(t, 400, resp.StatusCode, v)
		require.Contains(t, string(b), "x-fake-trailer", v)
	}
	resp, _ := rawPost(t, rawClient(), url, "x-fake-chunked", "maybe")
	require.Equal(t, 400, resp.StatusCode)
}
