package amqpwire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestReadProtocolHeader(t *testing.T) {
	if err := ReadProtocolHeader(strings.NewReader(ProtocolHeader + "rest")); err != nil {
		t.Fatalf("good header: %v", err)
	}
	for _, bad := range []string{"AMQP\x00\x00\x09\x00", "AMQP\x01\x01\x00\x09", "GET / HTTP/1.1", "AMQP\x00\x00\x08\x00"} {
		if err := ReadProtocolHeader(strings.NewReader(bad)); !errors.Is(err, ErrProtocolHeader) {
			t.Errorf("%q: err = %v, want ErrProtocolHeader", bad, err)
		}
	}
	if err := ReadProtocolHeader(strings.NewReader("AMQ")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short header: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	stream = AppendMethodFrame(stream, 1, &BasicAck{DeliveryTag: 42})
	stream = AppendHeartbeatFrame(stream)
	stream = AppendFrame(stream, FrameBody, 7, bytes.Repeat([]byte{'z'}, 5000))
	stream = AppendFrame(stream, FrameBody, 7, []byte("small"))

	fr := NewFrameReader(bytes.NewReader(stream), 8192)
	f, err := fr.ReadFrame()
	if err != nil || f.Type != FrameMethod || f.Channel != 1 {
		t.Fatalf("frame 1 = %+v, %v", f, err)
	}
	m, err := DecodeMethod(f.Payload)
	if err != nil || m.(*BasicAck).DeliveryTag != 42 {
		t.Fatalf("frame 1 method = %+v, %v", m, err)
	}
	f, err = fr.ReadFrame()
	if err != nil || f.Type != FrameHeartbeat || f.Channel != 0 || len(f.Payload) != 0 {
		t.Fatalf("frame 2 = %+v, %v", f, err)
	}
	f, err = fr.ReadFrame()
	if err != nil || f.Type != FrameBody || f.Channel != 7 || len(f.Payload) != 5000 {
		t.Fatalf("frame 3 = %v bytes, %v", len(f.Payload), err)
	}
	f, err = fr.ReadFrame()
	if err != nil || string(f.Payload) != "small" {
		t.Fatalf("frame 4 = %q, %v", f.Payload, err)
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

// TestFrameReaderBodySink: body frames are read into the memory the sink
// gives when it is large enough, other frames and a declined or short sink
// use the reader's buffer, and the frame-end octet is still checked.
func TestFrameReaderBodySink(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 700)
	var stream []byte
	stream = AppendMethodFrame(stream, 7, &BasicAck{DeliveryTag: 1})
	stream = AppendFrame(stream, FrameBody, 7, body[:5000])
	stream = AppendFrame(stream, FrameBody, 7, body[5000:])
	stream = AppendFrame(stream, FrameBody, 8, []byte("declined"))
	stream = AppendFrame(stream, FrameBody, 7, []byte("too long for what is left"))
	dst := make([]byte, 0, len(body)+4)
	var asked []int
	fr := NewFrameReader(bytes.NewReader(stream), 8192)
	fr.BodySink = func(ch uint16, size int) []byte {
		asked = append(asked, size)
		if ch != 7 {
			return nil
		}
		return dst[len(dst):cap(dst)]
	}
	if f, err := fr.ReadFrame(); err != nil || f.Type != FrameMethod {
		t.Fatalf("method frame: %+v, %v", f, err)
	}
	for i := 0; i < 2; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Payload) == 0 || &f.Payload[0] != &dst[:cap(dst)][len(dst)] {
			t.Fatalf("body frame %d not read into the sink's memory", i)
		}
		dst = dst[:len(dst)+len(f.Payload)]
	}
	if !bytes.Equal(dst, body) {
		t.Fatal("the body read through the sink differs")
	}
	if f, err := fr.ReadFrame(); err != nil || string(f.Payload) != "declined" {
		t.Fatalf("declined sink: %q, %v", f.Payload, err)
	}
	if f, err := fr.ReadFrame(); err != nil || string(f.Payload) != "too long for what is left" || &f.Payload[0] == &dst[:cap(dst)][len(dst)] {
		t.Fatalf("short sink: %q, %v", f.Payload, err)
	}
	if want := []int{5000, 2000, 8, 25}; fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Fatalf("sink asked for %v, want %v (body frames only)", asked, want)
	}
	if got := fr.Consumed(); got != uint64(len(stream)) {
		t.Fatalf("Consumed = %d, want %d", got, len(stream))
	}
	bad := AppendFrame(nil, FrameBody, 7, []byte("abc"))
	bad[len(bad)-1] = 0
	fr = NewFrameReader(bytes.NewReader(bad), 8192)
	fr.BodySink = func(uint16, int) []byte { return make([]byte, 3) }
	var e *Error
	if _, err := fr.ReadFrame(); !errors.As(err, &e) || e.Code != FrameError {
		t.Fatalf("bad frame end through the sink: %v", err)
	}
	fr = NewFrameReader(bytes.NewReader(bad[:len(bad)-1]), 8192)
	fr.BodySink = func(uint16, int) []byte { return make([]byte, 3) }
	if _, err := fr.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame through the sink: %v", err)
	}
}

func TestFrameReaderErrors(t *testing.T) {
	good := AppendFrame(nil, FrameBody, 1, []byte("abc"))
	badEnd := bytes.Clone(good)
	badEnd[len(badEnd)-1] = 0xCD
	tests := []struct {
		name     string
		in       []byte
		frameMax uint32
		code     uint16
		text     string
	}{
		{"too large", AppendFrame(nil, FrameBody, 1, make([]byte, 4089)), 4096, FrameError, "FRAME_ERROR - frame size 4097 exceeds frame-max 4096"},
		// Claims 4 GiB: must fail at once, before allocating or reading.
		{"huge size", []byte{FrameBody, 0, 1, 0xff, 0xff, 0xff, 0xff}, 0, FrameError, "FRAME_ERROR - frame size 4294967303 exceeds frame-max 131072"},
		{"bad frame end", badEnd, 4096, FrameError, "FRAME_ERROR - frame end octet 0xcd"},
		{"unknown type", AppendFrame(nil, 9, 1, nil), 4096, FrameError, "FRAME_ERROR - unknown frame type 9"},
		{"heartbeat off channel 0", AppendFrame(nil, FrameHeartbeat, 3, nil), 4096, FrameError, "FRAME_ERROR - heartbeat frame on channel 3"},
	}
	for _, tt := range tests {
		fr := NewFrameReader(bytes.NewReader(tt.in), tt.frameMax)
		_, err := fr.ReadFrame()
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || !strings.HasPrefix(e.Text, tt.text) {
			t.Errorf("%s: err = %v, want %d %q", tt.name, err, tt.code, tt.text)
			continue
		}
		if !e.Hard() {
			t.Errorf("%s: frame errors must be hard", tt.name)
		}
		if cap(fr.buf) > len(tt.in) {
			t.Errorf("%s: allocated %d bytes for %d bytes of input", tt.name, cap(fr.buf), len(tt.in))
		}
	}
	// A frame exactly at frame-max passes.
	exact := AppendFrame(nil, FrameBody, 1, make([]byte, 4088))
	if _, err := NewFrameReader(bytes.NewReader(exact), 4096).ReadFrame(); err != nil {
		t.Errorf("frame of exactly frame-max: %v", err)
	}
	// Truncated inside a frame.
	if _, err := NewFrameReader(bytes.NewReader(good[:len(good)-1]), 4096).ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: err = %v, want io.ErrUnexpectedEOF", err)
	}
	// SetFrameMax raises the limit.
	fr := NewFrameReader(bytes.NewReader(AppendFrame(nil, FrameBody, 1, make([]byte, 9000))), 4096)
	fr.SetFrameMax(16384)
	if _, err := fr.ReadFrame(); err != nil {
		t.Errorf("after SetFrameMax: %v", err)
	}
}

func TestAppendContentFrames(t *testing.T) {
	props := (&Properties{ContentType: "text/plain", DeliveryMode: 2}).AppendTo(nil)
	body := make([]byte, 10000)
	for i := range body {
		body[i] = byte(i)
	}
	for _, tt := range []struct {
		frameMax uint32
		sizes    []int
	}{
		{4096, []int{4088, 4088, 1824}},
		{5008, []int{5000, 5000}},
		{0, []int{10000}},
		{131072, []int{10000}},
	} {
		out := AppendContentFrames([]byte{0xAA}, 5, ClassBasic, uint64(len(body)), props, body, tt.frameMax)
		if out[0] != 0xAA {
			t.Fatal("prefix lost")
		}
		fr := NewFrameReader(bytes.NewReader(out[1:]), 1<<20)
		f, err := fr.ReadFrame()
		if err != nil || f.Type != FrameHeader || f.Channel != 5 {
			t.Fatalf("header frame = %+v, %v", f, err)
		}
		h, err := DecodeContentHeader(f.Payload)
		if err != nil || h.ClassID != ClassBasic || h.Weight != 0 || h.BodySize != 10000 || !bytes.Equal(h.RawProps, props) {
			t.Fatalf("header = %+v, %v", h, err)
		}
		var got []byte
		for _, want := range tt.sizes {
			f, err := fr.ReadFrame()
			if err != nil || f.Type != FrameBody || f.Channel != 5 || len(f.Payload) != want {
				t.Fatalf("frameMax %d: body frame = type %d len %d, %v; want len %d", tt.frameMax, f.Type, len(f.Payload), err, want)
			}
			if tt.frameMax != 0 && len(f.Payload)+8 > int(tt.frameMax) {
				t.Fatalf("frameMax %d: frame of %d bytes", tt.frameMax, len(f.Payload)+8)
			}
			got = append(got, f.Payload...)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("frameMax %d: body differs", tt.frameMax)
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("frameMax %d: extra frames: %v", tt.frameMax, err)
		}
	}
	// An empty body has a header frame only.
	out := AppendContentFrames(nil, 1, ClassBasic, 0, []byte{0, 0}, nil, 4096)
	if len(out) != 8+14 {
		t.Errorf("empty body: %d bytes, want a lone header frame of 22", len(out))
	}
}

// TestFrameReaderDoesNotAllocate: frames that fit in the reader's buffer
// are handed out as views of it, larger ones reuse one buffer.
func TestFrameReaderDoesNotAllocate(t *testing.T) {
	for _, size := range []int{5000, 100 << 10} {
		frame := AppendFrame(nil, FrameBody, 1, make([]byte, size))
		stream := bytes.Repeat(frame, 200)
		fr := NewFrameReader(bytes.NewReader(stream), 1<<20)
		fr.ReadFrame() // the first oversized frame sizes the spare buffer
		allocs := testing.AllocsPerRun(100, func() {
			if f, err := fr.ReadFrame(); err != nil || len(f.Payload) != size {
				t.Fatalf("frame: %d bytes, %v", len(f.Payload), err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d-byte frames: %.1f allocations per frame", size, allocs)
		}
	}
}

// TestAppendContentFramesRef: the frames around body parts that
// AppendContentFramesRef leaves out, with the parts put back where it says,
// are byte for byte what AppendContentFrames writes, for bodies that fit
// one frame, several, and none.
func TestAppendContentFramesRef(t *testing.T) {
	props := []byte{0x90, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 2}
	for _, size := range []int{0, 1, 4096, 131072 - 8, 131072 - 7, 300000, 1 << 20} {
		for _, frameMax := range []uint32{4096, 131072, 0} {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(i * 7)
			}
			want := AppendContentFrames([]byte("prefix"), 3, ClassBasic, uint64(size), props, body, frameMax)
			type ref struct {
				at   int
				part []byte
			}
			var refs []ref
			head := AppendContentFramesRef([]byte("prefix"), 3, ClassBasic, uint64(size), props, body, frameMax,
				func(at int, part []byte) { refs = append(refs, ref{at, part}) })
			var got []byte
			prev := 0
			for _, r := range refs {
				if r.at < prev {
					t.Fatal("unordered refs")
				}
				got = append(got, head[prev:r.at]...)
				got = append(got, r.part...)
				prev = r.at
			}
			got = append(got, head[prev:]...)
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d frame-max %d: reassembled frames differ (%d vs %d bytes)", size, frameMax, len(got), len(want))
			}
			if copied := len(head) - (len(want) - size); copied != 0 {
				t.Fatalf("size %d frame-max %d: %d body bytes copied into dst", size, frameMax, copied)
			}
			if size > 0 {
				// The parts alias the body.
				body[size-1]++
				if last := refs[len(refs)-1].part; last[len(last)-1] != body[size-1] {
					t.Fatalf("size %d: the last part is a copy", size)
				}
			}
		}
	}
}
