package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// The fast engine (--client fast) drives producers and consumers over raw
// AMQP connections encoded with amqpwire. Topology setup stays on
// amqp091-go; only the hot path differs from the default engine:
//
//   - writes go into a 64 KiB bufio.Writer and reach the socket when the
//     confirm window is full, before the pacer sleeps, every flushEvery
//     publishes, or, for consumer acks, once per batch of frames read;
//   - a producer's confirms are read by one goroutine that releases window
//     credit per ack frame, not per message;
//   - consumers parse deliveries in place with a FrameReader and record the
//     latency from the first bytes of the body, without allocating.
//
// Counting, progress and results are shared with the default engine.

const (
	// fastBufSize is the write buffer of a fast connection, and the read
	// buffer under its FrameReader.
	fastBufSize = 64 << 10
	// flushEvery bounds the publishes a producer buffers before a write,
	// which bounds the latency buffering adds at high rates.
	flushEvery = 256
	// fastChannel is the one channel a fast connection opens.
	fastChannel = 1
	// headSize is how much of each delivered body a consumer keeps for
	// publishTime: enough for the binary and JSON timestamps.
	headSize = 32
)

// errWire is the cause wrapped when a fast connection breaks protocol.
var errWire = errors.New("unexpected frame")

// wireConn is one raw AMQP connection with channel 1 open.
type wireConn struct {
	uri      string
	nc       net.Conn
	br       *bufio.Reader
	fr       *amqpwire.FrameReader
	bw       *bufio.Writer
	dec      amqpwire.MethodDecoder
	frameMax uint32
	scratch  []byte

	// wmu is held by whoever writes: the producer or consumer loop for
	// its whole run, or close. closed tells the loop that close came first.
	wmu    sync.Mutex
	closed bool
}

// wireAddr returns host:port, credentials and vhost of an amqp:// URI.
func wireAddr(uri string) (addr, user, pass, vhost string, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", "", "", "", err
	}
	if u.Scheme != "amqp" {
		return "", "", "", "", fmt.Errorf("the fast client speaks amqp:// only, not %s://", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "5672"
	}
	user, pass = "guest", "guest"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	vhost = "/"
	if len(u.Path) > 1 {
		vhost = u.Path[1:]
	}
	return net.JoinHostPort(host, port), user, pass, vhost, nil
}

// dialWire connects to uri and runs the handshake up to an open channel 1,
// all within timeout. Errors wrap ErrConnect and name the redacted URI.
func dialWire(uri, name string, timeout time.Duration) (*wireConn, error) {
	fail := func(err error) error {
		return fmt.Errorf("%w to %s: %s", ErrConnect, Redact(uri), oneLine(err))
	}
	addr, user, pass, vhost, err := wireAddr(uri)
	if err != nil {
		return nil, fail(err)
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fail(err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	w := &wireConn{uri: uri, nc: nc}
	w.br = bufio.NewReaderSize(nc, fastBufSize)
	w.fr = amqpwire.NewFrameReader(w.br, 0)
	w.bw = bufio.NewWriterSize(nc, fastBufSize)
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		nc.Close()
		return nil, fail(err)
	}
	if err := w.handshake(name, user, pass, vhost); err != nil {
		nc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no handshake reply within %s", timeout)
		}
		return nil, fail(err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, fail(err)
	}
	return w, nil
}

func (w *wireConn) handshake(name, user, pass, vhost string) error {
	if _, err := w.bw.WriteString(amqpwire.ProtocolHeader); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	m, err := w.readMethod(0, "connection.start")
	if err != nil {
		return err
	}
	start, ok := m.(*amqpwire.ConnectionStart)
	if !ok {
		return fmt.Errorf("%w: %s instead of connection.start", errWire, m.Name())
	}
	if start.VersionMajor != 0 || start.VersionMinor != 9 {
		return fmt.Errorf("%w: server speaks AMQP %d-%d", errWire, start.VersionMajor, start.VersionMinor)
	}
	err = w.send(0, &amqpwire.ConnectionStartOk{
		ClientProperties: amqpwire.Table{
			"product":         "warrenperf",
			"connection_name": name,
			"capabilities": amqpwire.Table{
				"publisher_confirms":           true,
				"basic.nack":                   true,
				"consumer_cancel_notify":       true,
				"authentication_failure_close": true,
				"connection.blocked":           true,
			},
		},
		Mechanism: "PLAIN",
		Response:  "\x00" + user + "\x00" + pass,
		Locale:    "en_US",
	})
	if err != nil {
		return err
	}
	m, err = w.readMethod(0, "connection.tune")
	if err != nil {
		return err
	}
	tune, ok := m.(*amqpwire.ConnectionTune)
	if !ok {
		return fmt.Errorf("%w: %s instead of connection.tune", errWire, m.Name())
	}
	w.frameMax = tune.FrameMax
	readMax := tune.FrameMax
	if readMax == 0 || readMax < amqpwire.DefaultFrameMax {
		// The limit guards our buffer, not the protocol: accept at least
		// the default even if the server asked for less.
		readMax = max(readMax, amqpwire.DefaultFrameMax)
	}
	w.fr.SetFrameMax(readMax)
	if err := w.write(0, &amqpwire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax}); err != nil {
		return err
	}
	if err := w.send(0, &amqpwire.ConnectionOpen{VirtualHost: vhost}); err != nil {
		return err
	}
	if _, err := w.expect(0, "connection.open-ok", func(m amqpwire.Method) bool {
		_, ok := m.(*amqpwire.ConnectionOpenOk)
		return ok
	}); err != nil {
		return err
	}
	if err := w.send(fastChannel, &amqpwire.ChannelOpen{}); err != nil {
		return err
	}
	_, err = w.expect(fastChannel, "channel.open-ok", func(m amqpwire.Method) bool {
		_, ok := m.(*amqpwire.ChannelOpenOk)
		return ok
	})
	return err
}

// write appends a method frame to the write buffer.
func (w *wireConn) write(channel uint16, m amqpwire.Method) error {
	w.scratch = amqpwire.AppendMethodFrame(w.scratch[:0], channel, m)
	_, err := w.bw.Write(w.scratch)
	return err
}

// send writes a method frame and flushes.
func (w *wireConn) send(channel uint16, m amqpwire.Method) error {
	if err := w.write(channel, m); err != nil {
		return err
	}
	return w.bw.Flush()
}

// readMethod reads frames until a method frame, which it returns decoded
// (valid until the next read). A connection.close or channel.close becomes
// an error carrying the broker's reply; heartbeats and content frames are
// skipped. what names the awaited reply for an early end of stream.
func (w *wireConn) readMethod(channel uint16, what string) (amqpwire.Method, error) {
	for {
		f, err := w.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("server closed the connection while %s was awaited (refused credentials or vhost?)", what)
			}
			return nil, err
		}
		if f.Type != amqpwire.FrameMethod {
			continue
		}
		m, err := w.dec.Decode(f.Payload)
		if err != nil {
			return nil, err
		}
		if err := closeReason(m); err != nil {
			return nil, err
		}
		if f.Channel == channel {
			return m, nil
		}
	}
}

// expect reads the reply of a synchronous method: the first method on
// channel that ok accepts, skipping asynchronous ones.
func (w *wireConn) expect(channel uint16, what string, ok func(amqpwire.Method) bool) (amqpwire.Method, error) {
	for {
		m, err := w.readMethod(channel, what)
		if err != nil {
			return nil, err
		}
		if ok(m) {
			return m, nil
		}
		switch m.(type) {
		case *amqpwire.ConnectionBlocked, *amqpwire.ConnectionUnblocked, *amqpwire.BasicAck, *amqpwire.BasicNack:
			continue
		}
		return nil, fmt.Errorf("%w: %s while %s was awaited", errWire, m.Name(), what)
	}
}

// closeReason returns an error for connection.close and channel.close, nil
// for any other method.
func closeReason(m amqpwire.Method) error {
	switch m := m.(type) {
	case *amqpwire.ConnectionClose:
		return fmt.Errorf("connection closed by broker: %d %s", m.ReplyCode, m.ReplyText)
	case *amqpwire.ChannelClose:
		return fmt.Errorf("channel closed by broker: %d %s", m.ReplyCode, m.ReplyText)
	}
	return nil
}

// setup runs fn, a series of synchronous calls, within timeout.
func (w *wireConn) setup(timeout time.Duration, fn func() error) error {
	if err := w.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		err = w.nc.SetDeadline(time.Time{})
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("no reply within %s", timeout)
	}
	return err
}

// closeConn ends the connection: politely (connection.close, then wait up to
// stopGrace for the broker to answer or hang up) unless force, which only
// closes the socket. await, when not nil, waits for the reader goroutine
// that sees the close-ok; otherwise close reads the replies itself.
func (w *wireConn) closeConn(force bool, await <-chan struct{}) {
	if force {
		w.nc.Close()
		return
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	defer w.nc.Close()
	deadline := time.Now().Add(stopGrace)
	_ = w.nc.SetWriteDeadline(deadline)
	if w.write(0, &amqpwire.ConnectionClose{ReplyCode: amqpwire.ReplySuccess, ReplyText: "bye"}) != nil || w.bw.Flush() != nil {
		return
	}
	if await != nil {
		select {
		case <-await:
		case <-time.After(stopGrace):
		}
		return
	}
	// Stopping may have interrupted a frame half read: look for the reply
	// only while frames still parse, then wait for the broker to hang up.
	_ = w.nc.SetReadDeadline(deadline)
	for {
		f, err := w.fr.ReadFrame()
		if err != nil {
			return
		}
		if f.Type == amqpwire.FrameMethod && f.Channel == 0 {
			if m, err := w.dec.Decode(f.Payload); err == nil {
				if _, ok := m.(*amqpwire.ConnectionCloseOk); ok {
					return
				}
			}
		}
	}
}

// brokerErr classifies a failure of a running fast client like stopped does
// for the default engine: nil when the run is stopping anyway.
func (c *client) brokerErr(what string, err error) error {
	if c.r.stopping.Load() {
		return nil
	}
	if err == nil {
		err = errors.New("connection closed")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("connection closed by broker")
	}
	return fmt.Errorf("%w: %s on %s: %s", ErrBroker, what, Redact(c.uri), oneLine(err))
}

// fastProducer is the fast engine's state of one producer.
type fastProducer struct {
	w *wireConn

	mu      sync.Mutex
	cond    *sync.Cond
	dead    bool        // reader ended; err says why
	readErr error       // why the reader ended (nil: clean close)
	gone    atomic.Bool // dead, for the publish loop to poll without the lock

	settled atomic.Uint64 // publishes acked or nacked by the broker
	low     uint64        // every tag <= low is settled (reader only)
	above   map[uint64]bool

	readerDone chan struct{}
}

func (p *producer) connectFast() error {
	cfg := p.r.cfg
	w, err := dialWire(p.uri, p.name, cfg.DialTimeout)
	if err != nil {
		return err
	}
	fp := &fastProducer{w: w, readerDone: make(chan struct{}), above: map[uint64]bool{}}
	fp.cond = sync.NewCond(&fp.mu)
	if cfg.Confirm > 0 {
		err := w.setup(p.r.setupTimeout(), func() error {
			if err := w.send(fastChannel, &amqpwire.ConfirmSelect{}); err != nil {
				return err
			}
			_, err := w.expect(fastChannel, "confirm.select-ok", func(m amqpwire.Method) bool {
				_, ok := m.(*amqpwire.ConfirmSelectOk)
				return ok
			})
			return err
		})
		if err != nil {
			w.nc.Close()
			return fmt.Errorf("%w: confirm.select on %s: %s", ErrBroker, Redact(p.uri), oneLine(err))
		}
	}
	p.fast = fp
	p.wire, p.wireDone = w, fp.readerDone
	go p.readFast()
	return nil
}

// readFast is the producer's reader goroutine: it settles confirms, counts
// returns and notices the broker closing the channel or connection.
func (p *producer) readFast() {
	fp := p.fast
	w := fp.w
	backlog := p.r.cfg.Backlog > 0
	var err error
	defer func() {
		fp.mu.Lock()
		fp.dead = true
		fp.gone.Store(true)
		fp.readErr = err
		fp.cond.Broadcast()
		fp.mu.Unlock()
		close(fp.readerDone)
	}()
	for {
		var f amqpwire.Frame
		f, err = w.fr.ReadFrame()
		if err != nil {
			return
		}
		if f.Type != amqpwire.FrameMethod {
			continue // returned content, heartbeats
		}
		var m amqpwire.Method
		if m, err = w.dec.Decode(f.Payload); err != nil {
			return
		}
		switch m := m.(type) {
		case *amqpwire.BasicAck:
			n := fp.settle(m.DeliveryTag, m.Multiple)
			p.confirmed.Add(n)
			if backlog {
				p.r.backlogPublished(int64(n))
			}
			fp.release(n)
		case *amqpwire.BasicNack:
			n := fp.settle(m.DeliveryTag, m.Multiple)
			p.nacked.Add(n)
			fp.release(n)
		case *amqpwire.BasicReturn:
			p.returned.Add(1)
		case *amqpwire.ConnectionCloseOk:
			err = nil
			return
		case *amqpwire.ConnectionClose, *amqpwire.ChannelClose:
			err = closeReason(m)
			return
		}
	}
}

// settle marks tag (and with multiple every tag below it) settled and
// returns how many publishes that settles for the first time. Brokers settle
// in order nearly always; out-of-order single tags wait in above.
func (fp *fastProducer) settle(tag uint64, multiple bool) uint64 {
	if tag <= fp.low {
		return 0
	}
	var n uint64
	if multiple {
		n = tag - fp.low
		for t := range fp.above {
			if t <= tag {
				delete(fp.above, t)
				n--
			}
		}
		fp.low = tag
	} else {
		if fp.above[tag] {
			return 0
		}
		n = 1
		if tag == fp.low+1 {
			fp.low = tag
		} else {
			fp.above[tag] = true
		}
	}
	for len(fp.above) > 0 && fp.above[fp.low+1] {
		delete(fp.above, fp.low+1)
		fp.low++
	}
	return n
}

// release returns n publishes of window credit, once per ack frame.
func (fp *fastProducer) release(n uint64) {
	if n == 0 {
		return
	}
	fp.mu.Lock()
	fp.settled.Add(n)
	fp.cond.Signal()
	fp.mu.Unlock()
}

// waitCredit blocks while published-settled >= window. It returns false
// when the run stops or the reader ended.
func (fp *fastProducer) waitCredit(published uint64, window int, stopping *atomic.Bool) bool {
	if published-fp.settled.Load() < uint64(window) {
		return true
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for published-fp.settled.Load() >= uint64(window) {
		if fp.dead || stopping.Load() {
			return false
		}
		fp.cond.Wait()
	}
	return true
}

// loopFast is loop for the fast engine.
func (p *producer) loopFast() error {
	fp := p.fast
	w := fp.w
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		return nil
	}
	cfg := p.r.cfg
	stop := p.r.stop
	stopping := &p.r.stopping
	window := cfg.Confirm

	// Wake a producer waiting for credit when the run stops.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
		case <-done:
			return
		}
		fp.mu.Lock()
		fp.cond.Broadcast()
		fp.mu.Unlock()
	}()

	props := amqpwire.Properties{DeliveryMode: 1}
	if cfg.Persistent {
		props.DeliveryMode = 2
	}
	if cfg.BodyKind == BodyJSON {
		props.ContentType = "application/json"
	}
	rawProps := props.AppendTo(nil)
	var byPriority [][]byte // with --priorities, the properties of each level
	for l := range cfg.Priorities {
		pp := props
		pp.Priority = uint8(l)
		pp.Flags |= amqpwire.FlagPriority
		byPriority = append(byPriority, pp.AppendTo(nil))
		rawProps = byPriority[l]
	}
	pub := amqpwire.BasicPublish{Exchange: p.exchange, RoutingKey: p.key, Mandatory: cfg.Mandatory}
	// A publish is at most: method frame (8 + 4 + 2 + 1+255 + 1+255 + 1),
	// header frame (8 + 12 + props), body frames (8 each + body).
	bodyFrames := 1
	if w.frameMax > 8 {
		bodyFrames = max(1, (cfg.Size+int(w.frameMax)-9)/int(w.frameMax-8))
	}
	maxSize := 8 + 4 + 2 + 256 + 256 + 1 + 8 + 12 + len(rawProps) + 8*bodyFrames + max(cfg.Size, jsonMinSize)

	var pace *pacer
	if cfg.Rate > 0 {
		pace = newPacer(cfg.Rate)
	}
	var published uint64
	unflushed := 0
	flush := func() error {
		unflushed = 0
		return w.bw.Flush()
	}
	fail := func(err error) error {
		fp.mu.Lock()
		rerr := fp.readErr
		fp.mu.Unlock()
		if rerr != nil {
			err = rerr
		}
		return p.brokerErr("publish", err)
	}
	for n := int64(0); p.limit == 0 || n < p.limit; n++ {
		if stopping.Load() {
			_ = flush()
			return nil
		}
		if fp.gone.Load() {
			// The broker closed the channel or connection: without
			// confirms nothing else would notice before a write fails.
			return fail(nil)
		}
		if pace != nil {
			if unflushed > 0 && !pace.ready() {
				if err := flush(); err != nil {
					return fail(err)
				}
			}
			if !pace.wait(stop) {
				_ = flush()
				return nil
			}
		}
		if window > 0 && published-fp.settled.Load() >= uint64(window) {
			if unflushed > 0 {
				if err := flush(); err != nil {
					return fail(err)
				}
			}
			if !fp.waitCredit(published, window, stopping) {
				if stopping.Load() {
					return nil
				}
				return fail(nil)
			}
		}
		if p.r.keys != nil {
			pub.RoutingKey = p.r.keys[p.rng.IntN(len(p.r.keys))]
		}
		body := p.body.stamp(time.Now().UnixNano())
		if w.bw.Available() < maxSize && w.bw.Buffered() > 0 {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
		// Encode in place in the write buffer when the publish fits, else
		// (bodies near the buffer size) in the reused scratch buffer.
		inPlace := w.bw.Available() >= maxSize
		b := w.scratch[:0]
		if inPlace {
			b = w.bw.AvailableBuffer()
		}
		b = amqpwire.AppendMethodFrame(b, fastChannel, &pub)
		rp := rawProps
		if byPriority != nil {
			rp = byPriority[n%int64(len(byPriority))]
		}
		b = amqpwire.AppendContentFrames(b, fastChannel, amqpwire.ClassBasic, uint64(len(body)), rp, body, w.frameMax)
		if !inPlace {
			w.scratch = b[:0]
		}
		if _, err := w.bw.Write(b); err != nil {
			return fail(err)
		}
		published++
		p.sent.Add(1)
		if window == 0 && cfg.Backlog > 0 {
			p.r.backlogPublished(1)
		}
		if unflushed++; unflushed >= flushEvery {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	// Limited run: wait for the last confirms.
	if window > 0 && !fp.waitCredit(published, 1, stopping) {
		if stopping.Load() {
			return nil
		}
		return fail(nil)
	}
	return nil
}

// fastConsumer is the fast engine's state of one consumer.
type fastConsumer struct {
	w   *wireConn
	ack amqpwire.BasicAck
}

func (c *consumer) connectFast() error {
	cfg := c.r.cfg
	w, err := dialWire(c.uri, c.name, cfg.DialTimeout)
	if err != nil {
		return err
	}
	err = w.setup(c.r.setupTimeout(), func() error {
		if cfg.Prefetch > 0 {
			if err := w.send(fastChannel, &amqpwire.BasicQos{PrefetchCount: uint16(cfg.Prefetch)}); err != nil {
				return err
			}
			if _, err := w.expect(fastChannel, "basic.qos-ok", func(m amqpwire.Method) bool {
				_, ok := m.(*amqpwire.BasicQosOk)
				return ok
			}); err != nil {
				return fmt.Errorf("basic.qos: %w", err)
			}
		}
		if err := w.send(fastChannel, &amqpwire.BasicConsume{Queue: c.queue, ConsumerTag: c.tag, NoAck: cfg.AutoAck,
			Arguments: amqpwire.Table(cfg.ConsumerArgs)}); err != nil {
			return err
		}
		if _, err := w.expect(fastChannel, "basic.consume-ok", func(m amqpwire.Method) bool {
			_, ok := m.(*amqpwire.BasicConsumeOk)
			return ok
		}); err != nil {
			return fmt.Errorf("%w: consume from queue %s on %s: %s", ErrTopology, strconv.Quote(c.queue), Redact(c.uri), oneLine(err))
		}
		return nil
	})
	if err != nil {
		w.nc.Close()
		if errors.Is(err, ErrTopology) {
			return err
		}
		return fmt.Errorf("%w: set up consumer on %s: %s", ErrBroker, Redact(c.uri), oneLine(err))
	}
	c.fast = &fastConsumer{w: w}
	c.wire = w
	return nil
}

// loopFast is loop for the fast engine: the consumer reads its own socket,
// records latencies and buffers acks, flushed whenever the read buffer runs
// dry.
func (c *consumer) loopFast(limit int64) error {
	fc := c.fast
	w := fc.w
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		return nil
	}
	cfg := c.r.cfg
	if limit == 0 {
		limit = cfg.ConsumerMessages
	}
	limit = max(limit, 0)
	stopping := &c.r.stopping
	every := uint64(max(cfg.MultiAckEvery, 1))
	fc.ack.Multiple = every > 1

	// Unblock the read when the run stops.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-c.r.stop:
			_ = w.nc.SetReadDeadline(time.Now())
		case <-done:
		}
	}()

	var (
		n         uint64
		tag       uint64
		inMessage bool   // between basic.deliver and the end of its body
		remaining uint64 // body bytes still to come
		head      [headSize]byte
		headLen   int
	)
	fail := func(err error) error {
		_ = w.bw.Flush()
		return c.brokerErr("consume from queue "+strconv.Quote(c.queue), err)
	}
	var pace *pacer
	if cfg.ConsumerRate > 0 {
		pace = newPacer(cfg.ConsumerRate)
	}
	deliver := func() bool {
		if pace != nil {
			// Acks go out before the pause, so the broker has the credit.
			_ = w.bw.Flush()
			pace.wait(c.r.stop)
		}
		now := time.Now().UnixNano()
		if ts, ok := publishTime(cfg.BodyKind, head[:headLen]); ok {
			c.mu.Lock()
			c.cur.Record(now - ts)
			c.mu.Unlock()
		}
		n++
		c.received.Add(1)
		last := limit > 0 && int64(n) == limit
		if !cfg.AutoAck && (n%every == 0 || last) {
			fc.ack.DeliveryTag = tag
			w.scratch = amqpwire.AppendMethodFrame(w.scratch[:0], fastChannel, &fc.ack)
			_, _ = w.bw.Write(w.scratch) // a failed write shows at the flush
		}
		return last
	}
	for {
		if w.br.Buffered() == 0 && w.bw.Buffered() > 0 {
			if err := w.bw.Flush(); err != nil {
				return fail(err)
			}
		}
		f, err := w.fr.ReadFrame()
		if err != nil {
			if stopping.Load() {
				_ = w.bw.Flush()
				return nil
			}
			return fail(err)
		}
		switch f.Type {
		case amqpwire.FrameMethod:
			m, err := w.dec.Decode(f.Payload)
			if err != nil {
				return fail(err)
			}
			switch m := m.(type) {
			case *amqpwire.BasicDeliver:
				tag, inMessage, headLen = m.DeliveryTag, true, 0
			case *amqpwire.BasicCancel:
				_ = w.bw.Flush()
				if stopping.Load() {
					return nil
				}
				return fmt.Errorf("%w: consumer %d on %s: queue %q was deleted or cancelled",
					ErrCancelled, c.id, Redact(c.uri), c.queue)
			case *amqpwire.ConnectionClose, *amqpwire.ChannelClose:
				return fail(closeReason(m))
			}
		case amqpwire.FrameHeader:
			if !inMessage {
				continue
			}
			h, err := amqpwire.DecodeContentHeader(f.Payload)
			if err != nil {
				return fail(err)
			}
			remaining = h.BodySize
			if remaining == 0 {
				inMessage = false
				if deliver() {
					return c.finishFast()
				}
			}
		case amqpwire.FrameBody:
			if !inMessage {
				continue
			}
			if headLen < headSize {
				headLen += copy(head[headLen:], f.Payload)
			}
			remaining -= min(remaining, uint64(len(f.Payload)))
			if remaining == 0 {
				inMessage = false
				if deliver() {
					return c.finishFast()
				}
			}
		}
	}
}

// finishFast ends a consumer that reached its count: flush the last ack and
// cancel the subscription, as the default engine does.
func (c *consumer) finishFast() error {
	w := c.fast.w
	if err := w.write(fastChannel, &amqpwire.BasicCancel{ConsumerTag: c.tag}); err != nil {
		return nil
	}
	_ = w.bw.Flush()
	return nil
}
