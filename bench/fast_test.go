package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

func TestClientFlagAndOption(t *testing.T) {
	c, err := ParseArgs([]string{"--client", "fast"})
	if err != nil || c.Client != ClientFast {
		t.Fatalf("--client fast: %v, %q", err, c.Client)
	}
	if c, err := ParseArgs(nil); err != nil || c.Client != ClientAMQP091 {
		t.Fatalf("default: %v, %q", err, c.Client)
	}
	if _, err := ParseArgs([]string{"--client", "turbo"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("--client turbo: err %v", err)
	}
	d := DefaultConfig()
	if err := ApplyOptions(&d, map[string]any{"client": "fast"}); err != nil || d.Client != ClientFast {
		t.Fatalf("option client: %v, %q", err, d.Client)
	}
	d.Client = "other"
	if err := d.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate accepted client %q", d.Client)
	}
}

func TestWireAddr(t *testing.T) {
	for _, tc := range []struct{ uri, addr, user, pass, vhost string }{
		{"amqp://u:p@h:1234/v%2Fx", "h:1234", "u", "p", "v/x"},
		{"amqp://h", "h:5672", "guest", "guest", "/"},
		{"amqp://u:p@127.0.0.1:5/", "127.0.0.1:5", "u", "p", "/"},
		{"amqp://[::1]/%2F", "[::1]:5672", "guest", "guest", "/"},
	} {
		addr, user, pass, vhost, err := wireAddr(tc.uri)
		if err != nil || addr != tc.addr || user != tc.user || pass != tc.pass || vhost != tc.vhost {
			t.Errorf("%s: %q %q %q %q %v", tc.uri, addr, user, pass, vhost, err)
		}
	}
	if _, _, _, _, err := wireAddr("amqps://h/"); err == nil {
		t.Error("amqps accepted")
	}
}

// settleOracle counts first-time settlements with a plain set.
type settleOracle map[uint64]bool

func (o settleOracle) settle(tag uint64, multiple bool) uint64 {
	var n uint64
	from := tag
	if multiple {
		from = 1
	}
	for t := from; t <= tag; t++ {
		if !o[t] {
			o[t] = true
			n++
		}
	}
	return n
}

func TestSettleMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		fp := &fastProducer{above: map[uint64]bool{}}
		oracle := settleOracle{}
		var total uint64
		const tags = 300
		for range 400 {
			tag := uint64(rng.IntN(tags) + 1)
			multiple := rng.IntN(4) == 0
			got, want := fp.settle(tag, multiple), oracle.settle(tag, multiple)
			if got != want {
				t.Fatalf("round %d: settle(%d, %v) = %d, want %d", round, tag, multiple, got, want)
			}
			total += got
		}
		got, want := fp.settle(tags, true), oracle.settle(tags, true)
		if got != want || total+got != tags || len(fp.above) != 0 || fp.low != tags {
			t.Fatalf("round %d: final %d want %d, total %d, above %d, low %d", round, got, want, total+got, len(fp.above), fp.low)
		}
	}
}

func TestFastClosedPortFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := DefaultConfig()
	c.Client = ClientFast
	c.URIs = []string{"amqp://guest:guest@" + addr + "/"}
	c.Duration = 30 * time.Second
	start := time.Now()
	_, err = Run(context.Background(), c)
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("err %v, want ErrConnect", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail", d)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, addr) || !strings.Contains(msg, "refused") {
		t.Fatalf("unclear error %q", msg)
	}
}

// fakeServer accepts connections and runs serve on each until the test ends.
func fakeServer(t *testing.T, serve func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				serve(nc)
			}()
		}
	}()
	return ln.Addr().String()
}

// serverStart reads the protocol header, sends connection.start and returns
// the client's start-ok.
func serverStart(nc net.Conn) (*amqpwire.ConnectionStartOk, *amqpwire.FrameReader, error) {
	if err := amqpwire.ReadProtocolHeader(nc); err != nil {
		return nil, nil, err
	}
	start := &amqpwire.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US"}
	if _, err := nc.Write(amqpwire.AppendMethodFrame(nil, 0, start)); err != nil {
		return nil, nil, err
	}
	fr := amqpwire.NewFrameReader(nc, 0)
	f, err := fr.ReadFrame()
	if err != nil {
		return nil, nil, err
	}
	m, err := amqpwire.DecodeMethod(f.Payload)
	if err != nil {
		return nil, nil, err
	}
	ok, _ := m.(*amqpwire.ConnectionStartOk)
	if ok == nil {
		return nil, nil, errors.New("no start-ok")
	}
	return ok, fr, nil
}

func TestFastRefusedCredentials(t *testing.T) {
	responses := make(chan string, 4)
	refuse := fakeServer(t, func(nc net.Conn) {
		ok, _, err := serverStart(nc)
		if err != nil {
			return
		}
		responses <- ok.Mechanism + " " + ok.Response
		closeFrame := amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionClose{
			ReplyCode: amqpwire.AccessRefused, ReplyText: "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
		})
		_, _ = nc.Write(closeFrame)
		time.Sleep(100 * time.Millisecond)
	})
	hangUp := fakeServer(t, func(nc net.Conn) {
		_, _, _ = serverStart(nc)
	})
	for _, tc := range []struct{ addr, want string }{
		{refuse, "403 ACCESS_REFUSED"},
		{hangUp, "refused credentials"},
	} {
		start := time.Now()
		_, err := dialWire("amqp://bob:s3cret@"+tc.addr+"/", "test", 2*time.Second)
		if !errors.Is(err, ErrConnect) {
			t.Fatalf("%s: err %v, want ErrConnect", tc.want, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.addr) || strings.Contains(msg, "s3cret") || strings.Contains(msg, "\n") {
			t.Fatalf("unclear error %q, want %q", msg, tc.want)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: took %v", tc.want, d)
		}
	}
	if got := <-responses; got != "PLAIN \x00bob\x00s3cret" {
		t.Fatalf("start-ok response %q", got)
	}
}

func TestFastSilentServerTimesOut(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn) {
		time.Sleep(2 * time.Second)
	})
	start := time.Now()
	_, err := dialWire("amqp://guest:guest@"+addr+"/", "test", 300*time.Millisecond)
	if !errors.Is(err, ErrConnect) || !strings.Contains(err.Error(), "no handshake reply") {
		t.Fatalf("err %v, want ErrConnect with a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

// The handshake echoes the server's tune and opens the vhost and channel 1.
func TestFastHandshake(t *testing.T) {
	got := make(chan []amqpwire.Method, 1)
	addr := fakeServer(t, func(nc net.Conn) {
		_, fr, err := serverStart(nc)
		if err != nil {
			return
		}
		var seen []amqpwire.Method
		reply := func(ch uint16, m amqpwire.Method) { _, _ = nc.Write(amqpwire.AppendMethodFrame(nil, ch, m)) }
		reply(0, &amqpwire.ConnectionTune{ChannelMax: 7, FrameMax: 4096, Heartbeat: 60})
		for len(seen) < 3 {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			m, err := amqpwire.DecodeMethod(f.Payload)
			if err != nil {
				return
			}
			seen = append(seen, m)
			switch m.(type) {
			case *amqpwire.ConnectionOpen:
				reply(0, &amqpwire.ConnectionOpenOk{})
			case *amqpwire.ChannelOpen:
				reply(f.Channel, &amqpwire.ChannelOpenOk{})
			}
		}
		got <- seen
		time.Sleep(100 * time.Millisecond)
	})
	w, err := dialWire("amqp://guest:guest@"+addr+"/prod", "test", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.nc.Close()
	seen := <-got
	tune, _ := seen[0].(*amqpwire.ConnectionTuneOk)
	open, _ := seen[1].(*amqpwire.ConnectionOpen)
	_, chOpen := seen[2].(*amqpwire.ChannelOpen)
	if tune == nil || tune.ChannelMax != 7 || tune.FrameMax != 4096 || tune.Heartbeat != 0 {
		t.Fatalf("tune-ok %+v", seen[0])
	}
	if open == nil || open.VirtualHost != "prod" || !chOpen {
		t.Fatalf("open %+v, channel.open %v", seen[1], chOpen)
	}
	if w.frameMax != 4096 {
		t.Fatalf("frame max %d", w.frameMax)
	}
}

func TestBrokerFastAutoAckAndMultiAck_NeedsWARREN_BENCH_URL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		autoAck bool
		every   int
	}{{"autoack", true, 0}, {"multiack", false, 7}, {"each", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			c := e2eConfig(t, "fast-"+tc.name, ClientFast)
			c.Producers, c.Consumers = 2, 1
			c.ProducerMessages, c.ConsumerMessages = 1001, 2000
			c.AutoAck, c.MultiAckEvery = tc.autoAck, tc.every
			c.Prefetch = 50
			c.Duration = 30 * time.Second
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			// The consumer stops at 2000; the last 2 messages stay queued.
			if res.Sent != 2002 || res.Received != 2000 || res.Latency.Count != 2000 || res.Confirmed != 0 {
				t.Fatalf("sent %d received %d latencies %d confirmed %d", res.Sent, res.Received, res.Latency.Count, res.Confirmed)
			}
			if res.Elapsed > 20 {
				t.Fatalf("limited run did not end: %.1f s", res.Elapsed)
			}
		})
	}
}

// Bodies larger than frame-max span several body frames and the write
// buffer; mandatory publishes nobody takes come back as basic.return.
func TestBrokerFastLargeBodiesAndReturns_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "fast-large", ClientFast)
	c.Size = 300 << 10
	c.BodyKind = BodyRandom
	c.ProducerMessages, c.ConsumerMessages = 60, 60
	c.Confirm = 8
	c.Persistent = true
	c.Duration = 30 * time.Second
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 60 || res.Confirmed != 60 || res.Received != 60 || res.Latency.Count != 60 {
		t.Fatalf("sent %d confirmed %d received %d latencies %d", res.Sent, res.Confirmed, res.Received, res.Latency.Count)
	}

	r := e2eConfig(t, "fast-return", ClientFast)
	r.Consumers = 0
	r.Predeclared = true
	r.Exchange, r.RoutingKey = "amq.direct", "warrenperf-test-unrouted"
	r.Mandatory = true
	r.Confirm = 20
	r.ProducerMessages = 200
	r.Duration = 30 * time.Second
	res, err = Run(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 200 || res.Confirmed != 200 || res.Returned != 200 {
		t.Fatalf("sent %d confirmed %d returned %d, want 200 each", res.Sent, res.Confirmed, res.Returned)
	}
}

func TestBrokerFastBadCredentials_NeedsWARREN_BENCH_URL(t *testing.T) {
	u := brokerURL(t)
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.User = url.UserPassword("warrenperf-nobody", "wrong")
	start := time.Now()
	_, err = dialWire(p.String(), "test", 3*time.Second)
	if !errors.Is(err, ErrConnect) || strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err %v, want a one-line ErrConnect without the password", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	t.Log(err)
}

// The fast engine's hot path does not allocate per message: what a run
// allocates is setup, reporting and the admin connection.
func TestBrokerFastAllocations_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "fast-allocs", ClientFast)
	c.ProducerMessages, c.ConsumerMessages = 50_000, 50_000
	c.Confirm = 100
	c.Prefetch = 200
	c.MultiAckEvery = 10
	c.Size = 256
	c.Duration = 60 * time.Second
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Run(context.Background(), c)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 50_000 || res.Confirmed != 50_000 {
		t.Fatalf("received %d confirmed %d", res.Received, res.Confirmed)
	}
	perMsg := float64(after.Mallocs-before.Mallocs) / float64(res.Received)
	t.Logf("%.3f allocations per message (%d in all)", perMsg, after.Mallocs-before.Mallocs)
	if perMsg > 0.2 {
		t.Fatalf("%.3f allocations per message", perMsg)
	}
}

// Publishing to a missing exchange closes the channel: the run ends with
// the broker's reason even without confirms.
func TestBrokerMissingExchange_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "noexchange", client)
		c.Consumers = 0
		c.Predeclared = true
		c.Exchange = "warrenperf-test-missing-exchange"
		c.Duration = 30 * time.Second
		start := time.Now()
		_, err := Run(context.Background(), c)
		if !errors.Is(err, ErrBroker) || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("err %v, want ErrBroker with 404", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v to notice", d)
		}
		t.Log(err)
	})
}

// fakeBroker answers the handshake, qos and consume, then runs script with
// a function writing frames.
func fakeBroker(t *testing.T, script func(send func(b []byte))) string {
	return fakeServer(t, func(nc net.Conn) {
		_, fr, err := serverStart(nc)
		if err != nil {
			return
		}
		send := func(b []byte) { _, _ = nc.Write(b) }
		send(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionTune{ChannelMax: 16, FrameMax: 1 << 17}))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			m, err := amqpwire.DecodeMethod(f.Payload)
			if err != nil {
				return
			}
			switch m.(type) {
			case *amqpwire.ConnectionOpen:
				send(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionOpenOk{}))
			case *amqpwire.ChannelOpen:
				send(amqpwire.AppendMethodFrame(nil, 1, &amqpwire.ChannelOpenOk{}))
			case *amqpwire.BasicQos:
				send(amqpwire.AppendMethodFrame(nil, 1, &amqpwire.BasicQosOk{}))
			case *amqpwire.BasicConsume:
				send(amqpwire.AppendMethodFrame(nil, 1, &amqpwire.BasicConsumeOk{ConsumerTag: "warrenperf-0"}))
				script(send)
			case *amqpwire.ConnectionClose:
				send(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionCloseOk{}))
				return
			}
		}
	})
}

// delivery encodes one delivery of a binary body stamped with the publish time.
func delivery(tag uint64, body []byte) []byte {
	binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
	b := amqpwire.AppendMethodFrame(nil, 1, &amqpwire.BasicDeliver{ConsumerTag: "warrenperf-0", DeliveryTag: tag, RoutingKey: "q"})
	props := (&amqpwire.Properties{DeliveryMode: 2}).AppendTo(nil)
	// A frame-max of 40 splits the body over several frames.
	return amqpwire.AppendContentFrames(b, 1, amqpwire.ClassBasic, uint64(len(body)), props, body, 40)
}

func TestFastConsumerBrokerEndsConsumption(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  amqpwire.Method
		ch   uint16
		want error
		text string
	}{
		{"connection.close", &amqpwire.ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED - shutdown"}, 0, ErrBroker, "320 CONNECTION_FORCED"},
		{"basic.cancel", &amqpwire.BasicCancel{ConsumerTag: "warrenperf-0"}, 1, ErrCancelled, "was deleted or cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeBroker(t, func(send func([]byte)) {
				for tag := uint64(1); tag <= 3; tag++ {
					send(delivery(tag, make([]byte, 100)))
				}
				send(amqpwire.AppendMethodFrame(nil, tc.ch, tc.end))
			})
			cfg := DefaultConfig()
			cfg.Client = ClientFast
			cfg.URIs = []string{"amqp://guest:guest@" + addr + "/"}
			cfg.Prefetch = 10
			cfg.DialTimeout = 2 * time.Second
			r := newRunner(cfg)
			c := newConsumer(r, 0)
			if err := c.connect(); err != nil {
				t.Fatal(err)
			}
			defer c.close(false)
			done := make(chan error, 1)
			go func() { done <- c.loop(0) }()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("err %v, want %v with %q", err, tc.want, tc.text)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("consumer hangs after the broker ended consumption")
			}
			if got := c.received.Load(); got != 3 || c.cur.Count() != 3 {
				t.Fatalf("received %d, %d latencies, want 3", got, c.cur.Count())
			}
		})
	}
}
