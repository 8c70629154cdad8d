package broker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
)

// Version is the broker version advertised to clients.
const Version = "0.1.0"

// DefaultCongestionLimit is how many encoded bytes may wait for the socket
// before queues stop delivering to the connection (a slow consumer must not
// grow RAM); past twice as many the reader stops reading the client.
const DefaultCongestionLimit = 4 << 20

// conn is one AMQP connection. Its reader goroutine (serve) parses frames and
// runs the channel state machines; its writer goroutine alone writes the
// socket, flushing everything queued in c.out in one write when it wakes.
//
// Lock order: vhost.mu -> queue.mu -> store and log locks -> channel.umu ->
// channel.cmu -> conn.wmu (see docs/architecture.md).
type conn struct {
	s  *Server
	nc net.Conn
	br *bufio.Reader // c.small, or a large reader while busy
	// Read-buffer sizing (see adaptReadBuffer), reader-owned.
	src          io.Reader
	small        *bufio.Reader
	consumedMark uint64
	busyAt       time.Time
	quietReads   int
	// arenasReleased counts the bytes of publish arenas the reader let go
	// (read by tests; the arenas themselves are reader-owned).
	arenasReleased atomic.Int64
	fr             *amqpwire.FrameReader
	dec            amqpwire.MethodDecoder
	log            zerolog.Logger
	id             uint64

	frameMax   uint32
	channelMax uint16
	heartbeat  time.Duration
	user       *user
	vh         *vhost
	perm       *permSlot // the user's permission in vh
	userName   string
	// impersonator: the user's tags allow publishing with any user-id
	// property (RabbitMQ's impersonator tag), as of connection.open.
	impersonator bool

	capCancelNotify bool
	capAuthClose    bool
	capBlocked      bool // wants connection.blocked and .unblocked
	// mustBlock is set by a publish during a resource alarm: the reader
	// stops reading once it has handled the frame.
	mustBlock bool

	// What the management API shows. name and connectedAt are set at
	// accept; the others by the handshake, before opened is set.
	name        string // "peer -> local", as RabbitMQ names connections
	connectedAt time.Time
	clientProps amqpwire.Table
	mechanism   string
	opened      atomic.Bool
	recvOct     atomic.Uint64
	sendOct     atomic.Uint64

	channels []*channel // by id, reader-owned
	dirty    []*channel // channels with a pending publish/ack batch

	closeSent atomic.Bool // connection.close sent, waiting for close-ok
	ownedMu   sync.Mutex
	owned     map[*queue]struct{} // exclusive queues of this connection
	live      map[*channel]struct{}

	wmu sync.Mutex // guards out, refs, refBytes and wclosed
	out []byte
	// refs are large delivery bodies the writer sends from where they are
	// (the log's memory, segment.Record.Stable) between the bytes of out,
	// without copying them into it; refBytes is their total size.
	refs     []outRef
	refBytes int
	refFn    func(at int, part []byte) // addRefLocked, bound once
	wclosed  bool
	// stalled is set when out passes the congestion limit or the writer is gone;
	// queues read it without the lock before picking a consumer.
	stalled atomic.Bool
	// backlogged is set when out passes twice the congestion limit; the reader waits
	// on drained until the writer takes the buffer.
	backlogged atomic.Bool
	drained    chan struct{}
	wsig       chan struct{}
	wdone      chan struct{}
	writerEnd  chan struct{}
	wrote      atomic.Bool // writer wrote since the last heartbeat tick
	// lastRead is when the reader last got bytes from the socket (unix
	// ns), so the writer can tell a slow reader from a dead peer.
	lastRead atomic.Int64
	writeErr atomic.Pointer[error] // why the writer gave up

	// unacked counts the connection's deliveries awaiting an ack, bounded
	// by Config.MaxUnacked; unackedCapped is set when that bound withheld
	// a delivery, so that the next ack resumes every consumed queue.
	unacked       atomic.Int64
	unackedCapped atomic.Bool
	// consumers counts the connection's consumers, bounded by
	// Config.MaxConsumers.
	consumers atomic.Int64
	// txBytes is the size of the uncommitted transactions of every channel
	// (reader-owned), bounded by Config.MaxTxBytes.
	txBytes int
}

func newConn(s *Server, nc net.Conn) *conn {
	id := s.connSeq.Add(1)
	c := &conn{
		s:           s,
		nc:          nc,
		id:          id,
		name:        nc.RemoteAddr().String() + " -> " + nc.LocalAddr().String(),
		connectedAt: time.Now(),
		frameMax:    s.cfg.FrameMax,
		wsig:        make(chan struct{}, 1),
		drained:     make(chan struct{}, 1),
		wdone:       make(chan struct{}),
		writerEnd:   make(chan struct{}),
		owned:       make(map[*queue]struct{}),
		live:        make(map[*channel]struct{}),
	}
	c.src = &socketReader{c: c, r: nc}
	c.refFn = c.addRefLocked
	c.small = bufio.NewReaderSize(c.src, smallReadBuf)
	c.br = c.small
	c.log = s.log.With().Uint64("conn", id).Str("peer", nc.RemoteAddr().String()).Logger()
	return c
}

func (c *conn) serve() {
	defer c.s.removeConn(c)
	start := time.Now()
	c.log.Debug().Msg("connection accepted")
	c.fr = amqpwire.NewFrameReader(c.br, amqpwire.FrameMinSize)
	c.fr.BodySink = c.bodySink
	if err := c.handshake(); err != nil {
		if !errors.Is(err, errCloseConn) {
			c.log.Info().Err(err).Msg("handshake failed")
		}
		c.nc.Close()
		return
	}
	c.opened.Store(true)
	c.log.Info().Str("user", c.userName).Str("vhost", c.vh.name).Msg("connection opened")
	go c.writeLoop()
	err := c.readLoop()
	c.teardown()
	c.releaseReadBuffer()
	switch {
	case err == nil || errors.Is(err, errCloseConn):
		c.log.Info().Dur("duration", time.Since(start)).Msg("connection closed")
	case c.writeErr.Load() != nil:
		c.log.Warn().Err(*c.writeErr.Load()).Dur("duration", time.Since(start)).Msg("connection closed: the peer does not read")
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		c.log.Info().Dur("duration", time.Since(start)).Msg("connection closed by peer without close")
	default:
		c.log.Warn().Err(err).Dur("duration", time.Since(start)).Msg("connection closed on error")
	}
}

// writeDirect writes during the handshake, before the writer goroutine runs.
func (c *conn) writeDirect(m amqpwire.Method) error {
	_, err := c.nc.Write(amqpwire.AppendMethodFrame(nil, 0, m))
	return err
}

func (c *conn) readMethod0() (amqpwire.Method, error) {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	if f.Type == amqpwire.FrameHeartbeat {
		return c.readMethod0()
	}
	if f.Type != amqpwire.FrameMethod || f.Channel != 0 {
		return nil, amqpErr(amqpwire.UnexpectedFrame, nil, "expected a method frame on channel 0 during the handshake")
	}
	return amqpwire.DecodeMethod(f.Payload)
}

func (c *conn) handshake() error {
	cfg := &c.s.cfg
	c.nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if err := amqpwire.ReadProtocolHeader(c.br); err != nil {
		io.WriteString(c.nc, amqpwire.ProtocolHeader)
		return fmt.Errorf("bad protocol header: %w", err)
	}
	start := &amqpwire.ConnectionStart{
		VersionMajor: 0,
		VersionMinor: 9,
		ServerProperties: amqpwire.Table{
			"product":      "Warren",
			"version":      Version,
			"platform":     "Go",
			"copyright":    "Warren contributors",
			"information":  "Licensed under the Apache License 2.0",
			"cluster_name": "warren@" + hostname(),
			"capabilities": amqpwire.Table{
				"publisher_confirms":           true,
				"exchange_exchange_bindings":   true,
				"basic.nack":                   true,
				"consumer_cancel_notify":       true,
				"connection.blocked":           true,
				"consumer_priorities":          true,
				"authentication_failure_close": true,
				"per_consumer_qos":             true,
			},
		},
		Mechanisms: "PLAIN AMQPLAIN",
		Locales:    "en_US",
	}
	certName := c.peerCertName() // the TLS handshake ran with the header read
	if certName != "" {
		start.Mechanisms = "EXTERNAL PLAIN AMQPLAIN"
	}
	if err := c.writeDirect(start); err != nil {
		return err
	}
	m, err := c.readMethod0()
	if err != nil {
		return err
	}
	so, ok := m.(*amqpwire.ConnectionStartOk)
	if !ok {
		return c.handshakeFail(amqpErr(amqpwire.CommandInvalid, m, "expected 'connection.start_ok', got '%s'", m.Name()))
	}
	c.clientProps, c.mechanism = so.ClientProperties, so.Mechanism
	if caps, ok := so.ClientProperties["capabilities"].(amqpwire.Table); ok {
		c.capCancelNotify, _ = caps["consumer_cancel_notify"].(bool)
		c.capAuthClose, _ = caps["authentication_failure_close"].(bool)
		c.capBlocked, _ = caps["connection.blocked"].(bool)
	}
	var name, pass string
	external := so.Mechanism == "EXTERNAL" && certName != ""
	switch {
	case external:
		// The verified client certificate names the user; the user must
		// exist, and needs no password.
		name, ok = certName, true
	case so.Mechanism == "PLAIN" || so.Mechanism == "AMQPLAIN":
		name, pass, ok = parseCredentials(so.Mechanism, []byte(so.Response))
	default:
		return c.handshakeFail(amqpErr(amqpwire.CommandInvalid, so, "unknown authentication mechanism '%s'", so.Mechanism))
	}
	var u *user
	if ok {
		if external {
			u = c.s.lookupUser(name)
		} else {
			u = c.s.authenticate(name, pass)
		}
	}
	switch {
	case u == nil:
		c.log.Warn().Str("user", name).Str("mechanism", so.Mechanism).Msg("authentication failed: invalid credentials")
		return c.authFail(so)
	case name == "guest" && !isLoopback(c.nc.RemoteAddr()):
		c.log.Warn().Str("user", name).Msg("authentication failed: user 'guest' can only connect via localhost")
		return c.authFail(so)
	}
	c.user, c.userName = u, name
	c.impersonator = slices.Contains(u.def.Tags, "impersonator")

	tune := &amqpwire.ConnectionTune{
		ChannelMax: cfg.ChannelMax,
		FrameMax:   cfg.FrameMax,
		Heartbeat:  uint16(cfg.Heartbeat / time.Second),
	}
	if err := c.writeDirect(tune); err != nil {
		return err
	}
	if m, err = c.readMethod0(); err != nil {
		return err
	}
	to, ok := m.(*amqpwire.ConnectionTuneOk)
	if !ok {
		return c.handshakeFail(amqpErr(amqpwire.CommandInvalid, m, "expected 'connection.tune_ok', got '%s'", m.Name()))
	}
	c.channelMax = cfg.ChannelMax
	if to.ChannelMax != 0 && to.ChannelMax < c.channelMax {
		c.channelMax = to.ChannelMax
	}
	switch {
	case to.FrameMax != 0 && to.FrameMax < amqpwire.FrameMinSize:
		return c.handshakeFail(amqpErr(amqpwire.NotAllowed, to, "frame_max=%d < %d min size", to.FrameMax, amqpwire.FrameMinSize))
	case to.FrameMax > cfg.FrameMax:
		return c.handshakeFail(amqpErr(amqpwire.NotAllowed, to, "frame_max=%d > %d max size", to.FrameMax, cfg.FrameMax))
	case to.FrameMax != 0:
		c.frameMax = to.FrameMax
	}
	c.heartbeat = time.Duration(to.Heartbeat) * time.Second
	c.fr.SetFrameMax(c.frameMax)
	c.channels = make([]*channel, 2) // grown to the highest channel opened

	if m, err = c.readMethod0(); err != nil {
		return err
	}
	op, ok := m.(*amqpwire.ConnectionOpen)
	if !ok {
		return c.handshakeFail(amqpErr(amqpwire.CommandInvalid, m, "expected 'connection.open', got '%s'", m.Name()))
	}
	vh := c.s.lookupVHost(op.VirtualHost)
	if vh == nil {
		c.log.Warn().Str("vhost", op.VirtualHost).Msg("connection refused: vhost not found")
		return c.handshakeFail(amqpErr(amqpwire.NotAllowed, op, "vhost %s not found", op.VirtualHost))
	}
	perm := c.s.permission(u, vh.name)
	if perm == nil {
		c.log.Warn().Str("vhost", op.VirtualHost).Str("user", name).Msg("connection refused: no access to vhost")
		return c.handshakeFail(amqpErr(amqpwire.NotAllowed, op, "access to vhost '%s' refused for user '%s'", op.VirtualHost, name))
	}
	c.vh, c.perm = vh, perm
	if err := c.writeDirect(&amqpwire.ConnectionOpenOk{}); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	return nil
}

func (c *conn) authFail(so *amqpwire.ConnectionStartOk) error {
	e := amqpErr(amqpwire.AccessRefused, nil, "Login was refused using authentication mechanism %s. For details see the broker logfile.", so.Mechanism)
	if !c.capAuthClose {
		return errCloseConn
	}
	return c.handshakeFail(e)
}

// handshakeFail sends connection.close and waits briefly for close-ok.
func (c *conn) handshakeFail(e *amqpwire.Error) error {
	c.log.Warn().Uint16("code", e.Code).Str("text", e.Text).Msg("connection error during handshake")
	c.writeDirect(&amqpwire.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text, FailedClassID: e.ClassID, FailedMethodID: e.MethodID})
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		m, err := c.readMethod0()
		if err != nil {
			return errCloseConn
		}
		if _, ok := m.(*amqpwire.ConnectionCloseOk); ok {
			return errCloseConn
		}
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

// Read buffers: a connection starts with a small one and takes a large
// one from a pool while it is busy (a socket read that filled most of the
// small buffer), then gives it back once it is quiet (a small read after
// a second without a large one, or 64 small reads in a row). An idle
// connection so holds 4 KiB, a busy one reads 64 KiB per system call.
const (
	smallReadBuf = 4 << 10
	bigReadBuf   = 64 << 10
)

var bigReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bigReadBuf) }}

// adaptReadBuffer runs when the read buffer is empty: it looks at how many
// bytes the reads since the last call brought and swaps the buffer.
func (c *conn) adaptReadBuffer(now time.Time) {
	total := c.fr.Consumed()
	n := total - c.consumedMark
	c.consumedMark = total
	if n <= heartbeatFrameSize && c.br == c.small {
		// A heartbeat or nothing since the last read: the peer is idle,
		// so even the small arenas of its publishing channels go (one
		// allocation at its next publish).
		c.releaseArenas(0)
		return
	}
	if c.br == c.small {
		if n >= smallReadBuf*3/4 {
			br := bigReaders.Get().(*bufio.Reader)
			br.Reset(c.src)
			c.br = br
			c.fr.Reset(br)
			c.busyAt, c.quietReads = now, 0
		}
		return
	}
	if n >= smallReadBuf/2 {
		c.busyAt, c.quietReads = now, 0
		return
	}
	c.quietReads++
	if c.quietReads < 64 && now.Sub(c.busyAt) < time.Second {
		return
	}
	c.releaseReadBuffer()
	c.releaseArenas(64 << 10)
}

// heartbeatFrameSize is the size of a heartbeat frame on the wire.
const heartbeatFrameSize = 8

// releaseArenas drops the publish arenas larger than over bytes of the
// connection's idle channels, and tells the store what went.
func (c *conn) releaseArenas(over int) {
	released := 0
	for _, ch := range c.channels {
		if ch != nil {
			released += ch.shrinkArena(over)
		}
	}
	if released > 0 {
		c.arenasReleased.Add(int64(released))
		c.s.store.NoteReleased(released)
	}
}

// releaseReadBuffer gives the large read buffer back to the pool; the
// small one takes over. The buffer must hold no unread bytes.
func (c *conn) releaseReadBuffer() {
	if c.br == c.small {
		return
	}
	big := c.br
	c.small.Reset(c.src)
	c.br = c.small
	c.fr.Reset(c.small)
	big.Reset(nil)
	bigReaders.Put(big)
}

// socketReader is what the connection's read buffer reads from. It counts
// the bytes, notes when the peer last sent something (for the writer, to
// tell a slow reader from a dead peer) and, while readLoop runs with a
// heartbeat, re-arms the read deadline before each read that reaches the
// socket, at most once a second. Arming it here, where the socket is read,
// and not where frames are parsed, keeps it right whatever the buffer
// holds: after the reader was blocked (an alarm, a backlogged writer) a
// partial frame may wait in the buffer while the deadline set before the
// block has long passed.
type socketReader struct {
	c     *conn
	r     io.Reader
	arm   bool // set by readLoop; off while draining before a close
	armed time.Time
}

func (s *socketReader) Read(p []byte) (int, error) {
	c := s.c
	if s.arm && c.heartbeat > 0 {
		if now := time.Now(); now.Sub(s.armed) > time.Second {
			c.nc.SetReadDeadline(now.Add(2 * c.heartbeat))
			s.armed = now
		}
	}
	n, err := s.r.Read(p)
	if n > 0 {
		c.recvOct.Add(uint64(n))
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// armHeartbeat turns the heartbeat deadline of socketReader on or off (a
// close sets its own deadline).
func (c *conn) armHeartbeat(on bool) {
	if s, ok := c.src.(*socketReader); ok {
		s.arm, s.armed = on, time.Time{}
	}
}

// readLoop reads and dispatches frames until the connection ends.
func (c *conn) readLoop() error {
	c.armHeartbeat(true)
	c.lastRead.Store(time.Now().UnixNano())
	for {
		c.waitWriter()
		if c.br.Buffered() == 0 {
			// A read will reach the socket: size the read buffer to the
			// traffic.
			c.adaptReadBuffer(time.Now())
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if c.closeSent.Load() {
					return errCloseConn
				}
				c.log.Warn().Dur("heartbeat", c.heartbeat).Msg("missed heartbeats from client, timeout")
				return err
			}
			var ae *amqpwire.Error
			if errors.As(err, &ae) {
				c.connectionError(ae)
				return c.drainUntilCloseOk()
			}
			if c.closeSent.Load() {
				return errCloseConn
			}
			return err
		}
		if err := c.handleFrame(f); err != nil {
			if errors.Is(err, errCloseConn) {
				return nil
			}
			ae := asAMQPError(err, nil)
			if !ae.Hard() {
				// Soft errors are handled by the channel; anything reaching here is hard.
				ae = &amqpwire.Error{Code: amqpwire.InternalError, Text: ae.Text, ClassID: ae.ClassID, MethodID: ae.MethodID}
			}
			c.connectionError(ae)
			return c.drainUntilCloseOk()
		}
		if c.mustBlock {
			c.mustBlock = false
			c.blockWhileAlarmed()
		}
		if c.br.Buffered() == 0 {
			c.flushDirty()
		}
	}
}

// connectionError logs a hard error and sends connection.close.
func (c *conn) connectionError(e *amqpwire.Error) {
	c.flushDirty()
	c.log.Warn().Uint16("code", e.Code).Str("text", e.Text).Uint16("class", e.ClassID).Uint16("method", e.MethodID).Msg("connection error")
	c.closeSent.Store(true)
	c.sendMethod(0, &amqpwire.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text, FailedClassID: e.ClassID, FailedMethodID: e.MethodID})
}

// drainUntilCloseOk discards frames until the peer answers close-ok, as the
// spec asks, for at most a few seconds.
func (c *conn) drainUntilCloseOk() error {
	c.armHeartbeat(false)
	c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return errCloseConn
		}
		if f.Type != amqpwire.FrameMethod || f.Channel != 0 {
			continue
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			continue
		}
		switch m.(type) {
		case *amqpwire.ConnectionCloseOk:
			return errCloseConn
		case *amqpwire.ConnectionClose:
			c.sendMethod(0, &amqpwire.ConnectionCloseOk{})
			return errCloseConn
		}
	}
}

// forceClose asks the client to close (shutdown); the socket is closed after
// a grace period whatever the client does.
func (c *conn) forceClose(reason string) {
	c.closeSent.Store(true)
	c.sendMethod(0, &amqpwire.ConnectionClose{ReplyCode: amqpwire.ConnectionForced, ReplyText: "CONNECTION_FORCED - " + reason})
	time.AfterFunc(3*time.Second, func() { c.nc.Close() })
}

// bodySink gives the frame reader the free part of the body buffer of a
// large message being published on channel id, when the frame fits in it,
// so that the socket is read straight into the buffer the queues' logs
// keep (see channel.handleBody).
func (c *conn) bodySink(id uint16, size int) []byte {
	if int(id) >= len(c.channels) || c.closeSent.Load() {
		return nil
	}
	ch := c.channels[id]
	if ch == nil || ch.closing {
		return nil
	}
	p := &ch.pub
	if !p.active || !p.header || p.large == nil || cap(p.large)-len(p.large) < size {
		return nil
	}
	return p.large[len(p.large):cap(p.large)]
}

func (c *conn) handleFrame(f amqpwire.Frame) error {
	if f.Type == amqpwire.FrameHeartbeat {
		if f.Channel != 0 {
			return amqpErr(amqpwire.FrameError, nil, "heartbeat frame on channel %d", f.Channel)
		}
		return nil
	}
	if f.Channel == 0 {
		if f.Type != amqpwire.FrameMethod {
			return amqpErr(amqpwire.UnexpectedFrame, nil, "expected method frame on channel 0, got frame type %d", f.Type)
		}
		m, err := c.dec.Decode(f.Payload)
		if err != nil {
			return err
		}
		return c.handleConnMethod(m)
	}
	if c.closeSent.Load() {
		return nil // after connection.close only close-ok matters
	}
	if int(f.Channel) > int(c.channelMax) {
		return amqpErr(amqpwire.ChannelError, nil, "channel %d exceeds channel_max %d", f.Channel, c.channelMax)
	}
	var ch *channel
	if int(f.Channel) < len(c.channels) {
		ch = c.channels[f.Channel]
	}
	if ch == nil {
		if f.Type != amqpwire.FrameMethod {
			return amqpErr(amqpwire.ChannelError, nil, "expected 'channel.open' on channel %d", f.Channel)
		}
		m, err := c.dec.Decode(f.Payload)
		if err != nil {
			return err
		}
		if _, ok := m.(*amqpwire.ChannelOpen); !ok {
			return amqpErr(amqpwire.ChannelError, m, "expected 'channel.open' on channel %d, got '%s'", f.Channel, m.Name())
		}
		if int(f.Channel) >= len(c.channels) {
			c.channels = append(c.channels, make([]*channel, int(f.Channel)+1-len(c.channels))...)
		}
		c.channels[f.Channel] = newChannel(c, f.Channel)
		c.sendMethod(f.Channel, &amqpwire.ChannelOpenOk{})
		return nil
	}
	return ch.handleFrame(f)
}

func (c *conn) handleConnMethod(m amqpwire.Method) error {
	switch m := m.(type) {
	case *amqpwire.ConnectionClose:
		c.log.Debug().Uint16("code", m.ReplyCode).Str("text", m.ReplyText).Msg("client closed connection")
		c.flushDirty()
		c.sendMethod(0, &amqpwire.ConnectionCloseOk{})
		return errCloseConn
	case *amqpwire.ConnectionCloseOk:
		if c.closeSent.Load() {
			return errCloseConn
		}
		return amqpErr(amqpwire.CommandInvalid, m, "unexpected 'connection.close_ok'")
	case *amqpwire.ConnectionBlocked, *amqpwire.ConnectionUnblocked:
		return nil
	case *amqpwire.ConnectionUpdateSecret:
		c.sendMethod(0, &amqpwire.ConnectionUpdateSecretOk{})
		return nil
	}
	if c.closeSent.Load() {
		return nil
	}
	if m.ClassID() == amqpwire.ClassConnection {
		return amqpErr(amqpwire.CommandInvalid, m, "unexpected '%s' after the handshake", m.Name())
	}
	return amqpErr(amqpwire.CommandInvalid, m, "'%s' sent on channel 0", m.Name())
}

// flushDirty hands every channel's batched publishes and acks to the queues.
func (c *conn) flushDirty() {
	for _, ch := range c.dirty {
		ch.flush()
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

func (c *conn) markDirty(ch *channel) {
	if !ch.dirty {
		ch.dirty = true
		c.dirty = append(c.dirty, ch)
	}
}

// sendMethod queues one method frame for the writer. Replies count
// towards the congestion limit: a client that pipelines methods (or
// publishes with confirms) and never reads the answers stops being read.
func (c *conn) sendMethod(ch uint16, m amqpwire.Method) {
	c.wmu.Lock()
	wake := false
	if !c.wclosed {
		wake = len(c.out) == 0 // a non-empty buffer has a wake-up pending
		c.out = amqpwire.AppendMethodFrame(c.out, ch, m)
		c.noteCongestionLocked(false)
	}
	c.wmu.Unlock()
	if wake {
		c.signal()
	}
}

// sendContent queues a method with content (basic.get-ok, basic.return)
// for the writer. Deliveries encode in queue.sendLocked instead, reusing
// one method struct per queue.
func (c *conn) sendContent(ch uint16, m amqpwire.Method, props, body []byte) {
	c.wmu.Lock()
	wake := false
	if !c.wclosed {
		wake = len(c.out) == 0
		c.out = amqpwire.AppendMethodFrame(c.out, ch, m)
		c.out = amqpwire.AppendContentFrames(c.out, ch, amqpwire.ClassBasic, uint64(len(body)), props, body, c.frameMax)
		c.noteCongestionLocked(false)
	}
	c.wmu.Unlock()
	if wake {
		c.signal()
	}
}

// outRef is a body part the writer sends after out[:at].
type outRef struct {
	at   int
	data []byte
}

// refBody is the body size from which a delivery of a Stable record is
// sent from the log's memory instead of copied into the output buffer.
const refBody = segment.LargeBody

// addRefLocked records a body part for the writer (AppendContentFramesRef).
func (c *conn) addRefLocked(at int, part []byte) {
	c.refs = append(c.refs, outRef{at, part})
	c.refBytes += len(part)
}

// signal wakes the writer.
func (c *conn) signal() {
	select {
	case c.wsig <- struct{}{}:
	default:
	}
}

// noteCongestionLocked marks the connection stalled when the writer is too
// far behind: queues stop delivering to it. Past twice the limit, what the
// client causes itself (replies, returns, get-ok; not delivery) also stops
// the reader reading the client until the writer catches up. Deliveries
// only stall: they are bounded by the stall already (a queue checks it
// before each message), and a slow consumer must go on being read, or its
// heartbeats and acks would not be seen. Called with c.wmu held.
func (c *conn) noteCongestionLocked(delivery bool) {
	if lim, n := c.s.cfg.CongestionLimit, len(c.out)+c.refBytes; n > lim {
		c.stalled.Store(true)
		if !delivery && n > 2*lim {
			c.backlogged.Store(true)
		}
	}
}

// waitWriter blocks the reader while the writer is far behind, so a client
// that does not read what it causes (mandatory returns, replies) cannot
// grow the output buffer without bound.
func (c *conn) waitWriter() {
	if !c.backlogged.Load() {
		return
	}
	c.flushDirty()
	for c.backlogged.Load() {
		select {
		case <-c.drained:
		case <-c.writerEnd:
			return
		}
	}
}

func (c *conn) writeLoop() {
	defer close(c.writerEnd)
	var tick <-chan time.Time
	if c.heartbeat > 0 {
		t := time.NewTicker(c.heartbeat / 2)
		defer t.Stop()
		tick = t.C
	}
	var spare []byte
	var spareRefs []outRef
	var vec net.Buffers
	for {
		stop, ticked := false, false
		select {
		case <-c.wsig:
		case <-tick:
			ticked = true
			if !c.wrote.Swap(false) {
				c.wmu.Lock()
				c.out = amqpwire.AppendHeartbeatFrame(c.out)
				c.wmu.Unlock()
			}
		case <-c.wdone:
			stop = true
		}
		c.wmu.Lock()
		buf, refs, refBytes := c.out, c.refs, c.refBytes
		c.out, c.refs, c.refBytes = spare[:0], spareRefs[:0], 0
		resume := false
		if stop {
			c.wclosed = true
		} else {
			resume = c.stalled.Swap(false)
		}
		if c.backlogged.Swap(false) {
			select {
			case c.drained <- struct{}{}:
			default:
			}
		}
		c.wmu.Unlock()
		if len(buf) > 0 {
			// One write system call (writev) for the buffer and the large
			// bodies it refers to, in order.
			vec = vec[:0]
			at := 0
			for _, r := range refs {
				vec = append(vec, buf[at:r.at], r.data)
				at = r.at
			}
			vec = append(vec, buf[at:])
			w := vec // WriteTo consumes its slice: vec keeps the array
			err := c.writeAll(&w)
			clear(vec) // the bodies are free to go
			clear(refs)
			if err != nil {
				c.writeErr.Store(&err)
				c.nc.Close()
				c.wmu.Lock()
				c.wclosed = true
				c.stalled.Store(true)
				c.out, c.refs, c.refBytes = nil, nil, 0
				c.wmu.Unlock()
				return
			}
			c.wrote.Store(true)
			c.sendOct.Add(uint64(len(buf) + refBytes))
		}
		spareRefs = refs[:0]
		if cap(spareRefs) > 1024 {
			spareRefs = nil
		}
		if cap(buf) > 8<<20 || (ticked && cap(buf) > 64<<10 && len(buf) < cap(buf)/8) {
			// Do not keep a burst's buffer, nor a large one on a
			// connection that went quiet (checked on heartbeat ticks).
			c.s.store.NoteReleased(cap(buf))
			buf = nil
		}
		spare = buf
		if resume {
			c.resumeDelivery()
		}
		if stop {
			return
		}
	}
}

// writeAll writes buf to the socket. A slow reader is not a dead one: each
// write waits up to WriteTimeout, and a write that timed out is retried as
// long as the peer took some of it or is still sending (its heartbeats
// arrive). It fails when the peer neither reads nor sends for that long.
func (c *conn) writeAll(bufs *net.Buffers) error {
	timeout := c.s.cfg.WriteTimeout
	for {
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		n, err := bufs.WriteTo(c.nc)
		if err == nil {
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return fmt.Errorf("write failed: %w", err)
		}
		if n == 0 && time.Since(time.Unix(0, c.lastRead.Load())) > timeout {
			return fmt.Errorf("write stalled: the peer read nothing and sent nothing for %v", timeout)
		}
	}
}

// resumeDelivery asks every queue this connection consumes from to deliver
// again once the writer has caught up.
func (c *conn) resumeDelivery() {
	for _, q := range c.consumedQueues() {
		q.kick()
	}
}

func (c *conn) consumedQueues() []*queue {
	c.ownedMu.Lock()
	chans := make([]*channel, 0, len(c.live))
	for ch := range c.live {
		chans = append(chans, ch)
	}
	c.ownedMu.Unlock()
	var qs []*queue
	for _, ch := range chans {
		qs = append(qs, ch.consumerQueues()...)
	}
	return qs
}

// teardown runs after the reader ends: channels close (unacked messages
// requeued, consumers cancelled), exclusive queues go, the writer drains.
func (c *conn) teardown() {
	c.flushDirty()
	for i, ch := range c.channels {
		if ch != nil {
			ch.teardown()
			c.channels[i] = nil
		}
	}
	c.ownedMu.Lock()
	owned := make([]*queue, 0, len(c.owned))
	for q := range c.owned {
		owned = append(owned, q)
	}
	c.owned = nil
	c.ownedMu.Unlock()
	for _, q := range owned {
		c.vh.deleteQueueLogged(q, "exclusive owner closed")
	}
	close(c.wdone)
	select {
	case <-c.writerEnd:
	case <-time.After(5 * time.Second):
	}
	c.nc.Close()
}
