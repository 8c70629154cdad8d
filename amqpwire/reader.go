package amqpwire

import (
	"encoding/binary"
	"math"
	"time"
)

// Reader decodes AMQP primitive types from a byte slice. Its error is
// sticky: after the first failure every read returns a zero value and Err
// reports the failure, so a decoder can read all fields and check once.
// Strings and tables are copied out of the input; the input is not retained
// except by Bytes.
type Reader struct {
	buf []byte
	off int
	err *Error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Reset makes r read b from its start with no error.
func (r *Reader) Reset(b []byte) { *r = Reader{buf: b} }

// Err returns the first error met, an *Error with code SyntaxError, or nil.
func (r *Reader) Err() error {
	if r.err == nil {
		return nil
	}
	return r.err
}

// Len returns the number of bytes not yet read.
func (r *Reader) Len() int { return len(r.buf) - r.off }

// fail records the first error and stops further reads.
func (r *Reader) fail(e *Error) {
	if r.err == nil {
		r.err = e
	}
	r.off = len(r.buf)
}

// next returns the next n bytes, or nil after recording a truncation error.
func (r *Reader) next(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf)-r.off {
		r.fail(syntaxError("truncated %s at offset %d: need %d bytes, have %d", what, r.off, n, len(r.buf)-r.off))
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// Bytes returns the next n bytes, aliasing the input.
func (r *Reader) Bytes(n int) []byte { return r.next(n, "bytes") }

// Octet reads an unsigned 8-bit integer.
func (r *Reader) Octet() uint8 {
	b := r.next(1, "octet")
	if b == nil {
		return 0
	}
	return b[0]
}

// Bits reads one octet of packed bit fields; the first field is bit 0.
func (r *Reader) Bits() uint8 {
	b := r.next(1, "bit field")
	if b == nil {
		return 0
	}
	return b[0]
}

// Short reads an unsigned big-endian 16-bit integer.
func (r *Reader) Short() uint16 {
	b := r.next(2, "short")
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Long reads an unsigned big-endian 32-bit integer.
func (r *Reader) Long() uint32 {
	b := r.next(4, "long")
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// LongLong reads an unsigned big-endian 64-bit integer.
func (r *Reader) LongLong() uint64 {
	b := r.next(8, "longlong")
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Timestamp reads a 64-bit POSIX time in seconds, returned in UTC.
func (r *Reader) Timestamp() time.Time {
	b := r.next(8, "timestamp")
	if b == nil {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0).UTC()
}

func (r *Reader) shortStrBytes() []byte {
	b := r.next(1, "shortstr length")
	if b == nil {
		return nil
	}
	return r.next(int(b[0]), "shortstr")
}

func (r *Reader) longStrBytes() []byte {
	b := r.next(4, "longstr length")
	if b == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(r.buf)-r.off) {
		r.fail(syntaxError("truncated longstr at offset %d: length %d, have %d", r.off, n, len(r.buf)-r.off))
		return nil
	}
	return r.next(int(n), "longstr")
}

// ShortStr reads a string of at most 255 bytes with an octet length prefix.
func (r *Reader) ShortStr() string { return string(r.shortStrBytes()) }

// LongStr reads a string with a 32-bit length prefix.
func (r *Reader) LongStr() string { return string(r.longStrBytes()) }

// shortStrReuse reads a shortstr and returns prev when the bytes equal it,
// so that decoding the same value again does not allocate.
func (r *Reader) shortStrReuse(prev string) string {
	b := r.shortStrBytes()
	if string(b) == prev {
		return prev
	}
	return string(b)
}

// longStrReuse is shortStrReuse for a longstr.
func (r *Reader) longStrReuse(prev string) string {
	b := r.longStrBytes()
	if string(b) == prev {
		return prev
	}
	return string(b)
}

// AppendShortStr appends s as a shortstr. Bytes past the 255th are dropped:
// callers validate lengths they accept from users.
func AppendShortStr(dst []byte, s string) []byte {
	if len(s) > math.MaxUint8 {
		s = s[:math.MaxUint8]
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// AppendLongStr appends s as a longstr.
func AppendLongStr(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendTimestamp appends t as seconds since the epoch; the zero Time is 0.
func appendTimestamp(dst []byte, t time.Time) []byte {
	var v int64
	if !t.IsZero() {
		v = t.Unix()
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}
