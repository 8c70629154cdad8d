package broker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/amqpwire"
)

// TestAcceptSurvivesFileDescriptorExhaustion opens more plain TCP
// connections than the broker has file descriptors (a child broker with
// RLIMIT_NOFILE 200 and no connection limit), so that accept fails with
// EMFILE, then checks the broker still serves AMQP once they are gone.
func TestAcceptSurvivesFileDescriptorExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	c := startChild(t, t.TempDir(), "WARREN_CHILD_NOFILE=200", "WARREN_CHILD_MAXCONN=-1")
	var socks []net.Conn
	for i := 0; i < 300; i++ {
		nc, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		socks = append(socks, nc)
	}
	// Let the broker hit the limit on the backlog.
	time.Sleep(300 * time.Millisecond)
	for _, nc := range socks {
		nc.Close()
	}
	if c.cmd.ProcessState != nil {
		t.Fatal("broker process exited")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := amqp.Dial(c.url())
		if err == nil {
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker no longer accepts AMQP connections: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMaxConnections refuses connections beyond the limit and accepts
// again once one closes.
func TestMaxConnections(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxConnections: 2})
	c1 := b.dial()
	b.dial()
	if c, err := amqp.Dial(b.url); err == nil {
		c.Close()
		t.Fatal("third connection accepted over a limit of 2")
	}
	c1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := amqp.Dial(b.url)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeadLetterCycleEnds: two queues with x-max-length 1 dead-letter to
// each other. Overflow chains must end (RabbitMQ's cycle rule drops the
// message that would die again in a queue it already died in) instead of
// recursing until the stack overflows.
func TestDeadLetterCycleEnds(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	for _, q := range [][2]string{{"cyc-a", "cyc-b"}, {"cyc-b", "cyc-a"}} {
		if _, err := ch.QueueDeclare(q[0], false, false, false, false, amqp.Table{
			"x-max-length": int32(1), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q[1]}); err != nil {
			t.Fatal(err)
		}
	}
	for _, body := range []string{"m1", "m2", "m3"} {
		publish(t, ch, "", "cyc-a", amqp.Publishing{Body: []byte(body)})
	}
	// A synchronous round trip: the publishes are processed.
	if _, err := ch.QueueDeclarePassive("cyc-a", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	a, ok, err := ch.Get("cyc-a", true)
	if err != nil || !ok || string(a.Body) != "m3" {
		t.Fatalf("cyc-a: got %q ok=%v err=%v, want m3", a.Body, ok, err)
	}
	bm, ok, err := ch.Get("cyc-b", true)
	if err != nil || !ok || string(bm.Body) != "m2" {
		t.Fatalf("cyc-b: got %q ok=%v err=%v, want m2", bm.Body, ok, err)
	}
	deaths, _ := bm.Headers["x-death"].([]any)
	if len(deaths) != 1 || deaths[0].(amqp.Table)["queue"] != "cyc-a" || deaths[0].(amqp.Table)["reason"] != "maxlen" {
		t.Fatalf("m2 x-death: %v", bm.Headers["x-death"])
	}
	for _, q := range []string{"cyc-a", "cyc-b"} {
		if _, ok, _ := ch.Get(q, true); ok {
			t.Fatalf("%s holds more than one message", q)
		}
	}
}

// TestDeadLetterCycleWithRejectContinues: a rejection inside the cycle
// means a client is in the loop, so RabbitMQ does not treat it as a cycle.
func TestDeadLetterCycleWithRejectContinues(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	// rj-a dead-letters rejected messages to rj-b; rj-b expires them back
	// to rj-a after 10 ms.
	if _, err := ch.QueueDeclare("rj-a", false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rj-b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("rj-b", false, false, false, false, amqp.Table{
		"x-message-ttl": int32(10), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rj-a"}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "rj-a", amqp.Publishing{Body: []byte("x")})
	for round := 1; round <= 3; round++ {
		var m amqp.Delivery
		deadline := time.Now().Add(5 * time.Second)
		for {
			var ok bool
			var err error
			m, ok, err = ch.Get("rj-a", false)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: message did not come back to rj-a", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if round > 1 {
			deaths, _ := m.Headers["x-death"].([]any)
			if len(deaths) != 2 {
				t.Fatalf("round %d: x-death %v", round, deaths)
			}
		}
		if err := m.Reject(false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDefinitionDeleteErrorsReachClient: when the index cannot be written,
// deleting a queue, an exchange or a binding answers 541 INTERNAL_ERROR
// and leaves the definition (and the queue's messages) in place, instead
// of reporting success while the index still holds it.
func TestDefinitionDeleteErrorsReachClient(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	if _, err := ch.QueueDeclare("keep", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("keepx", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("keep", "k", "keepx", false, nil); err != nil {
		t.Fatal(err)
	}
	// Confirmed before the failures start: an unconfirmed publish may still
	// be unread when the restart below closes the connection.
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	if ok := publishConfirmed(t, ch, "", "keep", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("precious")}); !ok[0] {
		t.Fatal("nacked")
	}
	idx := b.srv.Store().Index()
	idx.FailDefinitionWritesForTesting(errors.New("injected I/O error"))

	for name, op := range map[string]func(*amqp.Channel) error{
		"queue.delete":    func(ch *amqp.Channel) error { _, err := ch.QueueDelete("keep", false, false, false); return err },
		"exchange.delete": func(ch *amqp.Channel) error { return ch.ExchangeDelete("keepx", false, false) },
		"queue.unbind":    func(ch *amqp.Channel) error { return ch.QueueUnbind("keep", "k", "keepx", nil) },
	} {
		_, ch := b.channel()
		err := op(ch)
		wantAMQPError(t, err, amqp.InternalError, "")
		if !strings.Contains(err.Error(), "injected I/O error") {
			t.Fatalf("%s: error does not say why: %v", name, err)
		}
	}
	idx.FailDefinitionWritesForTesting(nil)
	b = b.restart()
	_, ch = b.channel()
	// The binding still routes and the message is still there.
	publish(t, ch, "keepx", "k", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("routed")})
	for _, want := range []string{"precious", "routed"} {
		m, ok, err := ch.Get("keep", true)
		if err != nil || !ok || string(m.Body) != want {
			t.Fatalf("got %q ok=%v err=%v, want %q", m.Body, ok, err, want)
		}
	}
}

// TestSlowConsumerWithHeartbeatsIsKept: a consumer that stops reading for
// longer than the write timeout, several times, while its heartbeats keep
// arriving, is slow, not dead: it must get every message on the same
// connection. The client is driven by hand so that it really stops reading
// its socket (the official client buffers deliveries without bound).
func TestSlowConsumerWithHeartbeatsIsKept(t *testing.T) {
	if testing.Short() {
		t.Skip("slow by design")
	}
	b := startBrokerConfig(t, Config{WriteTimeout: 800 * time.Millisecond})
	_, pch := b.channel()
	if _, err := pch.QueueDeclare("slow", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	const n, size = 1200, 16 << 10 // 19 MB, more than the socket buffers hold
	body := make([]byte, size)
	for i := 0; i < n; i++ {
		publish(t, pch, "", "slow", amqp.Publishing{Body: body})
	}
	r := dialRaw(t, b)
	r.nc.SetDeadline(time.Time{})
	r.openHeartbeat(1)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // heartbeats every 300 ms, whatever the reader does
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.nc.Write(amqpwire.AppendHeartbeatFrame(nil))
			}
		}
	}()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.BasicConsume{Queue: "slow", NoAck: true})
	expect[*amqpwire.BasicConsumeOk](r)
	got, pauses := 0, 0
	for got < n {
		r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection lost after %d of %d deliveries: %v", got, n, err)
		}
		if f.Type != amqpwire.FrameMethod {
			continue
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *amqpwire.BasicDeliver:
			got++
			if got%300 == 0 && pauses < 3 {
				// Read nothing for 2.5 write timeouts; heartbeats go on.
				pauses++
				time.Sleep(2 * time.Second)
			}
		case *amqpwire.ConnectionClose:
			t.Fatalf("closed after %d of %d deliveries: %d %s", got, n, m.ReplyCode, m.ReplyText)
		}
	}
}

// TestDeadReaderIsDropped: a peer that neither reads nor sends (no
// heartbeats negotiated) is dropped after the write timeout, and the
// broker's connection count falls back.
func TestDeadReaderIsDropped(t *testing.T) {
	b := startBrokerConfig(t, Config{WriteTimeout: 300 * time.Millisecond})
	_, pch := b.channel()
	pch.QueueDeclare("dead", false, false, false, false, nil)
	body := make([]byte, 16<<10)
	for i := 0; i < 1200; i++ {
		publish(t, pch, "", "dead", amqp.Publishing{Body: body})
	}
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.BasicConsume{Queue: "dead"})
	before := b.connCount()
	deadline := time.Now().Add(10 * time.Second)
	for b.connCount() >= before {
		if time.Now().After(deadline) {
			t.Fatal("a peer that reads nothing and sends nothing was kept")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUnreadReturnsStopTheReader: a client publishing mandatory messages
// that route nowhere, and never reading the returns, must be stopped
// (its socket is no longer read) instead of growing the broker's output
// buffer without bound.
func TestUnreadReturnsStopTheReader(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	body := make([]byte, 64<<10)
	var msg []byte
	msg = amqpwire.AppendMethodFrame(msg, 1, &amqpwire.BasicPublish{RoutingKey: "nowhere", Mandatory: true})
	msg = amqpwire.AppendContentFrames(msg, 1, amqpwire.ClassBasic, uint64(len(body)), []byte{0, 0}, body, 131072)
	const total = 512 << 20
	written := 0
	r.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for written < total {
		n, err := r.nc.Write(msg)
		written += n
		if err != nil {
			break // blocked: the broker stopped reading us
		}
	}
	if written >= total {
		t.Fatalf("the broker read %d MB of publishes whose returns were never read", written>>20)
	}
	// One publish batch's returns may land on top of the limit.
	if n, max := b.outBytes(), 2*DefaultCongestionLimit+maxBatchBytes+len(msg); n > max {
		t.Fatalf("%d bytes of returns buffered, bound %d", n, max)
	}
	t.Logf("client blocked after %d MB; broker holds %d KB of returns", written>>20, b.outBytes()>>10)
}

// TestUnackedBoundPerConnection: a consumer with prefetch 0 that never
// acks gets at most MaxUnacked deliveries; acks let more through, also to
// the connection's other queues.
func TestUnackedBoundPerConnection(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxUnacked: 100})
	_, pch := b.channel()
	for _, q := range []string{"ua1", "ua2"} {
		pch.QueueDeclare(q, false, false, false, false, nil)
		for i := 0; i < 150; i++ {
			publish(t, pch, "", q, amqp.Publishing{Body: []byte("x")})
		}
	}
	_, ch := b.channel()
	d1, err := ch.Consume("ua1", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, d1, 100)
	expectNone(t, d1, 200*time.Millisecond)
	d2, err := ch.Consume("ua2", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	expectNone(t, d2, 200*time.Millisecond)
	// Acking 60 lets 60 more through, to either queue.
	if err := ch.Ack(got[59].DeliveryTag, true); err != nil {
		t.Fatal(err)
	}
	n := 0
	timeout := time.After(5 * time.Second)
	for n < 60 {
		select {
		case <-d1:
		case <-d2:
		case <-timeout:
			t.Fatalf("%d of 60 deliveries after the ack", n)
		}
		n++
	}
	select {
	case <-d1:
		t.Fatal("more than the bound delivered")
	case <-d2:
		t.Fatal("more than the bound delivered")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestTransactionBound: uncommitted transactional publishes past
// MaxTxBytes close the channel with 406; the connection and its budget
// stay usable.
func TestTransactionBound(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxTxBytes: 1 << 20})
	conn, ch := b.channel()
	ch.QueueDeclare("txq", false, false, false, false, nil)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 100<<10)
	for i := 0; i < 11; i++ {
		if err := ch.PublishWithContext(context.Background(), "", "txq", false, false, amqp.Publishing{Body: body}); err != nil {
			break
		}
	}
	wantChannelClose(t, closed, amqp.PreconditionFailed, "")
	// The rolled-back bytes are released: a new transaction of 900 KB commits.
	ch2, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ch2.Tx()
	for i := 0; i < 9; i++ {
		publish(t, ch2, "", "txq", amqp.Publishing{Body: body})
	}
	if err := ch2.TxCommit(); err != nil {
		t.Fatal(err)
	}
	q, err := ch2.QueueDeclarePassive("txq", false, false, false, false, nil)
	if err != nil || q.Messages != 9 {
		t.Fatalf("after commit: %+v %v", q, err)
	}
}

// TestConsumerAndQueueBounds: basic.consume past --max-consumers per
// connection and queue.declare past --max-queues fail with 406; freeing
// one lets the next through.
func TestConsumerAndQueueBounds(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxConsumers: 2, MaxQueues: 3})
	conn, ch := b.channel()
	for _, q := range []string{"b1", "b2", "b3"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ch.QueueDeclare("b4", false, false, false, false, nil)
	wantAMQPError(t, err, amqp.PreconditionFailed, "PRECONDITION_FAILED - cannot declare queue 'b4' in vhost '/': queue limit (3) is reached")
	ch, _ = conn.Channel()
	if _, err := ch.QueueDelete("b3", false, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("b4", false, false, false, false, nil); err != nil {
		t.Fatalf("declare after a delete: %v", err)
	}
	for _, tag := range []string{"t1", "t2"} {
		if _, err := ch.Consume("b1", tag, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	ch2, _ := conn.Channel()
	_, err = ch2.Consume("b2", "t3", false, false, false, false, nil)
	wantAMQPError(t, err, amqp.PreconditionFailed, "PRECONDITION_FAILED - reached maximum (2) of consumers per connection")
	if err := ch.Cancel("t1", false); err != nil {
		t.Fatal(err)
	}
	ch2, _ = conn.Channel()
	if _, err := ch2.Consume("b2", "t3", false, false, false, false, nil); err != nil {
		t.Fatalf("consume after a cancel: %v", err)
	}
	// Closing a channel gives its consumers' budget back.
	ch.Close()
	ch3, _ := conn.Channel()
	if _, err := ch3.Consume("b2", "t4", false, false, false, false, nil); err != nil {
		t.Fatalf("consume after a channel close: %v", err)
	}
}

// TestConsumerTimeout: a delivery left unacknowledged past the consumer
// timeout closes its channel with RabbitMQ's 406, and the message goes
// back to the queue for another consumer, flagged redelivered.
func TestConsumerTimeout(t *testing.T) {
	b := startBrokerConfig(t, Config{ConsumerTimeout: 300 * time.Millisecond})
	conn, ch := b.channel()
	ch.QueueDeclare("slowack", false, false, false, false, nil)
	publish(t, ch, "", "slowack", amqp.Publishing{Body: []byte("job")})
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume("slowack", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	recvN(t, ds, 1)
	select {
	case e := <-closed:
		wantAMQPError(t, e, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 300 ms. This timeout value can be configured, see consumers doc guide to learn more")
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed by the consumer timeout")
	}
	ch2, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	m, ok, err := ch2.Get("slowack", true)
	if err != nil || !ok || !m.Redelivered || string(m.Body) != "job" {
		t.Fatalf("after the timeout: %q ok=%v redelivered=%v err=%v", m.Body, ok, m.Redelivered, err)
	}
	// A consumer that acks in time is left alone.
	publish(t, ch2, "", "slowack", amqp.Publishing{Body: []byte("quick")})
	ds2, _ := ch2.Consume("slowack", "", false, false, false, false, nil)
	d := recvN(t, ds2, 1)[0]
	d.Ack(false)
	time.Sleep(600 * time.Millisecond)
	if _, err := ch2.QueueDeclarePassive("slowack", false, false, false, false, nil); err != nil {
		t.Fatalf("channel closed although every delivery was acked: %v", err)
	}
}

// TestUnreadRepliesStopTheReader: a client that pipelines methods and never
// reads their replies stops being read once the replies pass twice the
// congestion limit: the broker's output buffer stays bounded.
func TestUnreadRepliesStopTheReader(t *testing.T) {
	const limit = 64 << 10
	b := startBrokerConfig(t, Config{CongestionLimit: limit})
	name := strings.Repeat("r", 250)
	_, ch := b.channel()
	if _, err := ch.QueueDeclare(name, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	var batch []byte
	for range 200 {
		batch = amqpwire.AppendMethodFrame(batch, 1, &amqpwire.QueueDeclare{Queue: name, Passive: true})
	}
	const total = 256 << 20
	written := 0
	r.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	for written < total {
		n, err := r.nc.Write(batch)
		written += n
		if err != nil {
			break // blocked: the broker stopped reading us
		}
	}
	if written >= total {
		t.Fatalf("the broker read %d MB of declares whose replies were never read", written>>20)
	}
	if n, max := b.outBytes(), 2*limit+4<<10; n > max {
		t.Fatalf("%d bytes of replies buffered, bound %d", n, max)
	}
	t.Logf("client blocked after %d MB of declares; broker holds %d KB of replies", written>>20, b.outBytes()>>10)
}

// TestGetBoundedByMaxUnacked: basic.get without no-ack takes from the same
// per-connection bound as consumers; past it the queue looks empty until
// the client acks.
func TestGetBoundedByMaxUnacked(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxUnacked: 50})
	_, ch := b.channel()
	ch.QueueDeclare("getq", false, false, false, false, nil)
	for i := 0; i < 80; i++ {
		publish(t, ch, "", "getq", amqp.Publishing{Body: []byte("x")})
	}
	var last uint64
	got := 0
	for i := 0; i < 80; i++ {
		d, ok, err := ch.Get("getq", false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got++
			last = d.DeliveryTag
		}
	}
	if got != 50 {
		t.Fatalf("%d gets answered with a message, want the bound of 50", got)
	}
	if err := ch.Ack(last, true); err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get("getq", false)
	if err != nil || !ok {
		t.Fatalf("after the acks: %v %v", ok, err)
	}
	d.Ack(false)
	if q, err := b.srv.Queue("/", "getq"); err != nil || q.Ready != 29 {
		t.Fatalf("queue after 51 gets of 80: %+v %v", q, err)
	}
}

// TestSlowLargeConsumerStillRead: deliveries past twice the congestion
// limit (one large message is enough) stall the consumer's connection but
// do not stop the broker reading it: its acks (and heartbeats) still count.
func TestSlowLargeConsumerStillRead(t *testing.T) {
	const limit = 64 << 10
	b := startBrokerConfig(t, Config{CongestionLimit: limit})
	_, pch := b.channel()
	pch.QueueDeclare("bigq", false, false, false, false, nil)
	r := dialRaw(t, b)
	r.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.BasicConsume{Queue: "bigq", ConsumerTag: "slow"})
	expect[*amqpwire.BasicConsumeOk](r)
	body := make([]byte, 1<<20)
	for i := 0; i < 32; i++ {
		publish(t, pch, "", "bigq", amqp.Publishing{Body: body})
	}
	// The raw client reads nothing more: the broker's buffer holds what the
	// socket did not take.
	deadline := time.Now().Add(5 * time.Second)
	for b.outBytes() <= 2*limit {
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries did not back up: %d bytes buffered", b.outBytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	q, _ := b.srv.Queue("/", "bigq")
	if q.Unacked < 2 {
		t.Fatalf("fewer than two deliveries: %+v", q)
	}
	// Ack them one at a time: each ack must be read and applied although
	// the connection's output stays backed up (a blocked reader would take
	// one frame at most).
	// An ack counts in the queue's acked total once applied (the unacked
	// count may not fall: the freed room can take another delivery).
	for tag, left := uint64(1), q.Unacked; left > 0; tag++ {
		r.method(1, &amqpwire.BasicAck{DeliveryTag: tag})
		left--
		for {
			q, _ = b.srv.Queue("/", "bigq")
			if q.Stats.Acked >= tag {
				break
			}
			if time.Now().After(deadline.Add(5 * time.Second)) {
				t.Fatalf("ack %d of a stalled consumer was not read: %+v", tag, q)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if b.outBytes() <= 2*limit {
			break // the writer caught up meanwhile: nothing more to show
		}
	}
}

// TestLargeDeliveriesNotCopied: a large body goes to the consumer's socket
// from the log's memory (writev), not copied into the connection's output
// buffer, and arrives intact.
func TestLargeDeliveriesNotCopied(t *testing.T) {
	const limit = 64 << 10
	b := startBrokerConfig(t, Config{CongestionLimit: limit})
	_, pch := b.channel()
	pch.QueueDeclare("refq", true, false, false, false, nil)
	r := dialRaw(t, b)
	r.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.BasicConsume{Queue: "refq", ConsumerTag: "c", NoAck: true})
	expect[*amqpwire.BasicConsumeOk](r)
	bodies := make([][]byte, 24) // more than the sockets take
	for i := range bodies {
		bodies[i] = make([]byte, 1<<20+i)
		for j := range bodies[i] {
			bodies[i][j] = byte(j*31 + i)
		}
		publish(t, pch, "", "refq", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: bodies[i]})
	}
	// The consumer reads nothing yet: what the socket did not take waits
	// in the connection, referred to rather than copied.
	var out, refs int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		out, refs = b.connBuffers()
		if refs >= 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no large body waits by reference: %d bytes buffered, %d referred to", out, refs)
		}
	}
	if out > 16<<10 {
		t.Fatalf("%d bytes copied into the output buffer beside %d referred to", out, refs)
	}
	// Now read: every body arrives whole and in order.
	for i, want := range bodies {
		expect[*amqpwire.BasicDeliver](r)
		got := r.readContent()
		if !bytes.Equal(got, want) {
			t.Fatalf("delivery %d: %d bytes, differ from the %d published", i, len(got), len(want))
		}
	}
}
