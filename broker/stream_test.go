package broker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var streamArgs = amqp.Table{"x-queue-type": "stream"}

// streamRead consumes from a stream from offset (nil: none given) with the
// given prefetch, acking everything, until n messages or a quiet period;
// it returns the bodies and the x-stream-offset headers.
func streamRead(t *testing.T, p peer, q string, offset any, n int) ([]string, []int64) {
	t.Helper()
	c, ch := p.channel(t)
	defer c.Close()
	ch.Qos(10, 0, false)
	var args amqp.Table
	if offset != nil {
		args = amqp.Table{"x-stream-offset": offset}
	}
	ds, err := ch.Consume(q, "", false, false, false, false, args)
	if err != nil {
		t.Fatalf("consume from %v: %v", offset, err)
	}
	var bodies []string
	var offsets []int64
	for len(bodies) < n {
		select {
		case d := <-ds:
			o, ok := d.Headers["x-stream-offset"].(int64)
			if !ok {
				t.Fatalf("delivery without an int64 x-stream-offset: %v", d.Headers)
			}
			if d.Redelivered {
				t.Fatal("stream delivery flagged redelivered")
			}
			bodies = append(bodies, string(d.Body))
			offsets = append(offsets, o)
			d.Ack(false)
		case <-time.After(500 * time.Millisecond):
			return bodies, offsets
		}
	}
	return bodies, offsets
}

func seqStrings(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// TestStreamOffsets: consumers read a stream without removing anything,
// each from the x-stream-offset it gives; every delivery carries its
// offset, the exchange and routing key it was published with, and any
// header of its own.
func TestStreamOffsets(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("st")
		p.declare(t, ch, "st", true, streamArgs)
		x := p.n("st-x")
		ch.ExchangeDeclare(x, "direct", false, false, false, false, nil)
		p.cleanup(t, "st-x", true)
		ch.QueueBind(q, "k", x, false, nil)
		ch.Confirm(false)
		var msgs []amqp.Publishing
		for i := 0; i < 20; i++ {
			msgs = append(msgs, amqp.Publishing{Body: []byte(strconv.Itoa(i)), Headers: amqp.Table{"h": int32(i)}})
		}
		publishConfirmed(t, ch, x, "k", msgs...)

		// first: everything, offsets from 0.
		c, cch := p.channel(t)
		cch.Qos(5, 0, false)
		ds, err := cch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		if err != nil {
			t.Fatal(err)
		}
		d := recvN(t, ds, 1)[0]
		if d.Exchange != x || d.RoutingKey != "k" || d.Headers["h"] != int32(0) || d.Headers["x-stream-offset"] != int64(0) {
			t.Fatalf("first delivery: ex %q key %q headers %v", d.Exchange, d.RoutingKey, d.Headers)
		}
		c.Close()
		got, offs := streamRead(t, p, q, "first", 20)
		if !slices.Equal(got, seqStrings(0, 20)) || offs[0] != 0 || offs[19] != 19 {
			t.Fatalf("first: %v %v", got, offs)
		}
		// Reading removed nothing: a second reader sees it all again.
		if got, _ := streamRead(t, p, q, "first", 20); len(got) != 20 {
			t.Fatalf("second reader got %d", len(got))
		}
		for _, tc := range []struct {
			offset any
			want   []string
		}{
			{int64(15), seqStrings(15, 20)},
			{int32(3), seqStrings(3, 20)},
			{int64(-5), seqStrings(0, 20)},
			{int64(1000), nil},
			{"next", nil},
			{nil, nil},
			{"1h", seqStrings(0, 20)},
			{time.Now().Add(-time.Hour), seqStrings(0, 20)},
		} {
			if got, offs := streamRead(t, p, q, tc.offset, 20); !slices.Equal(got, tc.want) {
				t.Fatalf("offset %v (%T): got %v (offsets %v), want %v", tc.offset, tc.offset, got, offs, tc.want)
			}
		}
		// last: starts in the last chunk written, which holds message 19.
		got, offs = streamRead(t, p, q, "last", 20)
		if len(got) == 0 || got[len(got)-1] != "19" || offs[0] > 19 {
			t.Fatalf("last: %v", got)
		}
		// next: only what is published after the consumer starts.
		c2, nch := p.channel(t)
		defer c2.Close()
		nch.Qos(10, 0, false)
		nds, _ := nch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "next"})
		time.Sleep(50 * time.Millisecond)
		publishConfirmed(t, ch, x, "k", amqp.Publishing{Body: []byte("late")})
		if d := recvN(t, nds, 1)[0]; string(d.Body) != "late" || d.Headers["x-stream-offset"] != int64(20) {
			t.Fatalf("next got %q at %v", d.Body, d.Headers["x-stream-offset"])
		}
	})
}

// TestStreamTimestampOffset: a timestamp offset (seconds) attaches at the
// first message published at or after it.
func TestStreamTimestampOffset(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("st-ts")
		p.declare(t, ch, "st-ts", true, streamArgs)
		ch.Confirm(false)
		publishConfirmed(t, ch, "", q, amqp.Publishing{Body: []byte("old1")}, amqp.Publishing{Body: []byte("old2")})
		time.Sleep(1100 * time.Millisecond)
		mark := time.Now()
		time.Sleep(1100 * time.Millisecond)
		publishConfirmed(t, ch, "", q, amqp.Publishing{Body: []byte("new1")}, amqp.Publishing{Body: []byte("new2")})
		if got, _ := streamRead(t, p, q, mark, 10); !slices.Equal(got, []string{"new1", "new2"}) {
			t.Fatalf("from %v: %v", mark, got)
		}
	})
}

// TestStreamCredit: consumption needs a prefetch; acks (and nacks) give
// credit back, and nothing is redelivered.
func TestStreamCredit(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("st-credit")
		p.declare(t, ch, "st-credit", true, streamArgs)
		ch.Confirm(false)
		var msgs []amqp.Publishing
		for i := 0; i < 6; i++ {
			msgs = append(msgs, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
		}
		publishConfirmed(t, ch, "", q, msgs...)
		_, cch := p.channel(t)
		cch.Qos(2, 0, false)
		ds, _ := cch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		got := recvN(t, ds, 2)
		expectNone(t, ds, 200*time.Millisecond)
		got[0].Ack(false)
		d := recvN(t, ds, 1)[0]
		if string(d.Body) != "2" {
			t.Fatalf("after one ack got %q", d.Body)
		}
		if p.rabbit {
			return // 3.10 closes the channel on a nack; 4.x takes it as credit
		}
		got[1].Nack(false, true) // credit too, no redelivery
		if d := recvN(t, ds, 1)[0]; string(d.Body) != "3" {
			t.Fatalf("after a nack got %q, want the next message", d.Body)
		}
	})
}

// TestStreamRefusals: the replies RabbitMQ gives to what streams do not
// support.
func TestStreamRefusals(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		rs := "queue '" + p.n("st-no") + "' in vhost '/'"
		_, ch := p.channel(t)
		p.declare(t, ch, "st-no", true, streamArgs)
		for _, tc := range []struct {
			durable bool
			args    amqp.Table
			want    string
		}{
			{false, streamArgs, "invalid property 'non-durable' for queue '" + p.n("st-bad") + "' in vhost '/'"},
			{true, withArgs(streamArgs, "x-message-ttl", int32(5)), "invalid arg 'x-message-ttl' for queue '" + p.n("st-bad") + "' in vhost '/' of queue type rabbit_stream_queue"},
			{true, withArgs(streamArgs, "x-max-age", "5x"), "invalid arg 'x-max-age' for queue '" + p.n("st-bad") + "' in vhost '/': invalid_max_age"},
			{true, withArgs(streamArgs, "x-stream-max-segment-size-bytes", int64(4_000_000_000)), "Exceeded max value for x-stream-max-segment-size-bytes"},
		} {
			err := p.tryDeclare(t, "st-bad", tc.durable, false, false, tc.args)
			wantAMQPError(t, err, 406, "PRECONDITION_FAILED - "+tc.want)
		}
		// No prefetch: 406 (RabbitMQ 3.10 words it differently).
		_, cch := p.channel(t)
		_, err := cch.Consume(p.n("st-no"), "", false, false, false, false, nil)
		want := "PRECONDITION_FAILED - consumer prefetch count is not set for stream " + rs
		if p.rabbit {
			want = ""
		}
		wantAMQPError(t, err, 406, want)
		// Automatic acks: 540, a connection error.
		c, cch := p.channel(t)
		cch.Qos(5, 0, false)
		_, err = cch.Consume(p.n("st-no"), "", true, false, false, false, nil)
		want = "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream " + rs
		if p.rabbit {
			want = ""
		}
		wantAMQPError(t, err, 540, want)
		time.Sleep(50 * time.Millisecond)
		if !c.IsClosed() {
			t.Fatal("540 did not close the connection")
		}
		_, cch = p.channel(t)
		_, _, err = cch.Get(p.n("st-no"), false)
		wantAMQPError(t, err, 540, "NOT_IMPLEMENTED - basic.get not supported by stream queues "+rs)
		_, cch = p.channel(t)
		_, err = cch.QueuePurge(p.n("st-no"), false)
		wantAMQPError(t, err, 540, "NOT_IMPLEMENTED - queue.purge not supported by stream queues "+rs)
		_, cch = p.channel(t)
		cch.Qos(5, 0, false)
		_, err = cch.Consume(p.n("st-no"), "", false, false, false, false, amqp.Table{"x-priority": int32(3)})
		wantAMQPError(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-priority' for "+rs+" of queue type rabbit_stream_queue")
	})
	if testing.Short() {
		return
	}
	// RabbitMQ 4.x: a global prefetch is refused with 540; a bad offset is
	// a 406 naming it (3.10 answered 541).
	p := peer{name: "warren", url: b.url}
	_, ch := p.channel(t)
	ch.QueueDeclare("st-g", true, false, false, false, streamArgs)
	ch.Qos(5, 0, false)
	ch.Qos(10, 0, true)
	_, err := ch.Consume("st-g", "", false, false, false, false, nil)
	wantAMQPError(t, err, 540, "NOT_IMPLEMENTED - queue 'st-g' in vhost '/' does not support global qos")
	_, ch = p.channel(t)
	ch.Qos(5, 0, false)
	_, err = ch.Consume("st-g", "", false, false, false, false, amqp.Table{"x-stream-offset": "bogus"})
	wantAMQPError(t, err, 406, `PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'st-g' in vhost '/': {invalid_stream_offset_arg,{longstr,<<"bogus">>}}`)
}

// TestStreamRetention: x-max-length-bytes and x-max-age remove the oldest
// segments, whole ones (x-stream-max-segment-size-bytes), never the last;
// consumers from "first" then start at the first offset kept.
func TestStreamRetention(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	args := withArgs(streamArgs, "x-max-length-bytes", int32(20_000), "x-stream-max-segment-size-bytes", int32(5_000))
	if _, err := ch.QueueDeclare("st-ret", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	body := make([]byte, 500)
	rand.NewChaCha8([32]byte{1}).Read(body) // incompressible: segments fill
	for i := 0; i < 200; i++ {
		publishConfirmed(t, ch, "", "st-ret", amqp.Publishing{Body: append([]byte(fmt.Sprintf("%03d", i)), body...)})
	}
	// The size limit applies as segments roll, without a call.
	q := b.srv.lookupVHost("/").queueByName("st-ret")
	q.mu.Lock()
	first := q.st.First()
	segs, bytes := q.st.DiskUsage()
	q.mu.Unlock()
	if first == 1 || bytes > 20_000+6_000 || segs < 2 {
		t.Fatalf("after retention: first offset %d, %d segments, %d bytes", first-1, segs, bytes)
	}
	got, offs := streamRead(t, peer{name: "warren", url: b.url}, "st-ret", "first", 1000)
	if len(got) == 0 || offs[0] != int64(first-1) || got[len(got)-1][:3] != "199" || got[0][:3] != fmt.Sprintf("%03d", first-1) {
		t.Fatalf("after retention read %d messages from offset %v (first %d)", len(got), offs[:1], first-1)
	}
	if st, _ := ch.QueueDeclarePassive("st-ret", true, false, false, false, nil); st.Messages != len(got) {
		t.Fatalf("declare-ok says %d messages, %d readable", st.Messages, len(got))
	}

	// Age: with one second of retention, segments written two seconds ago
	// go, and the last one stays even when old.
	args = withArgs(streamArgs, "x-max-age", "1s", "x-stream-max-segment-size-bytes", int32(2_000))
	ch.QueueDeclare("st-age", true, false, false, false, args)
	for i := 0; i < 20; i++ {
		publishConfirmed(t, ch, "", "st-age", amqp.Publishing{Body: body})
	}
	time.Sleep(2 * time.Second)
	publishConfirmed(t, ch, "", "st-age", amqp.Publishing{Body: []byte("fresh")})
	qa := b.srv.lookupVHost("/").queueByName("st-age")
	qa.mu.Lock()
	qa.applyRetentionLocked(time.Now())
	n := qa.st.Len()
	qa.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d messages left after age retention, want only the fresh one", n)
	}
}

// TestStreamKill9: a stream's messages and offsets survive SIGKILL.
func TestStreamKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	c := startChild(t, dir)
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	ch.QueueDeclare("sk", true, false, false, false, streamArgs)
	ch.Confirm(false)
	var msgs []amqp.Publishing
	for i := 0; i < 100; i++ {
		msgs = append(msgs, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
	publishConfirmed(t, ch, "", "sk", msgs...)
	c.kill()
	conn.Close()
	c2 := startChild(t, dir)
	got, offs := streamRead(t, peer{name: "warren", url: c2.url()}, "sk", "first", 200)
	if !slices.Equal(got, seqStrings(0, 100)) || offs[99] != 99 {
		t.Fatalf("after kill -9: %d messages, offsets %v..%v", len(got), offs[:1], offs[len(offs)-1:])
	}
}
