package amqpwire

import (
	"bytes"
	"testing"
)

// publishStream returns n publishes of a 1 KiB persistent message as frames.
func publishStream(n int) (stream []byte, body []byte) {
	body = bytes.Repeat([]byte{'b'}, 1024)
	props := (&Properties{ContentType: "application/octet-stream", DeliveryMode: 2, MessageID: "id-1"}).AppendTo(nil)
	pub := &BasicPublish{Exchange: "amq.direct", RoutingKey: "orders"}
	for i := 0; i < n; i++ {
		stream = AppendMethodFrame(stream, 1, pub)
		stream = AppendContentFrames(stream, 1, ClassBasic, uint64(len(body)), props, body, 131072)
	}
	return stream, body
}

// TestHotPathAllocs proves the steady-state publish, deliver and ack paths
// allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	const runs = 100
	stream, _ := publishStream(runs + 1)
	src := bytes.NewReader(stream)
	fr := NewFrameReader(src, 131072)
	var dec MethodDecoder
	readPublish := func() {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		m, err := dec.Decode(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if p := m.(*BasicPublish); p.RoutingKey != "orders" {
			t.Fatalf("routing key %q", p.RoutingKey)
		}
		f, err = fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		h, err := DecodeContentHeader(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if PeekDeliveryMode(h.RawProps) != 2 {
			t.Fatal("delivery mode lost")
		}
		if f, err = fr.ReadFrame(); err != nil || len(f.Payload) != 1024 {
			t.Fatalf("body: %d bytes, %v", len(f.Payload), err)
		}
	}
	readPublish() // warm up: buffers and strings
	if a := testing.AllocsPerRun(runs-1, readPublish); a != 0 {
		t.Errorf("publish decode: %v allocs, want 0", a)
	}

	for _, m := range []Method{
		&BasicAck{DeliveryTag: 7, Multiple: true},
		&BasicNack{DeliveryTag: 8, Requeue: true},
		&BasicReject{DeliveryTag: 9},
		&BasicPublish{Exchange: "x", RoutingKey: "k"},
	} {
		payload := m.AppendTo(nil)
		if _, err := dec.Decode(payload); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(runs, func() {
			if _, err := dec.Decode(payload); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%s decode: %v allocs, want 0", m.Name(), a)
		}
	}

	buf := make([]byte, 0, 4096)
	rawProps := (&Properties{DeliveryMode: 2}).AppendTo(nil)
	body := make([]byte, 1024)
	deliver := &BasicDeliver{ConsumerTag: "amq.ctag-1", Exchange: "amq.direct", RoutingKey: "orders"}
	ack := &BasicAck{}
	if a := testing.AllocsPerRun(runs, func() {
		deliver.DeliveryTag++
		buf = AppendMethodFrame(buf[:0], 1, deliver)
		buf = AppendContentFrames(buf, 1, ClassBasic, uint64(len(body)), rawProps, body, 131072)
		ack.DeliveryTag++
		buf = AppendMethodFrame(buf, 1, ack)
		buf = AppendHeartbeatFrame(buf)
	}); a != 0 {
		t.Errorf("deliver and ack encode: %v allocs, want 0", a)
	}
	f, err := NewFrameReader(bytes.NewReader(buf), 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if m, err := DecodeMethod(f.Payload); err != nil || m.(*BasicDeliver).DeliveryTag != deliver.DeliveryTag {
		t.Fatalf("encoded deliver decodes to %+v, %v", m, err)
	}
}
