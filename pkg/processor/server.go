package processor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"runtime"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Options configures a Server. Zero values are documented per field.
type Options struct {
	// Config holds the rules. Required (use config.Defaults() in tests).
	Config config.Config
	// Providers is the provider registry. Default providers.Default(),
	// minus providers disabled in Config.
	Providers providers.Registry
	// Guards run in order at admission. Default none.
	Guards []Guard
	// Observer receives a Record per provider request. Default none.
	Observer Observer
	// Logger receives stream-level problems. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// SettleTimeout bounds each Ticket.Settle call. Default 2s.
	SettleTimeout time.Duration
	// Attempts classifies upstream attempts seen by the upstream filter
	// (see attempt.go). Nil: upstream filter streams are passed through.
	Attempts AttemptClassifier
	// Pricer prices each request's usage. Nil: costs are unknown.
	Pricer Pricer
	// GatewayKeys authenticates requests to the providers whose rules say
	// auth: gateway_keys and supplies their vendor keys. Required when a
	// provider is in that mode: without it such a provider's requests are
	// refused with 503 (never passed through with the client's key).
	GatewayKeys *gatewayauth.Admission
	// Failover is the compiled features.failover chains
	// (config.FailoverChains). Nil: no call fails over.
	Failover *failover.Set
}

// Server implements the ext_proc ExternalProcessor service. It is safe for
// concurrent use: every Process stream has its own state.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	cfg       config.Config
	providers providers.Registry
	guards    []Guard
	observer  Observer
	log       *slog.Logger
	now       func() time.Time
	settleTO  time.Duration
	attempts  AttemptClassifier
	pricer    Pricer
	// gatewayKeys and keysMode: the providers in gateway_keys mode.
	gatewayKeys *gatewayauth.Admission
	keysMode    map[string]bool
	failover    *failover.Set
	envoyChains bool // failover.HasEnvoyChains
	// injectUsage asks OpenAI for usage in streams (config
	// processing.inject_stream_usage).
	injectUsage bool
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// New returns a Server for opts.
func New(opts Options) *Server {
	s := &Server{
		cfg:      opts.Config,
		guards:   opts.Guards,
		observer: opts.Observer,
		log:      opts.Logger,
		now:      opts.Now,
		settleTO: opts.SettleTimeout,
		attempts: opts.Attempts,
		pricer:   opts.Pricer,

		gatewayKeys: opts.GatewayKeys,
		failover:    opts.Failover,
		envoyChains: opts.Failover.HasEnvoyChains(),

		injectUsage: opts.Config.Processing.InjectStreamUsage == nil || *opts.Config.Processing.InjectStreamUsage,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.settleTO <= 0 {
		s.settleTO = 2 * time.Second
	}
	reg := opts.Providers
	if reg == nil {
		reg = providers.Default()
	}
	s.providers = providers.Registry{}
	for name, p := range reg {
		if pc, ok := opts.Config.Providers[name]; ok && !pc.IsEnabled() {
			continue
		}
		s.providers[name] = p
		if pc, ok := opts.Config.Providers[name]; ok && pc.GatewayKeys() {
			if s.keysMode == nil {
				s.keysMode = map[string]bool{}
			}
			s.keysMode[name] = true
		}
	}
	return s
}

// MaxRecvMsgBytes is the gRPC receive limit [GRPCServerOptions] sets: gRPC's
// own ceiling. Envoy bounds every message it sends by its buffer limit
// (per_connection_buffer_limit_bytes, 32 MiB in envoy.yaml), and a lower
// gRPC limit would not protect anything: grpc-go answers an oversized
// message with a RESOURCE_EXHAUSTED stream error before the server can
// reply, and Envoy (failure_mode_allow) then forwards the request with every
// guard skipped. The server instead receives any message and refuses a
// request body over processing.max_request_body_bytes with 413 itself.
const MaxRecvMsgBytes = math.MaxInt32

// GRPCServerOptions returns the grpc.ServerOptions every gRPC server that
// serves [Server] needs: [GRPCTransportOptions] and the protobuf codec that
// decodes Envoy's requests by hand and writes replies' dynamic metadata
// without reflection (replyCodec; the same messages and the same bytes on
// the wire as the standard codec).
func GRPCServerOptions() []grpc.ServerOption {
	return append(GRPCTransportOptions(), grpc.ForceServerCodecV2(newReplyCodec()))
}

// GRPCTransportOptions are the transport settings of [GRPCServerOptions]:
//   - the receive limit [MaxRecvMsgBytes] (grpc-go's default of 4 MiB is far
//     below the 32 MiB request bodies envoy.yaml buffers);
//   - [StreamWorkers] stream workers;
//   - fixed HTTP/2 flow-control windows of [StreamWindowBytes] per stream
//     and [ConnWindowBytes] per connection. A fixed window turns off
//     grpc-go's bandwidth-delay estimation, which pings the client as
//     data arrives (one ping in flight at a time) to grow the windows
//     from 64 KiB: on ext_proc, where each body arrives as one message
//     from a nearby Envoy, those pings and their acknowledgements were 24
//     of a JSON lifecycle's allocations and gained nothing. The windows
//     bound data in flight, not memory the server sets aside.
//
// The benchmarks' null server uses them with grpc-go's standard codec.
func GRPCTransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxRecvMsgBytes), grpc.NumStreamWorkers(StreamWorkers()),
		grpc.InitialWindowSize(StreamWindowBytes), grpc.InitialConnWindowSize(ConnWindowBytes)}
}

// Flow-control windows of [GRPCTransportOptions], in bytes: a 32 MiB body
// crosses the stream window in eight window updates.
const (
	StreamWindowBytes = 4 << 20
	ConnWindowBytes   = 16 << 20
)

// StreamWorkers is the number of goroutines gRPC keeps to serve streams:
// 16 per GOMAXPROCS. Without them every Process stream starts a goroutine
// whose stack then grows (copied) to what a lifecycle needs; a worker keeps
// its grown stack from one stream to the next (grpc-go resets it every
// 65,536 streams). Streams beyond the workers, such as many long SSE
// responses held open, get a goroutine of their own as before.
func StreamWorkers() uint32 { return uint32(16 * runtime.GOMAXPROCS(0)) }

// Providers returns the enabled providers.
func (s *Server) Providers() providers.Registry { return s.providers }

// Process implements [extprocv3.ExternalProcessorServer.Process]. It serves
// one HTTP request. End of stream and cancellation are normal ends; the
// server never returns an error for anything a client sent. A reply with
// dynamic metadata is sent as a value whose ProcessingResponse method
// returns it (the codec of [GRPCServerOptions] writes the metadata without
// building its Struct); the others as *extprocv3.ProcessingResponse.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := srv.Context()
	st := newStream(s)
	defer st.end(ctx)
	for {
		req, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				return nil
			}
			if status.Code(err) == codes.ResourceExhausted {
				// Cannot happen with GRPCServerOptions; loud if a server
				// was built without them, since Envoy then fails open.
				s.log.Warn("ext_proc message over the gRPC receive limit; Envoy continues without this server", "error", err)
				return nil
			}
			s.log.Debug("ext_proc stream receive failed", "error", err)
			return nil
		}
		resp := st.process(ctx, req)
		if fields := st.takeMetadata(resp); resp != nil {
			var msg any = resp
			if fields != nil {
				msg = &outgoing{resp: resp, ns: s.cfg.Processing.MetadataNamespace, fields: fields}
			}
			if err := srv.SendMsg(msg); err != nil {
				s.log.Debug("ext_proc stream send failed", "error", err)
				return nil
			}
		}
		// Settlements and the observer run once the reply is on its way.
		st.flush()
		if st.closed && resp != nil {
			return nil
		}
	}
}
