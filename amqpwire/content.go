package amqpwire

import "encoding/binary"

// ContentHeader is a decoded content header frame payload.
type ContentHeader struct {
	ClassID  uint16
	Weight   uint16
	BodySize uint64
	// RawProps is the property flags and property list exactly as received,
	// aliasing the payload passed to DecodeContentHeader.
	RawProps []byte
}

// propKind is the AMQP type of a basic property.
type propKind uint8

const (
	kindShortstr propKind = iota + 1
	kindLongstr
	kindTable
	kindOctet
	kindShort
	kindLong
	kindLonglong
	kindTimestamp
)

// flagContinuation is bit 0 of a property flags word: another word follows.
const flagContinuation = 0x0001

// DecodeContentHeader decodes a content header frame payload without
// allocating. The property list is validated (every flagged property is
// present and well formed, nothing trails it) but not decoded; see
// DecodeProperties. A payload shorter than 14 bytes is a FrameError; bad
// properties are a SyntaxError.
func DecodeContentHeader(payload []byte) (ContentHeader, error) {
	if len(payload) < 14 {
		return ContentHeader{}, frameError("content header payload of %d bytes is too short", len(payload))
	}
	h := ContentHeader{
		ClassID:  binary.BigEndian.Uint16(payload),
		Weight:   binary.BigEndian.Uint16(payload[2:]),
		BodySize: binary.BigEndian.Uint64(payload[4:]),
		RawProps: payload[12:len(payload):len(payload)],
	}
	var r Reader
	r.Reset(h.RawProps)
	flags := readFlags(&r)
	for i, k := range propertyKinds {
		if flags&(0x8000>>i) != 0 {
			skipProperty(&r, k)
		}
	}
	if err := propsDone(&r); err != nil {
		return ContentHeader{}, err
	}
	return h, nil
}

// readFlags reads the property flags words. Only the first word has defined
// properties; a bit set for an undefined property is a SyntaxError because
// its length cannot be known.
func readFlags(r *Reader) uint16 {
	first := r.Short()
	w := first
	for r.err == nil && w&flagContinuation != 0 {
		w = r.Short()
		if w&^flagContinuation != 0 {
			r.fail(syntaxError("undefined property flags 0x%04x in a continuation word", w))
		}
	}
	if first&^(flagsKnown|flagContinuation) != 0 {
		r.fail(syntaxError("undefined property flags 0x%04x", first&^(flagsKnown|flagContinuation)))
	}
	return first &^ flagContinuation
}

func propsDone(r *Reader) error {
	if r.err != nil {
		return r.err
	}
	if r.Len() != 0 {
		return syntaxError("%d unexpected bytes after the content properties", r.Len())
	}
	return nil
}

func skipProperty(r *Reader, k propKind) {
	switch k {
	case kindShortstr:
		r.shortStrBytes()
	case kindLongstr:
		r.longStrBytes()
	case kindTable:
		r.skipTable()
	case kindOctet:
		r.next(1, "property")
	case kindShort:
		r.next(2, "property")
	case kindLong:
		r.next(4, "property")
	case kindLonglong, kindTimestamp:
		r.next(8, "property")
	}
}

// DecodeProperties decodes basic properties (flags words then property list,
// as in ContentHeader.RawProps). Errors are *Error with code SyntaxError.
func DecodeProperties(raw []byte) (Properties, error) {
	var p Properties
	var r Reader
	r.Reset(raw)
	p.Flags = readFlags(&r)
	p.readList(&r, p.Flags)
	if err := propsDone(&r); err != nil {
		return Properties{}, err
	}
	return p, nil
}

// AppendTo appends the property flags and property list, the form of
// ContentHeader.RawProps. A property is written when its flag is set in
// p.Flags or its value is non-zero.
func (p *Properties) AppendTo(dst []byte) []byte {
	flags := p.present()
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return p.appendList(dst, flags)
}

// PeekDeliveryMode returns the delivery-mode property from raw properties
// (2 means persistent), or 0 when it is absent or raw is malformed. It skips
// the properties before it by their lengths and does not allocate.
func PeekDeliveryMode(raw []byte) uint8 { return peekOctet(raw, FlagDeliveryMode) }

// PeekPriority returns the priority property from raw properties, or 0 when
// it is absent or raw is malformed, without allocating.
func PeekPriority(raw []byte) uint8 { return peekOctet(raw, FlagPriority) }

// PeekUserID returns the user-id property from raw properties, without
// allocating (the slice aliases raw); ok is false when it is absent or raw
// is malformed.
func PeekUserID(raw []byte) (id []byte, ok bool) {
	var r Reader
	r.Reset(raw)
	flags := readFlags(&r)
	if flags&FlagUserID == 0 {
		return nil, false
	}
	for i, k := range propertyKinds {
		bit := uint16(0x8000) >> i
		if bit == FlagUserID {
			v := r.shortStrBytes()
			return v, r.err == nil
		}
		if flags&bit != 0 {
			skipProperty(&r, k)
		}
	}
	return nil, false
}

// peekOctet returns the octet property flag from raw properties.
func peekOctet(raw []byte, flag uint16) uint8 {
	var r Reader
	r.Reset(raw)
	flags := readFlags(&r)
	if flags&flag == 0 {
		return 0
	}
	for i, k := range propertyKinds {
		bit := uint16(0x8000) >> i
		if bit == flag {
			v := r.Octet()
			if r.err != nil {
				return 0
			}
			return v
		}
		if flags&bit != 0 {
			skipProperty(&r, k)
		}
	}
	return 0
}
