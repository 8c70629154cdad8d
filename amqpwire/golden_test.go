package amqpwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/amqp091-go.hex from a live amqp091-go client")

const goldenFile = "testdata/amqp091-go.hex"

var goldenTime = time.Unix(1700000000, 0).UTC()

// goldenServer plays the server side of a connection with amqp091-go using
// amqpwire only, and records the frames the client writes.
type goldenServer struct {
	conn     net.Conn
	fr       *FrameReader
	captured map[string][]byte // name -> whole frame bytes
	err      error
}

func (s *goldenServer) send(channel uint16, m Method) {
	if s.err == nil {
		_, s.err = s.conn.Write(AppendMethodFrame(nil, channel, m))
	}
}

// next reads the next non-heartbeat frame.
func (s *goldenServer) next() Frame {
	for s.err == nil {
		f, err := s.fr.ReadFrame()
		if err != nil {
			s.err = err
			break
		}
		if f.Type != FrameHeartbeat {
			return f
		}
	}
	return Frame{}
}

// expect reads a method frame and fails unless it is the named method; with
// record it keeps the frame bytes under that name.
func (s *goldenServer) expect(name string, record bool) Method {
	f := s.next()
	if s.err != nil {
		return nil
	}
	m, err := DecodeMethod(f.Payload)
	if err != nil {
		s.err = fmt.Errorf("decoding %s: %w", name, err)
		return nil
	}
	if m.Name() != name {
		s.err = fmt.Errorf("got %s, want %s", m.Name(), name)
		return nil
	}
	if record {
		s.captured[name] = AppendFrame(nil, f.Type, f.Channel, f.Payload)
	}
	return m
}

func (s *goldenServer) record(name string, typ uint8) {
	f := s.next()
	if s.err == nil && f.Type != typ {
		s.err = fmt.Errorf("%s: frame type %d, want %d", name, f.Type, typ)
	}
	if s.err == nil {
		s.captured[name] = AppendFrame(nil, f.Type, f.Channel, f.Payload)
	}
}

func (s *goldenServer) run(ln net.Listener, deliverProps Properties) {
	s.conn, s.err = ln.Accept()
	if s.err != nil {
		return
	}
	defer s.conn.Close()
	_ = s.conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(s.conn)
	if s.err = ReadProtocolHeader(br); s.err != nil {
		return
	}
	s.fr = NewFrameReader(br, FrameMinSize)
	s.send(0, &ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: Table{
			"product": "Warren", "version": "0.0.0",
			"capabilities": Table{"publisher_confirms": true, "basic.nack": true, "consumer_cancel_notify": true},
		},
		Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US",
	})
	s.expect("connection.start-ok", true)
	s.send(0, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 0})
	if tune, ok := s.expect("connection.tune-ok", true).(*ConnectionTuneOk); ok {
		s.fr.SetFrameMax(tune.FrameMax)
	}
	s.expect("connection.open", true)
	s.send(0, &ConnectionOpenOk{})
	s.expect("channel.open", false)
	s.send(1, &ChannelOpenOk{})
	s.expect("queue.declare", true)
	s.send(1, &QueueDeclareOk{Queue: "golden-q", MessageCount: 0, ConsumerCount: 0})
	s.expect("basic.publish", true)
	s.record("publish.header", FrameHeader)
	s.record("publish.body", FrameBody)
	cons, _ := s.expect("basic.consume", true).(*BasicConsume)
	if s.err != nil {
		return
	}
	s.send(1, &BasicConsumeOk{ConsumerTag: cons.ConsumerTag})
	var out []byte
	out = AppendMethodFrame(out, 1, &BasicDeliver{ConsumerTag: cons.ConsumerTag, DeliveryTag: 1, Redelivered: true, Exchange: "amq.direct", RoutingKey: "golden-q"})
	// A small frame-max forces the body across several frames.
	body := bytes.Repeat([]byte("0123456789"), 1000)
	out = AppendContentFrames(out, 1, ClassBasic, uint64(len(body)), deliverProps.AppendTo(nil), body, 4096)
	if _, s.err = s.conn.Write(out); s.err != nil {
		return
	}
	s.expect("basic.ack", true)
	s.expect("connection.close", false)
	s.send(0, &ConnectionCloseOk{})
}

var goldenHeaders = amqp.Table{
	"bool":    true,
	"byte":    byte(200),
	"int8":    int8(-8),
	"int16":   int16(-1600),
	"int":     7,
	"int32":   int32(-320000),
	"int64":   int64(-64000000000),
	"uint16":  uint16(65000),
	"uint32":  uint32(4000000000),
	"float32": float32(2.5),
	"float64": 6.25,
	"string":  "text",
	"bytes":   []byte{1, 2, 3},
	"decimal": amqp.Decimal{Scale: 2, Value: 314},
	"time":    goldenTime,
	"table":   amqp.Table{"nested": amqp.Table{"deep": int32(1)}},
	"array":   []any{int32(1), "two", true},
	"void":    nil,
}

// TestGoldenAmqp091 drives the official Go client against a server played
// with amqpwire, records the client's frames and checks their decoding; with
// -update it also stores them in testdata.
func TestGoldenAmqp091(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deliverProps := Properties{
		ContentType: "text/plain", ContentEncoding: "identity", Headers: Table{"h": "v", "n": int64(-1)},
		DeliveryMode: 2, Priority: 4, CorrelationID: "c", ReplyTo: "r", Expiration: "1000", MessageID: "m",
		Timestamp: goldenTime, Type: "t", UserID: "guest", AppID: "a", ClusterID: "cl",
	}
	srv := &goldenServer{captured: map[string][]byte{}}
	done := make(chan struct{})
	go func() { defer close(done); srv.run(ln, deliverProps) }()

	cfg := amqp.Config{
		Properties: amqp.Table{"connection_name": "golden", "product": "amqp091-go"},
		Heartbeat:  0,
		Locale:     "en_US",
	}
	conn, err := amqp.DialConfig("amqp://guest:guest@"+ln.Addr().String()+"/", cfg)
	if err != nil {
		<-done
		t.Fatalf("dial: %v (server: %v)", err, srv.err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v (server: %v)", err, srv.err)
	}
	if _, err := ch.QueueDeclare("golden-q", true, false, false, false, amqp.Table{
		"x-message-ttl": int32(60000), "x-queue-type": "quorum", "x-max-length": int64(1000),
		"x-dead-letter-exchange": "dlx",
	}); err != nil {
		t.Fatalf("queue.declare: %v (server: %v)", err, srv.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = ch.PublishWithContext(ctx, "amq.direct", "golden-q", true, false, amqp.Publishing{
		Headers: goldenHeaders, ContentType: "application/json", ContentEncoding: "gzip",
		DeliveryMode: amqp.Persistent, Priority: 5, CorrelationId: "corr-7", ReplyTo: "reply-q",
		Expiration: "60000", MessageId: "msg-7", Timestamp: goldenTime, Type: "order.created",
		UserId: "guest", AppId: "golden-app", Body: []byte(`{"hello":"world"}`),
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	deliveries, err := ch.Consume("golden-q", "ctag-golden", false, true, false, false, amqp.Table{"x-priority": int32(10)})
	if err != nil {
		t.Fatalf("consume: %v (server: %v)", err, srv.err)
	}
	select {
	case d := <-deliveries:
		// The client decoded what amqpwire encoded.
		if d.ConsumerTag != "ctag-golden" || d.DeliveryTag != 1 || !d.Redelivered || d.Exchange != "amq.direct" ||
			d.RoutingKey != "golden-q" || len(d.Body) != 10000 || d.ContentType != "text/plain" ||
			d.ContentEncoding != "identity" || d.DeliveryMode != 2 || d.Priority != 4 || d.CorrelationId != "c" ||
			d.ReplyTo != "r" || d.Expiration != "1000" || d.MessageId != "m" || !d.Timestamp.Equal(goldenTime) ||
			d.Type != "t" || d.UserId != "guest" || d.AppId != "a" || d.Headers["h"] != "v" || d.Headers["n"] != int64(-1) {
			t.Errorf("delivery as the client saw it: %+v", d)
		}
		if err := d.Ack(false); err != nil {
			t.Fatalf("ack: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no delivery (server: %v)", srv.err)
	}
	if err := conn.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	<-done
	if srv.err != nil {
		t.Fatalf("server: %v", srv.err)
	}

	checkGolden(t, "live", srv.captured)
	if *updateGolden {
		writeGolden(t, srv.captured)
	}
}

// TestGoldenStored decodes the frames stored in testdata.
func TestGoldenStored(t *testing.T) {
	data, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenAmqp091 -update)", err)
	}
	frames := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		frames[name] = b
	}
	checkGolden(t, "stored", frames)
}

func writeGolden(t *testing.T, frames map[string][]byte) {
	names := make([]string, 0, len(frames))
	for n := range frames {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Frames written by github.com/rabbitmq/amqp091-go v1.16.0, captured by TestGoldenAmqp091 -update.\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s %x\n", n, frames[n])
	}
	if err := os.WriteFile(goldenFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkGolden decodes each captured frame and checks the values the client sent.
func checkGolden(t *testing.T, src string, frames map[string][]byte) {
	t.Helper()
	read := func(name string) Frame {
		raw, ok := frames[name]
		if !ok {
			t.Fatalf("%s: no %s frame", src, name)
		}
		fr := NewFrameReader(bytes.NewReader(raw), 131072)
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("%s: %s: %v", src, name, err)
		}
		return f
	}
	method := func(name string) Method {
		f := read(name)
		m, err := DecodeMethod(f.Payload)
		if err != nil {
			t.Fatalf("%s: %s: %v", src, name, err)
		}
		return m
	}

	so := method("connection.start-ok").(*ConnectionStartOk)
	if so.Mechanism != "PLAIN" || so.Response != "\x00guest\x00guest" || so.Locale != "en_US" ||
		so.ClientProperties["connection_name"] != "golden" || so.ClientProperties["product"] != "amqp091-go" {
		t.Errorf("%s: start-ok = %+v", src, so)
	}
	caps, _ := so.ClientProperties["capabilities"].(Table)
	for _, c := range []string{"connection.blocked", "consumer_cancel_notify", "basic.nack", "publisher_confirms"} {
		if caps[c] != true {
			t.Errorf("%s: start-ok capability %s = %v", src, c, caps[c])
		}
	}
	if to := method("connection.tune-ok").(*ConnectionTuneOk); to.FrameMax != 131072 || to.ChannelMax != 2047 {
		t.Errorf("%s: tune-ok = %+v", src, to)
	}
	if op := method("connection.open").(*ConnectionOpen); op.VirtualHost != "/" {
		t.Errorf("%s: open = %+v", src, op)
	}

	qd := method("queue.declare").(*QueueDeclare)
	wantArgs := Table{"x-message-ttl": int32(60000), "x-queue-type": "quorum", "x-max-length": int64(1000), "x-dead-letter-exchange": "dlx"}
	if qd.Queue != "golden-q" || !qd.Durable || qd.AutoDelete || qd.Exclusive || qd.NoWait || qd.Passive ||
		!reflect.DeepEqual(qd.Arguments, wantArgs) {
		t.Errorf("%s: queue.declare = %+v", src, qd)
	}

	if f := read("basic.publish"); f.Channel != 1 {
		t.Errorf("%s: publish on channel %d", src, f.Channel)
	}
	pub := method("basic.publish").(*BasicPublish)
	if pub.Exchange != "amq.direct" || pub.RoutingKey != "golden-q" || !pub.Mandatory || pub.Immediate {
		t.Errorf("%s: basic.publish = %+v", src, pub)
	}
	h, err := DecodeContentHeader(read("publish.header").Payload)
	if err != nil || h.ClassID != ClassBasic || h.BodySize != uint64(len(`{"hello":"world"}`)) {
		t.Fatalf("%s: content header = %+v, %v", src, h, err)
	}
	if PeekDeliveryMode(h.RawProps) != 2 {
		t.Errorf("%s: PeekDeliveryMode = %d", src, PeekDeliveryMode(h.RawProps))
	}
	props, err := DecodeProperties(h.RawProps)
	if err != nil {
		t.Fatalf("%s: properties: %v", src, err)
	}
	wantHeaders := Table{
		"bool": true, "byte": uint8(200), "int8": int8(-8), "int16": int16(-1600), "int": int32(7),
		"int32": int32(-320000), "int64": int64(-64000000000), "uint16": uint16(65000), "uint32": uint32(4000000000),
		"float32": float32(2.5), "float64": 6.25, "string": "text", "bytes": []byte{1, 2, 3},
		"decimal": Decimal{Scale: 2, Value: 314}, "time": goldenTime,
		"table": Table{"nested": Table{"deep": int32(1)}}, "array": []any{int32(1), "two", true}, "void": nil,
	}
	wantProps := Properties{
		Flags: 0xfff8, ContentType: "application/json", ContentEncoding: "gzip", Headers: wantHeaders,
		DeliveryMode: 2, Priority: 5, CorrelationID: "corr-7", ReplyTo: "reply-q", Expiration: "60000",
		MessageID: "msg-7", Timestamp: goldenTime, Type: "order.created", UserID: "guest", AppID: "golden-app",
	}
	if !reflect.DeepEqual(props, wantProps) {
		t.Errorf("%s: properties\n got %#v\nwant %#v", src, props, wantProps)
	}
	if body := read("publish.body"); string(body.Payload) != `{"hello":"world"}` {
		t.Errorf("%s: body = %q", src, body.Payload)
	}

	bc := method("basic.consume").(*BasicConsume)
	if bc.Queue != "golden-q" || bc.ConsumerTag != "ctag-golden" || bc.NoAck || !bc.Exclusive || bc.NoLocal ||
		bc.NoWait || !reflect.DeepEqual(bc.Arguments, Table{"x-priority": int32(10)}) {
		t.Errorf("%s: basic.consume = %+v", src, bc)
	}
	if ack := method("basic.ack").(*BasicAck); ack.DeliveryTag != 1 || ack.Multiple {
		t.Errorf("%s: basic.ack = %+v", src, ack)
	}
}
