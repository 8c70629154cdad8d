package amqpwire

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// seedFrames returns frames for fuzz seeds: the stored amqp091-go frames and
// one of every generated method.
func seedFrames(tb testing.TB) [][]byte {
	var out [][]byte
	if data, err := os.ReadFile(goldenFile); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if _, hx, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				if b, err := hex.DecodeString(hx); err == nil {
					out = append(out, b)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, key := range methodKeys {
		m := newMethod(uint16(key>>16), uint16(key))
		fillMethod(tb, m, rng)
		out = append(out, AppendMethodFrame(nil, 1, m))
	}
	p := fullProperties()
	out = append(out, AppendContentFrames(nil, 1, ClassBasic, 5, p.AppendTo(nil), []byte("hello"), 4096))
	out = append(out, AppendHeartbeatFrame(nil))
	return out
}

// stringBytes totals the string and byte-slice lengths in a decoded value.
func stringBytes(v any) int {
	switch v := v.(type) {
	case string:
		return len(v)
	case []byte:
		return len(v)
	case Table:
		n := 0
		for k, x := range v {
			n += len(k) + stringBytes(x)
		}
		return n
	case []any:
		n := 0
		for _, x := range v {
			n += stringBytes(x)
		}
		return n
	}
	return 0
}

func FuzzReadFrame(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr)
	}
	f.Add([]byte{FrameBody, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		const frameMax = 4096
		fr := NewFrameReader(bytes.NewReader(data), frameMax)
		// Body frames on odd channels are read into memory of their own,
		// as the broker reads large message bodies.
		fr.BodySink = func(ch uint16, size int) []byte {
			if ch%2 == 1 {
				return make([]byte, size+int(ch%3))
			}
			return nil
		}
		var dec MethodDecoder
		consumed := 0
		for {
			f, err := fr.ReadFrame()
			if cap(fr.buf) > frameMax {
				t.Fatalf("buffer of %d bytes with frame-max %d", cap(fr.buf), frameMax)
			}
			if err != nil {
				return
			}
			if len(f.Payload)+8 > frameMax {
				t.Fatalf("accepted a frame of %d bytes", len(f.Payload)+8)
			}
			enc := AppendFrame(nil, f.Type, f.Channel, f.Payload)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("frame re-encodes differently")
			}
			consumed += len(enc)
			switch f.Type {
			case FrameMethod:
				m1, err1 := DecodeMethod(f.Payload)
				m2, err2 := dec.Decode(f.Payload)
				if (err1 == nil) != (err2 == nil) {
					t.Fatalf("DecodeMethod err %v, MethodDecoder err %v", err1, err2)
				}
				if err1 == nil && !bytes.Equal(m1.AppendTo(nil), m2.AppendTo(nil)) {
					t.Fatal("the decoders disagree")
				}
			case FrameHeader:
				h, err := DecodeContentHeader(f.Payload)
				if err == nil {
					if _, err := DecodeProperties(h.RawProps); err != nil {
						t.Fatalf("header validated but properties fail: %v", err)
					}
				}
			}
		}
	})
}

func FuzzDecodeMethod(f *testing.F) {
	for _, fr := range seedFrames(f) {
		if fr[0] == FrameMethod {
			f.Add(fr[7 : len(fr)-1])
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := DecodeMethod(payload)
		var dec MethodDecoder
		dec.Decode(seedPublish) // leave strings behind to be reused or replaced
		m2, err2 := dec.Decode(payload)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("DecodeMethod err %v, MethodDecoder err %v", err, err2)
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			return
		}
		enc := m.AppendTo(nil)
		if !bytes.Equal(enc, m2.AppendTo(nil)) {
			t.Fatal("the decoders disagree")
		}
		if len(enc) > len(payload) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(payload), len(enc))
		}
		m3, err := DecodeMethod(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !bytes.Equal(m3.AppendTo(nil), enc) {
			t.Fatal("re-encoding is not stable")
		}
	})
}

var seedPublish = (&BasicPublish{Exchange: "amq.direct", RoutingKey: "k"}).AppendTo(nil)

func FuzzTable(f *testing.F) {
	f.Add(AppendTable(nil, Table{"a": int32(1), "b": "x", "c": []any{Table{"d": nil}}, "t": time.Unix(5, 0)}))
	f.Add(AppendTable(nil, fullProperties().Headers))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(data)
		tab := r.Table()
		s := NewReader(data)
		s.skipTable()
		if (r.Err() == nil) != (s.Err() == nil) || r.Len() != s.Len() {
			t.Fatalf("Table err %v left %d, skipTable err %v left %d", r.Err(), r.Len(), s.Err(), s.Len())
		}
		if r.Err() != nil {
			if tab != nil {
				t.Fatal("a failed decode returned a table")
			}
			return
		}
		if n := stringBytes(tab); n > len(data) {
			t.Fatalf("decoded %d bytes of strings from %d bytes of input", n, len(data))
		}
		enc := AppendTable(nil, tab)
		r2 := NewReader(enc)
		tab2 := r2.Table()
		if r2.Err() != nil || r2.Len() != 0 {
			t.Fatalf("re-encoding does not decode: %v", r2.Err())
		}
		if !bytes.Equal(AppendTable(nil, tab2), enc) {
			t.Fatal("re-encoding is not stable")
		}
	})
}

func FuzzProperties(f *testing.F) {
	full := fullProperties()
	f.Add(full.AppendTo(nil))
	f.Add((&Properties{DeliveryMode: 2}).AppendTo(nil))
	f.Add([]byte{0x10, 0x01, 0x00, 0x00, 2})
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := DecodeProperties(raw)
		_, herr := DecodeContentHeader(append(make([]byte, 12), raw...))
		if (err == nil) != (herr == nil) {
			t.Fatalf("DecodeProperties err %v, DecodeContentHeader err %v", err, herr)
		}
		if err != nil {
			return
		}
		want := uint8(0)
		if p.Flags&FlagDeliveryMode != 0 {
			want = p.DeliveryMode
		}
		if got := PeekDeliveryMode(raw); got != want {
			t.Fatalf("PeekDeliveryMode = %d, want %d", got, want)
		}
		n := len(p.ContentType) + len(p.ContentEncoding) + stringBytes(p.Headers) + len(p.CorrelationID) +
			len(p.ReplyTo) + len(p.Expiration) + len(p.MessageID) + len(p.Type) + len(p.UserID) + len(p.AppID) + len(p.ClusterID)
		if n > len(raw) {
			t.Fatalf("decoded %d bytes of strings from %d bytes", n, len(raw))
		}
		enc := p.AppendTo(nil)
		p2, err := DecodeProperties(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !bytes.Equal(p2.AppendTo(nil), enc) {
			t.Fatal("re-encoding is not stable")
		}
	})
}
