package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
)

// testBroker is a broker started in-process on a random loopback port.
type testBroker struct {
	t   *testing.T
	dir string
	srv *Server
	url string
}

func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("WARREN_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// startBroker starts a broker on dir (a fresh temp dir when empty).
func startBroker(t *testing.T, dir string) *testBroker {
	t.Helper()
	return startBrokerConfig(t, Config{DataDir: dir})
}

// startBrokerConfig starts a broker with cfg (a fresh temp dir when
// cfg.DataDir is empty).
func startBrokerConfig(t *testing.T, cfg Config) *testBroker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	dir := cfg.DataDir
	cfg.Logger = testLogger(t)
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	b := &testBroker{t: t, dir: dir, srv: srv, url: "amqp://guest:guest@" + ln.Addr().String() + "/"}
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		b.t.Errorf("Shutdown: %v", err)
	}
	b.srv = nil
}

// restart stops the broker and starts a new one on the same data directory.
func (b *testBroker) restart() *testBroker {
	b.stop()
	return startBroker(b.t, b.dir)
}

func (b *testBroker) dial() *amqp.Connection {
	b.t.Helper()
	c, err := amqp.Dial(b.url)
	if err != nil {
		b.t.Fatalf("dial: %v", err)
	}
	b.t.Cleanup(func() { c.Close() })
	return c
}

func (b *testBroker) channel() (*amqp.Connection, *amqp.Channel) {
	b.t.Helper()
	c := b.dial()
	ch, err := c.Channel()
	if err != nil {
		b.t.Fatalf("channel: %v", err)
	}
	return c, ch
}

// wantAMQPError asserts err is an *amqp.Error with the code and text prefix.
func wantAMQPError(t *testing.T, err error, code int, text string) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want AMQP error %d %q, got %v", code, text, err)
	}
	if ae.Code != code {
		t.Fatalf("want code %d, got %d (%s)", code, ae.Code, ae.Reason)
	}
	if text != "" && ae.Reason != text {
		t.Fatalf("want reason\n  %q\ngot\n  %q", text, ae.Reason)
	}
}

// recvN receives n deliveries or fails after a timeout.
func recvN(t *testing.T, ds <-chan amqp.Delivery, n int) []amqp.Delivery {
	t.Helper()
	out := make([]amqp.Delivery, 0, n)
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatalf("delivery channel closed after %d of %d", len(out), n)
			}
			out = append(out, d)
		case <-timeout:
			t.Fatalf("received %d of %d deliveries", len(out), n)
		}
	}
	return out
}

// expectNone asserts nothing arrives within d.
func expectNone(t *testing.T, ds <-chan amqp.Delivery, d time.Duration) {
	t.Helper()
	select {
	case m, ok := <-ds:
		if ok {
			t.Fatalf("unexpected delivery %q", m.Body)
		}
	case <-time.After(d):
	}
}

func publish(t *testing.T, ch *amqp.Channel, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), exchange, key, false, false, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// wantChannelClose waits for an asynchronous channel close (the reply to a
// method that has no response, such as basic.ack) and checks its code.
func wantChannelClose(t *testing.T, closed <-chan *amqp.Error, code int, text string) {
	t.Helper()
	select {
	case e := <-closed:
		wantAMQPError(t, e, code, text)
	case <-time.After(5 * time.Second):
		t.Fatalf("channel not closed; want %d %s", code, text)
	}
}

// connCount returns the number of connections the broker holds.
func (b *testBroker) connCount() int {
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	return len(b.srv.conns)
}

// outBytes returns the encoded bytes waiting for the broker's writers.
func (b *testBroker) outBytes() int {
	b.srv.mu.Lock()
	conns := make([]*conn, 0, len(b.srv.conns))
	for c := range b.srv.conns {
		conns = append(conns, c)
	}
	b.srv.mu.Unlock()
	n := 0
	for _, c := range conns {
		c.wmu.Lock()
		n += len(c.out) + c.refBytes
		c.wmu.Unlock()
	}
	return n
}

// connBuffers returns the bytes in the writers' output buffers and the
// bytes of large bodies they refer to.
func (b *testBroker) connBuffers() (out, refs int) {
	b.srv.mu.Lock()
	conns := make([]*conn, 0, len(b.srv.conns))
	for c := range b.srv.conns {
		conns = append(conns, c)
	}
	b.srv.mu.Unlock()
	for _, c := range conns {
		c.wmu.Lock()
		out += len(c.out)
		refs += c.refBytes
		c.wmu.Unlock()
	}
	return out, refs
}
