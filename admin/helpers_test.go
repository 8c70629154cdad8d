package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/broker"
)

// env is a broker and its management API, started in-process on random
// loopback ports.
type env struct {
	t       *testing.T
	srv     *broker.Server
	api     *Server
	amqpURL string // without credentials: amqp://127.0.0.1:port/
	httpURL string
}

func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("WARREN_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func start(t *testing.T) *env { return startIn(t, t.TempDir()) }

// startIn starts a broker on an existing data directory.
func startIn(t *testing.T, dir string) *env {
	t.Helper()
	srv, err := broker.New(broker.Config{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := New(Config{Broker: srv, Logger: testLogger(t), SampleInterval: 100 * time.Millisecond})
	go api.Serve(hln)
	e := &env{t: t, srv: srv, api: api, amqpURL: "amqp://" + ln.Addr().String() + "/", httpURL: "http://" + hln.Addr().String()}
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.api.Shutdown(ctx)
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("broker shutdown: %v", err)
	}
	e.srv = nil
}

// call makes an HTTP request as user:pass (no auth when user is "") and
// returns the status and body.
func (e *env) call(method, path, user, pass string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.httpURL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// do calls as guest and checks the status.
func (e *env) do(method, path string, body any, want int) []byte {
	e.t.Helper()
	code, out := e.call(method, path, "guest", "guest", body)
	if code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, out)
	}
	return out
}

// get calls GET as guest, wants 200 and decodes the JSON into v.
func (e *env) get(path string, v any) {
	e.t.Helper()
	out := e.do("GET", path, nil, 200)
	if err := json.Unmarshal(out, v); err != nil {
		e.t.Fatalf("GET %s: %v: %s", path, err, out)
	}
}

func (e *env) dial(user, pass string, props amqp.Table) *amqp.Connection {
	e.t.Helper()
	cfg := amqp.Config{Properties: props}
	c, err := amqp.DialConfig(strings.Replace(e.amqpURL, "amqp://", "amqp://"+user+":"+pass+"@", 1), cfg)
	if err != nil {
		e.t.Fatalf("dial as %s: %v", user, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) dialVHost(user, pass, vhost string) (*amqp.Connection, error) {
	u := strings.Replace(e.amqpURL, "amqp://", "amqp://"+user+":"+pass+"@", 1) + urlPathEscape(vhost)
	return amqp.Dial(u)
}

func urlPathEscape(s string) string { return strings.ReplaceAll(s, "/", "%2F") }

func channel(t *testing.T, c *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// waitFor polls cond until it holds or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
