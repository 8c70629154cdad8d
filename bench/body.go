package bench

import (
	"encoding/binary"
	"math/rand/v2"
)

// Message bodies carry the publish time so consumers can measure
// publish-to-deliver latency. Binary bodies (random, zeros):
//
//	0       8          12         16            size
//	+-------+----------+----------+---------------+
//	| nanos | producer | sequence | filler ...    |
//	+-------+----------+----------+---------------+
//	  unix nanoseconds, producer id and sequence big-endian; a body shorter
//	  than 16 bytes keeps what fits and carries no time below 8 bytes.
//
// JSON bodies are one document padded to the size with a filler string or
// trailing spaces; the time is a zero-padded decimal string at a fixed
// offset so it is rewritten in place:
//
//	{"ts":"1700000000000000000","p":"00000003","pad":"qxv..."}
//
// JSON bodies are at least 28 bytes ({"ts":"<19 digits>"}) whatever the size.
const (
	jsonTSPrefix = `{"ts":"`
	jsonTSDigits = 19
	jsonMinSize  = len(jsonTSPrefix) + jsonTSDigits + 2 // {"ts":"N"}
	jsonIDSize   = jsonMinSize + len(`,"p":"00000000"`) // {"ts":"N","p":"N"}
	jsonPadSize  = jsonIDSize + len(`,"pad":""`)        // {"ts":"N","p":"N","pad":""}
)

// bodyWriter owns one reusable body and stamps it before each publish.
type bodyWriter struct {
	kind BodyKind
	buf  []byte
	seq  uint32
}

func newBodyWriter(kind BodyKind, size int, producer uint32, rng *rand.Rand) *bodyWriter {
	w := &bodyWriter{kind: kind}
	if kind == BodyJSON {
		w.buf = jsonBody(size, producer, rng)
		return w
	}
	w.buf = make([]byte, size)
	if kind == BodyRandom {
		for i := range w.buf {
			w.buf[i] = byte(rng.Uint32())
		}
	}
	if size >= 12 {
		binary.BigEndian.PutUint32(w.buf[8:12], producer)
	}
	return w
}

func jsonBody(size int, producer uint32, rng *rand.Rand) []byte {
	n := max(size, jsonMinSize)
	b := make([]byte, 0, n)
	b = append(b, jsonTSPrefix...)
	b = appendDigits(b, 0, jsonTSDigits)
	b = append(b, '"')
	switch {
	case n >= jsonPadSize:
		b = append(b, `,"p":"`...)
		b = appendDigits(b, uint64(producer%100_000_000), 8)
		b = append(b, `","pad":"`...)
		for len(b) < n-2 {
			b = append(b, byte('a'+rng.IntN(26)))
		}
		b = append(b, `"}`...)
	case n >= jsonIDSize:
		b = append(b, `,"p":"`...)
		b = appendDigits(b, uint64(producer%100_000_000), 8)
		b = append(b, `"}`...)
	default:
		b = append(b, '}')
	}
	for len(b) < n {
		b = append(b, ' ')
	}
	return b
}

// appendDigits appends v as exactly width decimal digits (zero-padded,
// truncated to the low digits).
func appendDigits(b []byte, v uint64, width int) []byte {
	start := len(b)
	for range width {
		b = append(b, '0')
	}
	putDigits(b[start:], v)
	return b
}

// putDigits writes v right-aligned into d as decimal digits.
func putDigits(d []byte, v uint64) {
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
}

// stamp writes the publish time (unix nanoseconds) and the next sequence
// number into the body and returns it.
func (w *bodyWriter) stamp(nanos int64) []byte {
	w.seq++
	if w.kind == BodyJSON {
		putDigits(w.buf[len(jsonTSPrefix):len(jsonTSPrefix)+jsonTSDigits], uint64(nanos))
		return w.buf
	}
	if len(w.buf) >= 8 {
		binary.BigEndian.PutUint64(w.buf[0:8], uint64(nanos))
	}
	if len(w.buf) >= 16 {
		binary.BigEndian.PutUint32(w.buf[12:16], w.seq)
	}
	return w.buf
}

// publishTime extracts the publish time from a body written by bodyWriter,
// reporting false when the body carries none.
func publishTime(kind BodyKind, b []byte) (int64, bool) {
	if kind == BodyJSON {
		if len(b) < len(jsonTSPrefix)+jsonTSDigits || string(b[:len(jsonTSPrefix)]) != jsonTSPrefix {
			return 0, false
		}
		var v int64
		for _, c := range b[len(jsonTSPrefix) : len(jsonTSPrefix)+jsonTSDigits] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int64(c-'0')
		}
		return v, v > 0
	}
	if len(b) < 8 {
		return 0, false
	}
	v := int64(binary.BigEndian.Uint64(b[0:8]))
	return v, v > 0
}
