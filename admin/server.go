// Package admin is Warren's management HTTP API: the endpoints of
// RabbitMQ's management plugin that operators, their scripts and client
// test suites use, answered in the same JSON shapes; HTTP basic auth with
// RabbitMQ's user tags; definitions export and import in RabbitMQ's format;
// Prometheus metrics at /metrics.
//
//	HTTP request
//	     |
//	  router (path segments unescaped one by one, so "%2F" is the vhost "/")
//	     |
//	  auth (basic auth -> Broker.Authenticate, then the route's tag rule)
//	     |
//	  handler -> Broker (the narrow interface below) -> JSON
//
// The package never touches frames, queues or storage directly: it calls
// the Broker interface, which *broker.Server implements. Message rates are
// derived here, by sampling the broker's exact counters every few seconds.
//
// "/" and every path outside /api and /metrics are left to the web UI
// (Config.UI), so the management UI can be served by the same listener.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/store"
	"github.com/warrenmq/warren/webui"
)

// Broker is what the API needs from the broker; *broker.Server implements it.
type Broker interface {
	Node() broker.NodeInfo
	Totals() broker.Totals
	StorageStats() store.Stats
	Alarms() broker.AlarmStatus
	SetMemoryHighWatermark(spec string) error
	SetDiskFreeLimit(spec string) error

	Authenticate(name, pass string, remote net.Addr) (index.User, error)
	Users() []index.User
	PutUser(u index.User) (created bool, err error)
	DeleteUser(name string) error
	Permissions() []index.Permission
	SetPermission(p index.Permission) error
	ClearPermission(user, vhost string) error
	Allowed(user, vhost, kind, resKind, name string) bool

	VHosts() ([]index.VHost, error)
	PutVHost(v index.VHost, actor string) (created bool, err error)
	DeleteVHost(name string) error
	Policies(vhost string) ([]index.Policy, error)
	PutPolicy(p index.Policy) error
	DeletePolicy(vhost, name string) error
	OperatorPolicies(vhost string) ([]index.Policy, error)
	PutOperatorPolicy(p index.Policy) error
	DeleteOperatorPolicy(vhost, name string) error
	Parameters() ([]index.Parameter, error)
	PutParameter(p index.Parameter) error
	GlobalParameters() ([]index.GlobalParameter, error)
	PutGlobalParameter(p index.GlobalParameter) error

	Exchanges(vhost string) ([]broker.ExchangeInfo, error)
	DeclareExchange(a broker.Actor, x broker.ExchangeInfo) (created bool, err error)
	DeleteExchange(a broker.Actor, vhost, name string, ifUnused bool) error
	Queues(vhost string) ([]broker.QueueInfo, error)
	Queue(vhost, name string) (broker.QueueInfo, error)
	DeclareQueue(a broker.Actor, q broker.QueueInfo) (created bool, err error)
	DeleteQueue(a broker.Actor, vhost, name string, ifUnused, ifEmpty bool) (int, error)
	PurgeQueue(a broker.Actor, vhost, name string) (int, error)
	GetMessages(a broker.Actor, vhost, name string, count int, mode broker.GetMode) ([]broker.Message, error)
	Publish(a broker.Actor, vhost, exchange, key string, props amqpwire.Properties, body []byte) (bool, error)
	Bindings(vhost string) ([]broker.BindingInfo, error)
	Bind(a broker.Actor, b broker.BindingInfo) error
	Unbind(a broker.Actor, b broker.BindingInfo) error

	Connections() []broker.ConnInfo
	CloseConnection(name, reason string) error
	Channels() []broker.ChannelInfo
	Consumers(vhost string) ([]broker.ConsumerInfo, error)
}

// Config configures a Server.
type Config struct {
	// Broker is the broker the API manages.
	Broker Broker
	// Logger receives request errors and the listener's lifecycle.
	Logger zerolog.Logger
	// SampleInterval is how often message rates are sampled (default 5 s).
	SampleInterval time.Duration
	// UI serves every path outside /api and /metrics (default: the embedded
	// web UI, webui.Handler).
	UI http.Handler
	// MaxBody bounds request bodies (default 32 MiB, enough for large
	// definitions files).
	MaxBody int64
}

// Server is the management HTTP API.
type Server struct {
	cfg    Config
	b      Broker
	log    zerolog.Logger
	routes []route
	rates  *sampler
	prom   http.Handler
	hs     *http.Server
	stop   chan struct{}
	done   chan struct{}
}

// New returns a Server and starts its rate sampler; call Close (or
// Shutdown) to stop it.
func New(cfg Config) *Server {
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 5 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	if cfg.UI == nil {
		cfg.UI = webui.Handler()
	}
	s := &Server{cfg: cfg, b: cfg.Broker, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.rates = newSampler(cfg.Broker)
	s.prom = newMetricsHandler(cfg.Broker)
	s.addRoutes()
	go s.sampleLoop()
	return s
}

func (s *Server) sampleLoop() {
	defer close(s.done)
	s.rates.sample(time.Now())
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.rates.sample(now)
		case <-s.stop:
			return
		}
	}
}

// ServeHTTP routes a request: /api/... to the API, /metrics to Prometheus,
// anything else to the UI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r)
}

// Serve serves the API on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info().Str("addr", ln.Addr().String()).Msg("serving the management HTTP API")
	err := s.hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeTLS serves the API over TLS on ln until Shutdown; it may run
// beside Serve on another listener.
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return s.Serve(tls.NewListener(ln, cfg))
}

// Shutdown stops the listener (waiting for requests in flight, up to ctx)
// and the sampler.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx)
	s.Close()
	return err
}

// Close stops the rate sampler.
func (s *Server) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

var _ Broker = (*broker.Server)(nil)
