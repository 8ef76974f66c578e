package processor

import (
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
)

func BenchmarkZZDecode(b *testing.B) {
	w, _ := proto.Marshal(envoyMessages(b)["request headers"])
	b.ReportAllocs()
	for b.Loop() {
		var m extprocv3.ProcessingRequest
		c := append([]byte(nil), w...)
		decodeRequest(c, &m)
	}
}
