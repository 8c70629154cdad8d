package amqpwire

import (
	"bytes"
	"testing"
)

// BenchmarkPublishDecode reads basic.publish + content header + 1 KiB body
// frames through a FrameReader and decodes them as the broker does.
func BenchmarkPublishDecode(b *testing.B) {
	const batch = 1024
	stream, body := publishStream(batch)
	src := bytes.NewReader(stream)
	fr := NewFrameReader(src, 131072)
	var dec MethodDecoder
	b.SetBytes(int64(len(stream) / batch))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 {
			src.Reset(stream)
		}
		f, err := fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := dec.Decode(f.Payload); err != nil {
			b.Fatal(err)
		}
		if f, err = fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
		h, err := DecodeContentHeader(f.Payload)
		if err != nil {
			b.Fatal(err)
		}
		if PeekDeliveryMode(h.RawProps) != 2 {
			b.Fatal("delivery mode")
		}
		if f, err = fr.ReadFrame(); err != nil || len(f.Payload) != len(body) {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishEncode encodes basic.publish + content header + 1 KiB body.
func BenchmarkPublishEncode(b *testing.B) {
	body := bytes.Repeat([]byte{'b'}, 1024)
	props := (&Properties{ContentType: "application/octet-stream", DeliveryMode: 2, MessageID: "id-1"}).AppendTo(nil)
	pub := &BasicPublish{Exchange: "amq.direct", RoutingKey: "orders"}
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(AppendContentFrames(AppendMethodFrame(nil, 1, pub), 1, ClassBasic, 1024, props, body, 131072))))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = AppendMethodFrame(buf[:0], 1, pub)
		buf = AppendContentFrames(buf, 1, ClassBasic, uint64(len(body)), props, body, 131072)
	}
}

// BenchmarkDeliverEncode encodes a basic.deliver method frame.
func BenchmarkDeliverEncode(b *testing.B) {
	d := &BasicDeliver{ConsumerTag: "amq.ctag-abcdefghijklmnop", Exchange: "amq.direct", RoutingKey: "orders"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d.DeliveryTag++
		buf = AppendMethodFrame(buf[:0], 1, d)
	}
}

// BenchmarkAckDecode decodes a basic.ack method payload with a MethodDecoder.
func BenchmarkAckDecode(b *testing.B) {
	payload := (&BasicAck{DeliveryTag: 123456, Multiple: true}).AppendTo(nil)
	var dec MethodDecoder
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, err := dec.Decode(payload)
		if err != nil || m.(*BasicAck).DeliveryTag != 123456 {
			b.Fatal(err)
		}
	}
}

// BenchmarkAckEncode encodes a basic.ack method frame.
func BenchmarkAckEncode(b *testing.B) {
	ack := &BasicAck{Multiple: true}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ack.DeliveryTag++
		buf = AppendMethodFrame(buf[:0], 1, ack)
	}
}
