package amqpwire

import "encoding/binary"

// Method is an AMQP method: one generated struct per method of the classes
// connection, channel, exchange, queue, basic, confirm and tx, such as
// *BasicPublish. The methods are implemented on pointer receivers.
type Method interface {
	// ClassID returns the class id, e.g. ClassBasic.
	ClassID() uint16
	// MethodID returns the method id within the class, e.g. MethodBasicPublish.
	MethodID() uint16
	// Name returns the spec name, e.g. "basic.publish".
	Name() string
	// Synchronous reports whether the method expects a reply method.
	Synchronous() bool
	// HasContent reports whether a content header and body follow the method.
	HasContent() bool
	// AppendTo appends the method frame payload: class id, method id and
	// arguments, the input DecodeMethod takes.
	AppendTo(dst []byte) []byte
}

// methodReader is implemented by every generated method.
type methodReader interface {
	Method
	read(r *Reader)
}

// DecodeMethod decodes a method frame payload into a newly allocated method.
// A payload shorter than the class and method ids is a FrameError, unknown
// ids are NotImplemented, and malformed or trailing arguments are a
// SyntaxError carrying the method's ids.
func DecodeMethod(payload []byte) (Method, error) {
	classID, methodID, err := methodIDs(payload)
	if err != nil {
		return nil, err
	}
	m, _ := newMethod(classID, methodID).(methodReader)
	if m == nil {
		return nil, unknownMethod(classID, methodID)
	}
	var r Reader
	if err := readMethod(&r, m, payload); err != nil {
		return nil, err
	}
	return m, nil
}

// MethodDecoder decodes methods into one reused struct per method type. The
// method returned by Decode is valid until the next call; its strings are
// reused from the previous decode of the same method type when the bytes are
// equal, so decoding a stream of basic.publish, basic.ack, basic.nack or
// basic.reject methods does not allocate in steady state. The zero value is
// ready to use; a MethodDecoder is not safe for concurrent use.
type MethodDecoder struct {
	r     Reader
	slots methodSlots
}

// Decode decodes a method frame payload, with the errors of DecodeMethod.
func (d *MethodDecoder) Decode(payload []byte) (Method, error) {
	classID, methodID, err := methodIDs(payload)
	if err != nil {
		return nil, err
	}
	m := d.slots.slot(classID, methodID)
	if m == nil {
		return nil, unknownMethod(classID, methodID)
	}
	if err := readMethod(&d.r, m, payload); err != nil {
		return nil, err
	}
	return m, nil
}

func methodIDs(payload []byte) (classID, methodID uint16, err error) {
	if len(payload) < 4 {
		return 0, 0, frameError("method frame payload of %d bytes is too short", len(payload))
	}
	return binary.BigEndian.Uint16(payload), binary.BigEndian.Uint16(payload[2:]), nil
}

func unknownMethod(classID, methodID uint16) *Error {
	return NewError(NotImplemented, classID, methodID, "unknown method class %d method %d", classID, methodID)
}

func readMethod(r *Reader, m methodReader, payload []byte) error {
	r.Reset(payload[4:])
	m.read(r)
	if r.err != nil {
		e := *r.err
		e.ClassID, e.MethodID = m.ClassID(), m.MethodID()
		e.Text += " in " + m.Name()
		r.err = nil
		return &e
	}
	if r.Len() != 0 {
		return NewError(SyntaxError, m.ClassID(), m.MethodID(), "%d unexpected bytes after the arguments of %s", r.Len(), m.Name())
	}
	return nil
}
