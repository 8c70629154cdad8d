package broker

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// rawConn is a hand-driven client for protocol-level bad input.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	fr *amqpwire.FrameReader
}

func dialRaw(t *testing.T, b *testBroker) *rawConn {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(b.url, "amqp://guest:guest@"), "/")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, fr: amqpwire.NewFrameReader(bufio.NewReader(nc), 0)}
}

func (r *rawConn) send(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) method(ch uint16, m amqpwire.Method) {
	r.send(amqpwire.AppendMethodFrame(nil, ch, m))
}

// expect reads frames until a method of the wanted type arrives.
func expect[T amqpwire.Method](r *rawConn) T {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var zero T
			r.t.Fatalf("reading: %v (waiting for %T)", err, zero)
		}
		if f.Type != amqpwire.FrameMethod {
			continue
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			r.t.Fatal(err)
		}
		if x, ok := m.(T); ok {
			return x
		}
		var zero T
		r.t.Fatalf("got %s, want %T", m.Name(), zero)
	}
}

// open performs the handshake as guest, without heartbeats.
func (r *rawConn) open() {
	r.t.Helper()
	r.openHeartbeat(0)
}

// openHeartbeat performs the handshake as guest with the given heartbeat
// interval in seconds.
func (r *rawConn) openHeartbeat(hb uint16) {
	r.t.Helper()
	r.send([]byte(amqpwire.ProtocolHeader))
	expect[*amqpwire.ConnectionStart](r)
	r.method(0, &amqpwire.ConnectionStartOk{ClientProperties: amqpwire.Table{"capabilities": amqpwire.Table{"authentication_failure_close": true}},
		Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := expect[*amqpwire.ConnectionTune](r)
	if tune.ChannelMax != 2047 || tune.FrameMax != 131072 || tune.Heartbeat != 60 {
		r.t.Fatalf("tune: %+v", tune)
	}
	r.method(0, &amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072, Heartbeat: hb})
	r.method(0, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	expect[*amqpwire.ConnectionOpenOk](r)
}

func TestBadProtocolHeader(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.send([]byte("AMQP\x00\x00\x08\x00"))
	got, err := io.ReadAll(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(amqpwire.ProtocolHeader)) {
		t.Fatalf("want the server's protocol header and a close, got %q", got)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir, Logger: testLogger(t), HandshakeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	b := &testBroker{t: t, dir: dir, srv: srv, url: "amqp://guest:guest@" + ln.Addr().String() + "/"}
	t.Cleanup(b.stop)
	r := dialRaw(t, b)
	start := time.Now()
	if _, err := io.ReadAll(r.nc); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent client kept for %v", d)
	}
}

func TestFrameTooLarge(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	// A frame header announcing more than frame-max.
	r.send([]byte{amqpwire.FrameBody, 0, 1, 0x00, 0x10, 0x00, 0x00})
	cl := expect[*amqpwire.ConnectionClose](r)
	if cl.ReplyCode != amqpwire.FrameError {
		t.Fatalf("want 501, got %d %s", cl.ReplyCode, cl.ReplyText)
	}
}

func TestFrameOnUnopenedChannel(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(5, &amqpwire.QueueDeclare{Queue: "x"})
	cl := expect[*amqpwire.ConnectionClose](r)
	if cl.ReplyCode != amqpwire.ChannelError {
		t.Fatalf("want 504, got %d %s", cl.ReplyCode, cl.ReplyText)
	}
	r.method(0, &amqpwire.ConnectionCloseOk{})
}

func TestUnexpectedContentFrame(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	// A body frame with no publish before it.
	r.send(amqpwire.AppendFrame(nil, amqpwire.FrameBody, 1, []byte("stray")))
	cl := expect[*amqpwire.ConnectionClose](r)
	if cl.ReplyCode != amqpwire.UnexpectedFrame {
		t.Fatalf("want 505, got %d %s", cl.ReplyCode, cl.ReplyText)
	}
}

func TestMalformedMethodIsSyntaxError(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	// queue.declare cut short after its queue name length.
	r.send(amqpwire.AppendFrame(nil, amqpwire.FrameMethod, 1, []byte{0, 50, 0, 10, 0, 0, 200}))
	cl := expect[*amqpwire.ConnectionClose](r)
	if cl.ReplyCode != amqpwire.SyntaxError {
		t.Fatalf("want 502, got %d %s", cl.ReplyCode, cl.ReplyText)
	}
}

func TestUnknownMethodNotImplemented(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.send(amqpwire.AppendFrame(nil, amqpwire.FrameMethod, 1, []byte{0, 60, 0x0f, 0xff}))
	cl := expect[*amqpwire.ConnectionClose](r)
	if cl.ReplyCode != amqpwire.NotImplemented {
		t.Fatalf("want 540, got %d %s", cl.ReplyCode, cl.ReplyText)
	}
}

func TestGuestOnlyFromLoopback(t *testing.T) {
	if isLoopback(&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3)}) || !isLoopback(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}) {
		t.Fatal("loopback detection")
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.send([]byte(amqpwire.ProtocolHeader))
	expect[*amqpwire.ConnectionStart](r)
	r.method(0, &amqpwire.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	expect[*amqpwire.ConnectionTune](r)
	r.method(0, &amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 1})
	r.method(0, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	expect[*amqpwire.ConnectionOpenOk](r)
	// The server sends heartbeats, and drops us after two silent intervals.
	start := time.Now()
	sawHeartbeat := false
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			break
		}
		if f.Type == amqpwire.FrameHeartbeat {
			sawHeartbeat = true
		}
	}
	if !sawHeartbeat {
		t.Fatal("no heartbeat from the server")
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 6*time.Second {
		t.Fatalf("dropped after %v, want about 2 s", d)
	}
}

// TestTunablesReachTheHandshake: --frame-max, --channel-max and
// --heartbeat are what connection.tune proposes.
func TestTunablesReachTheHandshake(t *testing.T) {
	b := startBrokerConfig(t, Config{FrameMax: 65536, ChannelMax: 16, Heartbeat: -1})
	r := dialRaw(t, b)
	r.send([]byte(amqpwire.ProtocolHeader))
	expect[*amqpwire.ConnectionStart](r)
	r.method(0, &amqpwire.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := expect[*amqpwire.ConnectionTune](r)
	if tune.FrameMax != 65536 || tune.ChannelMax != 16 || tune.Heartbeat != 0 {
		t.Fatalf("tune: %+v", tune)
	}
}

// readContent reads a content header and the body frames it announces.
func (r *rawConn) readContent() []byte {
	r.t.Helper()
	f, err := r.fr.ReadFrame()
	if err != nil || f.Type != amqpwire.FrameHeader {
		r.t.Fatalf("content header: %v (frame type %d)", err, f.Type)
	}
	h, err := amqpwire.DecodeContentHeader(f.Payload)
	if err != nil {
		r.t.Fatal(err)
	}
	body := make([]byte, 0, h.BodySize)
	for uint64(len(body)) < h.BodySize {
		f, err := r.fr.ReadFrame()
		if err != nil || f.Type != amqpwire.FrameBody {
			r.t.Fatalf("body frame: %v (frame type %d)", err, f.Type)
		}
		body = append(body, f.Payload...)
	}
	return body
}
