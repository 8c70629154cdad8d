package index

import (
	"encoding/binary"
	"fmt"
)

// Key kinds. Part of the format, do not change.
const (
	kindMeta       = 'M'
	kindVHost      = 'V'
	kindUser       = 'U'
	kindPermission = 'P'
	kindExchange   = 'E'
	kindQueue      = 'Q'
	kindBinding    = 'B'
	kindLogState   = 'L'
	kindPolicy     = 'Y'
	kindParameter  = 'R'
	kindGlobal     = 'G'
	// kindDeliveryCount keys the delivery counts of quorum queue messages.
	kindDeliveryCount = 'C'
	// kindOperatorPolicy keys operator policies (values as policies).
	kindOperatorPolicy = 'O'
	// kindLease keys a queue's delivery lease (lease.go).
	kindLease = 'D'
	// kindDeleting marks a queue whose definition is deleted and whose log
	// may not be yet (defsbatch.go).
	kindDeleting = 'X'
)

// Escape bytes. Part of the format, do not change.
const (
	escByte   = 0x00 // introduces an escape pair
	escZero   = 0xFF // 0x00 0xFF is a literal 0x00
	escFinish = 0x01 // 0x00 0x01 ends a string
)

// appendEsc appends s escaped and terminated (see the package doc).
func appendEsc[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == escByte {
			dst = append(dst, escByte, escZero)
			continue
		}
		dst = append(dst, s[i])
	}
	return append(dst, escByte, escFinish)
}

// cutEsc decodes one escaped string from the front of b.
func cutEsc(b []byte) (s []byte, rest []byte, err error) {
	for i := 0; i < len(b); i++ {
		if b[i] != escByte {
			s = append(s, b[i])
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch b[i+1] {
		case escZero:
			s = append(s, escByte)
			i++
		case escFinish:
			return s, b[i+2:], nil
		default:
			return nil, nil, fmt.Errorf("%w: bad escape %#x in key", ErrCorrupt, b[i+1])
		}
	}
	return nil, nil, fmt.Errorf("%w: unterminated key string", ErrCorrupt)
}

// keyOf builds a key of the given kind from escaped parts.
func keyOf(kind byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p) + 2
	}
	k := make([]byte, 1, n)
	k[0] = kind
	for _, p := range parts {
		k = appendEsc(k, p)
	}
	return k
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // no upper bound
}

// keyReader decodes a key part by part with a sticky error.
type keyReader struct {
	b   []byte
	err error
}

func (r *keyReader) str() string {
	if r.err != nil {
		return ""
	}
	s, rest, err := cutEsc(r.b)
	r.b, r.err = rest, err
	return string(s)
}

func (r *keyReader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	s, rest, err := cutEsc(r.b)
	r.b, r.err = rest, err
	if len(s) == 0 {
		return nil
	}
	return s
}

func (r *keyReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: short key", ErrCorrupt)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// done reports the sticky error, or ErrCorrupt if bytes are left over.
func (r *keyReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing key bytes", ErrCorrupt, len(r.b))
	}
	return r.err
}

// valueReader decodes a value with a sticky error. Every length is checked
// against the bytes left before it is trusted.
type valueReader struct {
	b   []byte
	err error
}

func newValueReader(v []byte) *valueReader {
	r := &valueReader{b: v}
	switch {
	case len(v) == 0:
		r.err = fmt.Errorf("%w: empty value", ErrCorrupt)
	case v[0] != valueVersion:
		r.err = fmt.Errorf("%w: value version %d", ErrFormat, v[0])
	default:
		r.b = v[1:]
	}
	return r
}

func (r *valueReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", ErrCorrupt)
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *valueReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: short value", ErrCorrupt)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *valueReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: length %d exceeds %d bytes left", ErrCorrupt, n, len(r.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	s := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return s
}

func (r *valueReader) str() string { return string(r.bytes()) }

// count reads a list length and bounds it by the bytes left, each element
// taking at least min bytes.
func (r *valueReader) count(min int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(len(r.b)/min) {
		r.err = fmt.Errorf("%w: count %d exceeds %d bytes left", ErrCorrupt, n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *valueReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing value bytes", ErrCorrupt, len(r.b))
	}
	return r.err
}

func appendBytes[T string | []byte](dst []byte, s T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
