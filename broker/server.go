package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/store"
)

// Config holds the server's settings. Zero values take the defaults.
type Config struct {
	// DataDir holds the message logs and the index (default ./warren-data).
	DataDir string
	// AMQPListen is the AMQP listen address (default 127.0.0.1:5672).
	AMQPListen string
	// HTTPListen is the management HTTP listen address (reserved).
	HTTPListen string
	// AMQPSListen is the AMQP-over-TLS listen address (none by default;
	// RabbitMQ's port is 5671). It needs TLS.
	AMQPSListen string
	// TLS configures the AMQPS listener (see LoadTLSConfig).
	TLS *tls.Config
	// CertLoginFrom picks the user name a client certificate logs in as
	// with EXTERNAL: "common_name" (default) or "distinguished_name".
	CertLoginFrom string
	// Logger receives the server's logs.
	Logger zerolog.Logger
	// FrameMax is the largest frame the server accepts (default 131072).
	FrameMax uint32
	// ChannelMax is the highest channel number (default 2047).
	ChannelMax uint16
	// Heartbeat is the interval the server proposes (default 60 s;
	// negative proposes none).
	Heartbeat time.Duration
	// HandshakeTimeout drops connections that do not finish the handshake.
	HandshakeTimeout time.Duration
	// WriteTimeout is how long the peer may neither read nor send before
	// its connection is dropped (default 30 s). A slow reader whose
	// heartbeats arrive is never dropped.
	WriteTimeout time.Duration
	// MaxUnacked bounds the deliveries awaiting an ack on one connection,
	// whatever the consumers' prefetch (default 100,000): past it the
	// connection's consumers get nothing more until they ack.
	MaxUnacked int64
	// MaxTxBytes bounds the uncommitted transactional publishes held for
	// one connection (default 64 MiB): the publish that would pass it
	// closes its channel with 406 PRECONDITION_FAILED.
	MaxTxBytes int
	// MemoryHighWatermark and DiskFreeLimit raise the resource alarms that
	// block publishers (see SetMemoryHighWatermark and SetDiskFreeLimit for
	// the syntax; defaults "0.4" and "50MB").
	MemoryHighWatermark, DiskFreeLimit string
	// AlarmInterval is how often memory and disk are sampled (default 1 s).
	AlarmInterval time.Duration
	// MaxConsumers bounds the consumers of one connection (default
	// 10,000); basic.consume past it fails with 406.
	MaxConsumers int
	// MaxQueues bounds the queues of the node (default 1,000,000); a
	// declare past it fails with 406.
	MaxQueues int
	// ConsumerTimeout closes, with 406, a channel holding a delivery
	// unacknowledged for longer (default 30 minutes, as RabbitMQ).
	ConsumerTimeout time.Duration
	// CongestionLimit is how many encoded bytes may wait for a
	// connection's socket before its consumers get no more deliveries
	// (default 4 MiB); past twice as many the broker stops reading it.
	CongestionLimit int
	// MaxMessageSize is the largest message body accepted (default 16 MiB).
	MaxMessageSize uint64
	// SegmentSize is the largest size at which queue logs roll (default
	// from store: 64 MiB; a queue's segments grow to it with its backlog).
	SegmentSize int64
	// MaxOpenFiles bounds the segment files the store keeps open (default
	// 1024, or an eighth of the descriptor limit if smaller; the index
	// keeps up to a quarter more, at least 64).
	MaxOpenFiles int
	// CommitInterval spaces the synced index commits of ack state (default
	// from store: 2 ms).
	CommitInterval time.Duration
	// SyncWorkers bounds the logs a sync round flushes at once (default
	// store.DefaultSyncWorkers).
	SyncWorkers int
	// GCHeadroom is the garbage the Go collector lets pile up over a small
	// live heap before it runs (0: DefaultGCHeadroom, at most an eighth of
	// the memory high watermark; negative: Go's default, GOGC=100; an
	// environment GOGC also keeps Go's default).
	GCHeadroom int64
	// LargeHold is how long a persistent message of 64 KiB or more waits
	// before its body is written, so that one acknowledged meanwhile is not
	// (0: store.DefaultLargeHold; negative: no wait).
	LargeHold time.Duration
	// BallastSize is the space the store keeps reserved for the index
	// against a full disk (0: store.DefaultBallastSize, at most 2% of the
	// file system; negative: none).
	BallastSize int64
	// Repair rebuilds a missing or damaged index from the segments and the
	// definitions journal instead of refusing to start (warren --repair).
	Repair bool
	// FS is the file system of the store (nil: the operating system's);
	// tests inject faults through it.
	FS vfs.FS
	// DefaultUser and DefaultPass seed a fresh data directory (guest/guest).
	DefaultUser, DefaultPass string
	// MaxConnections bounds the open connections, handshakes included;
	// connections beyond it are closed at once. 0 derives it from the
	// process's file descriptor limit (leaving room for the store's files);
	// negative means no limit.
	MaxConnections int
}

func (c *Config) setDefaults() {
	if c.MaxOpenFiles == 0 {
		c.MaxOpenFiles = defaultMaxOpenFiles()
	}
	if c.DataDir == "" {
		c.DataDir = "warren-data"
	}
	if c.AMQPListen == "" {
		c.AMQPListen = "127.0.0.1:5672"
	}
	if c.FrameMax == 0 {
		c.FrameMax = 131072
	}
	if c.ChannelMax == 0 {
		c.ChannelMax = 2047
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 60 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.MaxUnacked == 0 {
		c.MaxUnacked = 100_000
	}
	if c.MaxTxBytes == 0 {
		c.MaxTxBytes = 64 << 20
	}
	if c.MemoryHighWatermark == "" {
		c.MemoryHighWatermark = DefaultMemoryHighWatermark
	}
	if c.DiskFreeLimit == "" {
		c.DiskFreeLimit = DefaultDiskFreeLimit
	}
	if c.AlarmInterval == 0 {
		c.AlarmInterval = time.Second
	}
	if c.MaxConsumers == 0 {
		c.MaxConsumers = 10_000
	}
	if c.MaxQueues == 0 {
		c.MaxQueues = 1_000_000
	}
	if c.ConsumerTimeout == 0 {
		c.ConsumerTimeout = 30 * time.Minute
	}
	if c.CongestionLimit == 0 {
		c.CongestionLimit = DefaultCongestionLimit
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 16 << 20
	}
	if c.CertLoginFrom == "" {
		c.CertLoginFrom = "common_name"
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = defaultMaxConnections()
	}
	if c.DefaultUser == "" {
		c.DefaultUser, c.DefaultPass = "guest", "guest"
	}
}

// Server is a running broker: its store, vhosts, users and connections.
type Server struct {
	cfg   Config
	log   zerolog.Logger
	store *store.Store
	lock  *os.File

	mu     sync.Mutex // guards vhosts, users, perms, conns
	vhosts map[string]*vhost
	users  map[string]*user
	conns  map[*conn]struct{}

	queueCount atomic.Int64 // queues of every vhost, bounded by MaxQueues

	// replies maps direct reply-to names to their channels (replyto.go).
	replies sync.Map

	alarm      alarms
	alarmed    atomic.Bool // some resource alarm is active: block publishers
	stopAlarms chan struct{}
	gc         *gcTuner

	lns     []net.Listener
	started time.Time
	totals  totals
	closing atomic.Bool
	connWG  sync.WaitGroup
	connSeq atomic.Uint64
}

// ErrLocked reports that another broker holds the data directory.
var ErrLocked = errors.New("broker: data directory is in use by another warren process")

// New opens (or creates) the data directory, recovers the store and loads the
// definitions. It does not listen yet: see Serve and ListenAndServe.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: create data dir: %w", err)
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		lock:   lock,
		vhosts: make(map[string]*vhost),
		users:  make(map[string]*user),
		conns:  make(map[*conn]struct{}),
	}
	s.alarm.cleared = make(chan struct{})
	if err := s.SetMemoryHighWatermark(cfg.MemoryHighWatermark); err != nil {
		lock.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := s.SetDiskFreeLimit(cfg.DiskFreeLimit); err != nil {
		lock.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	start := time.Now()
	s.started = start
	st, err := store.Open(store.Options{
		Dir:            cfg.DataDir,
		SegmentSize:    cfg.SegmentSize,
		MaxOpenFiles:   cfg.MaxOpenFiles,
		CommitInterval: cfg.CommitInterval,
		SyncWorkers:    cfg.SyncWorkers,
		LargeHold:      cfg.LargeHold,
		BallastSize:    cfg.BallastSize,
		Repair:         cfg.Repair,
		FS:             cfg.FS,
		Logger:         cfg.Logger,
		// Ack and delivery state must survive a kill -9, or acked messages
		// return and redelivered flags are lost: pebble keeps unsynced WAL
		// writes in its own buffer.
		SyncIndex: true,
	})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("broker: open store: %w", err)
	}
	s.store = st
	if err := s.loadDefinitions(); err != nil {
		st.Close()
		lock.Close()
		return nil, err
	}
	if err := s.settleUnclaimed(); err != nil {
		st.Close()
		lock.Close()
		return nil, err
	}
	s.log.Info().Str("data_dir", cfg.DataDir).Int("vhosts", len(s.vhosts)).
		Dur("recovery", time.Since(start)).Msg("storage recovered")
	s.stopAlarms = make(chan struct{})
	s.gc = newGCTuner(cfg.GCHeadroom)
	go s.alarmLoop()
	if s.cfg.ConsumerTimeout > 0 {
		go s.consumerTimeoutLoop()
	}
	go s.retentionLoop()
	return s, nil
}

// settleUnclaimed deals with the logs of durable queues the index has no
// definition for. A queue.delete (or a failed declaration) interrupted by
// a crash leaves one: the definition goes first, with a deletion mark in
// the same batch, and the mark goes with the log's state. A log with the
// mark, or without messages, is removed now, finishing the delete. A log
// that holds messages and has no mark is data the broker cannot account
// for: every such log is logged at error level with its count, and New
// refuses to start (store.ErrNeedsRepair) unless --repair asks to put the
// queues' definitions back from their segments.
func (s *Server) settleUnclaimed() error {
	idx := s.store.Index()
	var unknown []store.Recovered
	messages := 0
	levelsOf, failed := make(map[string]bool), make(map[string]bool)
	for _, r := range s.store.Unclaimed() {
		marked, err := idx.Deleting(r.ID)
		if err == nil && !marked && r.Def.ID != "" && r.Def.ID != r.ID {
			marked, err = idx.Deleting(r.Def.ID) // a priority level's queue
		}
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		if !marked && r.Ready > 0 {
			s.log.Error().Str("id", r.ID).Str("vhost", r.Def.VHost).Str("queue", r.Def.Name).Int("messages", r.Ready).
				Msg("a queue log holds messages but the index has no definition for it, and no record of its deletion")
			unknown = append(unknown, r)
			messages += r.Ready
			continue
		}
		s.log.Info().Str("id", r.ID).Str("vhost", r.Def.VHost).Str("queue", r.Def.Name).Int("messages", r.Ready).
			Msg("removing the log of a queue deleted before the restart")
		if err := s.store.DeleteQueue(r.ID); err != nil {
			s.log.Error().Err(err).Str("id", r.ID).Msg("cannot remove the log of a deleted queue")
			failed[r.Def.ID] = true
		} else if r.Def.ID != "" && r.Def.ID != r.ID {
			levelsOf[r.Def.ID] = true
		}
	}
	for id := range levelsOf {
		// A priority queue's mark is keyed by its ID, which no log has.
		if !failed[id] {
			if err := idx.ClearDeleting(id); err != nil {
				s.log.Error().Err(err).Str("id", id).Msg("cannot clear the deletion mark of a deleted queue")
			}
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	if !s.cfg.Repair {
		names := make([]string, 0, min(len(unknown), 5))
		for _, r := range unknown[:min(len(unknown), 5)] {
			names = append(names, fmt.Sprintf("'%s' in vhost '%s' (%s)", r.Def.Name, r.Def.VHost, r.ID))
		}
		return fmt.Errorf("broker: %w: %d queue logs hold %d messages but have no definition: %s",
			store.ErrNeedsRepair, len(unknown), messages, strings.Join(names, ", "))
	}
	restored := make(map[string]bool)
	for _, r := range unknown {
		if r.Def.ID != "" && restored[r.Def.ID] {
			continue // another level of a priority queue put back already
		}
		def, err := s.store.RestoreQueue(r.ID)
		if err != nil {
			return fmt.Errorf("broker: repair: %w", err)
		}
		restored[def.ID] = true
		if err := s.openRestored(def); err != nil {
			return err
		}
	}
	s.log.Warn().Int("queues", len(restored)).Int("messages", messages).
		Msg("repair: put back the definitions of queues whose logs had none")
	return nil
}

// openRestored opens a queue whose definition a repair put back, in its
// vhost (recreated when the repair recreated it).
func (s *Server) openRestored(def index.Queue) error {
	vh := s.vhosts[def.VHost]
	if vh == nil {
		vh = newVHost(s, def.VHost)
		s.vhosts[def.VHost] = vh
		return vh.load() // the index holds the definition now
	}
	vh.mu.Lock()
	defer vh.mu.Unlock()
	if q := vh.queues[def.Name]; q != nil && q.id == def.ID {
		return nil // loaded with its vhost above
	}
	if err := vh.loadQueueLocked(def); err != nil {
		return err
	}
	q := vh.queues[def.Name]
	vh.qmap.setLocked(def.Name, q)
	q.startLoaded()
	return nil
}

// defaultMaxOpenFiles is the store's bound on open segment files: 1024, or
// an eighth of the descriptor limit when that is smaller (the index gets
// up to a quarter of it more), so the store stays inside the quarter of the
// limit that defaultMaxConnections leaves it.
func defaultMaxOpenFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return store.DefaultMaxOpenFiles
	}
	return int(min(uint64(store.DefaultMaxOpenFiles), max(32, rl.Cur/8)))
}

// defaultMaxConnections leaves a quarter of the descriptor limit (at most
// 4096) to the store, the index and the listeners.
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return -1
	}
	n := int(rl.Cur)
	return max(n-min(n/4, 4096), 1)
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("broker: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s (%v)", ErrLocked, dir, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// ListenAndServe listens on the configured AMQP address (and the AMQPS
// one, when set) and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.AMQPListen)
	if err != nil {
		return fmt.Errorf("broker: listen: %w", err)
	}
	if s.cfg.AMQPSListen != "" {
		if s.cfg.TLS == nil {
			ln.Close()
			return errors.New("broker: an AMQPS listener needs a TLS certificate and key")
		}
		tln, err := net.Listen("tcp", s.cfg.AMQPSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("broker: listen: %w", err)
		}
		errc := make(chan error, 1)
		go func() { errc <- s.Serve(tls.NewListener(tln, s.cfg.TLS)) }()
		err = s.Serve(ln)
		if terr := <-errc; err == nil {
			err = terr
		}
		return err
	}
	return s.Serve(ln)
}

// Serve accepts AMQP connections on ln until Shutdown; a listener from
// tls.NewListener serves AMQPS. Accept errors (out of file descriptors, a
// network hiccup) never stop it: it logs them and retries after a growing
// pause, as net/http does. Beyond MaxConnections a new connection is
// closed at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("accepting AMQP connections")
	var delay time.Duration
	var refused refusalLog
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay = min(2*delay, time.Second)
			}
			s.log.Error().Err(err).Dur("retry_in", delay).Msg("accept failed; retrying")
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		if max := s.cfg.MaxConnections; max > 0 && len(s.conns) >= max {
			s.mu.Unlock()
			nc.Close()
			refused.note(s.log, nc.RemoteAddr(), max)
			continue
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// refusalLog logs connections refused at the connection limit, at most one
// line a second with the count since the last line.
type refusalLog struct {
	last  time.Time
	count int
}

func (r *refusalLog) note(log zerolog.Logger, peer net.Addr, max int) {
	r.count++
	if now := time.Now(); now.Sub(r.last) >= time.Second {
		log.Warn().Str("peer", peer.String()).Int("max_connections", max).Int("refused", r.count).
			Msg("connection refused: connection limit reached")
		r.last, r.count = now, 0
	}
}

// Addr is the address the server accepts on, once Serve runs.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lns) == 0 {
		return nil
	}
	return s.lns[0].Addr()
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// Shutdown stops accepting, closes every connection with 320
// CONNECTION_FORCED, finishes the store's sync round and releases the data
// directory.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stopAlarms)
	s.mu.Lock()
	for _, ln := range s.lns {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.forceClose("broker forced connection closure with reason 'shutdown'")
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn().Msg("connections did not close in time; closing sockets")
		for _, c := range conns {
			c.nc.Close()
		}
		<-done
	}
	s.mu.Lock()
	for _, vh := range s.vhosts {
		for _, q := range vh.sortedQueues() {
			q.mu.Lock()
			q.stopTimersLocked()
			q.mu.Unlock()
		}
	}
	s.mu.Unlock()
	err := s.store.Close()
	s.lock.Close()
	s.log.Info().Msg("broker stopped")
	return err
}

// Store gives tests and tools access to the message store.
func (s *Server) Store() *store.Store { return s.store }
