// Command warren runs the Warren AMQP 0-9-1 broker.
//
// Every flag can also be set through the environment: --data-dir is
// WARREN_DATA_DIR, --amqp-listen is WARREN_AMQP_LISTEN, and so on.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof-listen
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/admin"
	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("warren", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./warren-data", "directory of the message logs and the index")
	amqpListen := fs.String("amqp-listen", "127.0.0.1:5672", "AMQP 0-9-1 listen address")
	httpsListen := fs.String("https-listen", "", "management HTTP API over TLS listen address (e.g. 127.0.0.1:15671); needs --tls-cert and --tls-key")
	httpListen := fs.String("http-listen", "127.0.0.1:15672", "management HTTP API and /metrics listen address (empty: off)")
	defaultUser := fs.String("default-user", "guest", "administrator created on a new data directory (guest may log in only from loopback)")
	defaultPass := fs.String("default-pass", "guest", "password of --default-user")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "", "log format: console or json (default: console on a terminal)")
	maxConns := fs.Int("max-connections", 0, "refuse AMQP connections beyond this many (0: derived from the file descriptor limit; -1: no limit)")
	maxUnacked := fs.Int64("max-unacked", 100_000, "deliveries awaiting an ack per connection, whatever the prefetch; beyond it consumers wait for acks")
	maxTxBytes := fs.Int("max-tx-bytes", 64<<20, "uncommitted transactional publishes held per connection, in bytes; beyond it the channel is closed with 406")
	writeTimeout := fs.Duration("write-timeout", 30*time.Second, "drop a connection whose peer neither reads nor sends for this long")
	memWatermark := fs.String("memory-high-watermark", broker.DefaultMemoryHighWatermark, "block publishers when the broker's memory passes this: a fraction of RAM (0.4) or 'absolute SIZE' (e.g. 'absolute 2GB')")
	diskFreeLimit := fs.String("disk-free-limit", broker.DefaultDiskFreeLimit, "block publishers when the data directory's free space falls below this: a size (50MB) or 'mem_relative FACTOR'")
	amqpsListen := fs.String("amqps-listen", "", "AMQP over TLS listen address (e.g. 127.0.0.1:5671); needs --tls-cert and --tls-key")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the TLS listeners")
	tlsKey := fs.String("tls-key", "", "PEM private key of the TLS listeners")
	tlsCA := fs.String("tls-ca", "", "PEM CA bundle that verifies client certificates (enables the EXTERNAL mechanism)")
	tlsRequire := fs.Bool("tls-require-client-cert", false, "refuse TLS clients without a certificate signed by --tls-ca")
	certLogin := fs.String("tls-cert-login-from", "common_name", "user name of a client certificate for EXTERNAL: common_name or distinguished_name")
	maxConsumers := fs.Int("max-consumers", 10_000, "consumers per connection; basic.consume beyond it fails with 406")
	maxQueues := fs.Int("max-queues", 1_000_000, "queues of the node; queue.declare beyond it fails with 406")
	consumerTimeout := fs.Duration("consumer-timeout", 30*time.Minute, "close, with 406, a channel holding a delivery unacknowledged this long (as RabbitMQ's consumer_timeout)")
	segmentSize := fs.Int64("segment-size", segment.DefaultSegmentSize, "largest size in bytes of a queue's segment files; a queue's segments grow to it with its backlog, from 512 KiB")
	maxOpenFiles := fs.Int("max-open-files", 0, "segment files kept open, whatever the number of queues and segments (least recently used ones are closed); 0: 1024, or an eighth of the descriptor limit if smaller; the index keeps up to a quarter more")
	commitInterval := fs.Duration("commit-interval", store.DefaultCommitInterval, "spacing of the synced index commits of ack state under load")
	syncWorkers := fs.Int("sync-workers", store.DefaultSyncWorkers, "queue logs a group-commit round writes and fdatasyncs at once")
	largeHold := fs.Duration("large-hold", store.DefaultLargeHold, "how long a persistent message of 64 KiB or more that a consumer was handed waits for its ack before its body is written: one acknowledged meanwhile is never written, one not is confirmed up to this much later; 0: no wait")
	gcHeadroom := fs.Int64("gc-headroom", broker.DefaultGCHeadroom, "bytes of garbage the Go collector may let pile up over a small live heap before it runs, at most an eighth of the memory high watermark (fewer collections under load, at that much more memory); -1: Go's default (GOGC=100), as is an environment GOGC")
	ballast := fs.Int64("disk-ballast", 0, "bytes kept reserved in the data directory (file 'ballast') so that the index can still write when the disk fills; 0: 64 MiB, at most 2% of the file system; -1: none (a full disk then stops index writes until space returns)")
	repair := fs.Bool("repair", false, "rebuild a missing or damaged index from the segment files and the definitions journal (the damaged index is kept aside) instead of refusing to start")
	frameMax := fs.Uint("frame-max", 131072, "largest frame the broker accepts and proposes, in bytes (4096 to 1048576)")
	channelMax := fs.Uint("channel-max", 2047, "highest channel number a connection may open (1 to 65535)")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat interval the broker proposes (whole seconds; 0 turns heartbeats off unless the client asks)")
	maxMsgSize := fs.Uint64("max-message-size", 16<<20, "largest message body accepted, in bytes; larger publishes are refused with 406")
	congestion := fs.Int("congestion-limit", broker.DefaultCongestionLimit, "bytes waiting for a connection's socket before its deliveries pause (past twice this, replies and returns stop the broker reading it)")
	pprofListen := fs.String("pprof-listen", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); off by default")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: warren [flags]\n\nWarren is a log-structured AMQP 0-9-1 broker, a drop-in for a single RabbitMQ node.\nEvery flag may also be set as WARREN_<FLAG> (e.g. WARREN_DATA_DIR).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Environment first, flags override.
	fs.VisitAll(func(f *flag.Flag) {
		env := "WARREN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			f.Value.Set(v)
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warren:", err)
		return 2
	}
	if *defaultUser == "" || *defaultPass == "" {
		fmt.Fprintln(os.Stderr, "warren: --default-user and --default-pass must not be empty")
		return 2
	}
	var tlsCfg *tls.Config
	if *tlsCert != "" || *tlsKey != "" || *amqpsListen != "" || *httpsListen != "" {
		if tlsCfg, err = broker.LoadTLSConfig(*tlsCert, *tlsKey, *tlsCA, *tlsRequire); err != nil {
			log.Error().Err(err).Msg("cannot start")
			return 2
		}
	}
	if *frameMax < 4096 || *frameMax > 1<<20 || *channelMax < 1 || *channelMax > 65535 || *heartbeat < 0 {
		log.Error().Uint("frame-max", *frameMax).Uint("channel-max", *channelMax).Dur("heartbeat", *heartbeat).Msg("cannot start: a setting is out of range")
		return 2
	}
	if *certLogin != "common_name" && *certLogin != "distinguished_name" {
		log.Error().Str("tls-cert-login-from", *certLogin).Msg("cannot start: want common_name or distinguished_name")
		return 2
	}
	srv, err := broker.New(broker.Config{
		DataDir:         *dataDir,
		AMQPListen:      *amqpListen,
		HTTPListen:      *httpListen,
		AMQPSListen:     *amqpsListen,
		TLS:             tlsCfg,
		CertLoginFrom:   *certLogin,
		Logger:          log,
		DefaultUser:     *defaultUser,
		DefaultPass:     *defaultPass,
		MaxConnections:  *maxConns,
		MaxUnacked:      *maxUnacked,
		MaxTxBytes:      *maxTxBytes,
		WriteTimeout:    *writeTimeout,
		MaxConsumers:    *maxConsumers,
		MaxQueues:       *maxQueues,
		FrameMax:        uint32(*frameMax),
		ChannelMax:      uint16(*channelMax),
		Heartbeat:       zeroMeansOff(*heartbeat),
		MaxMessageSize:  *maxMsgSize,
		CongestionLimit: *congestion,
		ConsumerTimeout: *consumerTimeout,

		MemoryHighWatermark: *memWatermark,
		DiskFreeLimit:       *diskFreeLimit,

		SegmentSize:    *segmentSize,
		MaxOpenFiles:   *maxOpenFiles,
		CommitInterval: *commitInterval,
		SyncWorkers:    *syncWorkers,
		LargeHold:      zeroMeansOff(*largeHold),
		GCHeadroom:     zeroMeansOff(*gcHeadroom),
		BallastSize:    *ballast,
		Repair:         *repair,
	})
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	var api *admin.Server
	for _, l := range []struct {
		addr string
		tls  bool
	}{{*httpListen, false}, {*httpsListen, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			log.Error().Err(err).Str("addr", l.addr).Msg("cannot listen for the management HTTP API")
			srv.Shutdown(context.Background())
			return 1
		}
		if api == nil {
			api = admin.New(admin.Config{Broker: srv, Logger: log})
		}
		go func() {
			var err error
			if l.tls {
				err = api.ServeTLS(ln, tlsCfg)
			} else {
				err = api.Serve(ln)
			}
			if err != nil {
				log.Error().Err(err).Msg("management HTTP API stopped")
			}
		}()
	}
	if *pprofListen != "" {
		go func() {
			log.Info().Str("addr", *pprofListen).Msg("serving pprof")
			if err := http.ListenAndServe(*pprofListen, nil); err != nil {
				log.Error().Err(err).Msg("pprof listener")
			}
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info().Str("signal", s.String()).Msg("shutting down")
	case err := <-errc:
		if err != nil {
			log.Error().Err(err).Msg("server stopped")
			srv.Shutdown(context.Background())
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if api != nil {
		api.Shutdown(ctx)
	}
	if err := srv.Shutdown(ctx); err != nil {
		log.Error().Err(err).Msg("shutdown")
		return 1
	}
	return 0
}

func newLogger(level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("bad --log-level %q", level)
	}
	if format == "" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "console"
		}
	}
	var log zerolog.Logger
	switch format {
	case "console":
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	case "json":
		log = zerolog.New(os.Stderr)
	default:
		return zerolog.Logger{}, fmt.Errorf("bad --log-format %q (console or json)", format)
	}
	return log.Level(lvl).With().Timestamp().Logger(), nil
}

// zeroMeansOff maps a flag's 0 (off: --heartbeat, --large-hold,
// --gc-headroom) to the broker's "none", a negative value, since 0 in
// broker.Config means the default.
func zeroMeansOff[T ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
