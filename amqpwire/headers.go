package amqpwire

import (
	"encoding/binary"
	"math"
)

// Headers added to raw properties without decoding them. A broker adds
// headers to deliveries (x-stream-offset on stream deliveries,
// x-delivery-count on quorum queue redeliveries) many times a second: this
// splices encoded field-table entries into the headers property of raw
// content properties, appending to dst, without allocating when dst has
// room.

// AppendLongEntry appends one field-table entry, name = v as a long ('l'),
// in the form AppendWithHeaders takes.
func AppendLongEntry(dst []byte, name string, v int64) []byte {
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	dst = append(dst, 'l')
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// headersAt returns the offset of the headers property in raw (the start
// of its 32-bit length, or where it would go when absent) and whether it is
// present. ok is false for malformed properties.
func headersAt(raw []byte) (off int, present bool, ok bool) {
	var r Reader
	r.Reset(raw)
	flags := readFlags(&r)
	if flags&FlagContentType != 0 {
		r.shortStrBytes()
	}
	if flags&FlagContentEncoding != 0 {
		r.shortStrBytes()
	}
	if r.err != nil {
		return 0, false, false
	}
	return r.off, flags&FlagHeaders != 0, true
}

// AppendWithHeaders appends raw with the encoded entries extra added at the
// end of its headers table (a new table when it has none). Names already in
// the table are not replaced: check with HasHeader first. For malformed
// properties it appends raw unchanged and reports false.
func AppendWithHeaders(dst, raw, extra []byte) ([]byte, bool) {
	off, present, ok := headersAt(raw)
	if !ok || (present && len(raw) < off+4) {
		return append(dst, raw...), false
	}
	if !present {
		dst = append(dst, raw[0]|byte(FlagHeaders>>8), raw[1])
		dst = append(dst, raw[2:off]...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(extra)))
		dst = append(dst, extra...)
		return append(dst, raw[off:]...), true
	}
	n := int(binary.BigEndian.Uint32(raw[off:]))
	end := off + 4 + n
	if end > len(raw) || uint64(n)+uint64(len(extra)) > math.MaxUint32 {
		return append(dst, raw...), false
	}
	dst = append(dst, raw[:off]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n+len(extra)))
	dst = append(dst, raw[off+4:end]...)
	dst = append(dst, extra...)
	return append(dst, raw[end:]...), true
}

// HasHeader reports whether raw properties have a header called name.
func HasHeader(raw []byte, name string) bool {
	off, present, ok := headersAt(raw)
	if !ok || !present {
		return false
	}
	var r Reader
	r.Reset(raw)
	r.off = off
	end, _, ok := r.enter("table")
	if !ok {
		return false
	}
	for r.err == nil && r.off < end {
		if string(r.shortStrBytes()) == name {
			return r.err == nil
		}
		r.skipValue(0)
	}
	return false
}
