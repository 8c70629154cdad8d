package amqpwire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// ProtocolHeader is the header an AMQP 0-9-1 client sends first, and the one
// a server sends back before closing when it cannot speak what the client asked.
const ProtocolHeader = "AMQP\x00\x00\x09\x01"

// DefaultFrameMax is the frame-max (RabbitMQ's default, 128 KiB) a
// FrameReader enforces when it is given 0, which in the protocol means "no
// limit": a server must still bound what it reads.
const DefaultFrameMax = 131072

// frameOverhead is the frame header (type, channel, size) plus the frame-end octet.
const frameOverhead = 8

// ReadProtocolHeader reads the 8-byte protocol header from r. If the bytes are
// not exactly ProtocolHeader it returns an error wrapping ErrProtocolHeader;
// the server then writes ProtocolHeader and closes the connection.
func ReadProtocolHeader(r io.Reader) error {
	var b [len(ProtocolHeader)]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("amqpwire: read protocol header: %w", err)
	}
	if string(b[:]) != ProtocolHeader {
		return fmt.Errorf("%w: got %q", ErrProtocolHeader, b[:])
	}
	return nil
}

// Frame is one AMQP frame. Payload excludes the header and the frame-end
// octet; from a FrameReader it aliases a buffer reused by the next ReadFrame.
type Frame struct {
	Type    uint8
	Channel uint16
	Payload []byte
}

// FrameReader reads frames from a buffered stream into one reused buffer.
type FrameReader struct {
	// BodySink, if set, is asked for the memory the payload of each
	// content body frame is to be read into, once the frame's header has
	// passed the checks: a slice of at least size bytes (the payload is
	// then read straight into its first size bytes and Payload is that
	// part), or nil to read it into the reader's buffer as other frames.
	// A large message body is so read into its own buffer with no copy.
	BodySink func(channel uint16, size int) []byte

	r        *bufio.Reader
	frameMax uint32
	hdr      [7]byte // a field, not a local, so reading into it does not allocate
	buf      []byte  // frames larger than the bufio.Reader's buffer
	consumed uint64
}

// NewFrameReader returns a FrameReader over r that refuses frames larger than
// frameMax bytes (including the 8 bytes of frame overhead; 0 means
// DefaultFrameMax). r is wrapped in a bufio.Reader unless it is one.
func NewFrameReader(r io.Reader, frameMax uint32) *FrameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	fr := &FrameReader{r: br}
	fr.SetFrameMax(frameMax)
	return fr
}

// SetFrameMax changes the largest frame accepted, as negotiated by
// connection.tune-ok; 0 means DefaultFrameMax.
func (fr *FrameReader) SetFrameMax(frameMax uint32) {
	if frameMax == 0 {
		frameMax = DefaultFrameMax
	}
	fr.frameMax = frameMax
}

// ReadFrame reads the next frame. The payload is valid until the next call.
// A frame larger than frame-max, with a bad frame-end octet, an unknown type
// or a heartbeat off channel 0 is an *Error with code FrameError, reported
// before the payload is allocated or read. I/O errors are returned as they
// are (io.EOF before a frame starts, io.ErrUnexpectedEOF inside one).
func (fr *FrameReader) ReadFrame() (Frame, error) {
	hdr := fr.hdr[:]
	if _, err := io.ReadFull(fr.r, hdr); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: hdr[0], Channel: binary.BigEndian.Uint16(hdr[1:3])}
	size := binary.BigEndian.Uint32(hdr[3:7])
	switch f.Type {
	case FrameMethod, FrameHeader, FrameBody:
	case FrameHeartbeat:
		if f.Channel != 0 {
			return Frame{}, frameError("heartbeat frame on channel %d", f.Channel)
		}
	default:
		return Frame{}, frameError("unknown frame type %d", f.Type)
	}
	if uint64(size)+frameOverhead > uint64(fr.frameMax) {
		return Frame{}, frameError("frame size %d exceeds frame-max %d", uint64(size)+frameOverhead, fr.frameMax)
	}
	if f.Type == FrameBody && fr.BodySink != nil && size > 0 {
		if dst := fr.BodySink(f.Channel, int(size)); len(dst) >= int(size) {
			return fr.readInto(f, dst[:size:size])
		}
	}
	n := int(size) + 1
	var b []byte
	if n <= fr.r.Size() {
		// The frame fits in the reader's buffer: hand out a view of it,
		// valid until the next read, instead of copying it.
		p, err := fr.r.Peek(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		fr.r.Discard(n)
		b = p
	} else {
		if cap(fr.buf) < n {
			fr.buf = make([]byte, n)
		}
		b = fr.buf[:n]
		if _, err := io.ReadFull(fr.r, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	if b[size] != FrameEnd {
		return Frame{}, frameError("frame end octet 0x%02x, want 0x%02x", b[size], FrameEnd)
	}
	fr.consumed += uint64(n) + 7
	f.Payload = b[:size:size]
	return f, nil
}

// readInto reads f's payload into dst (a body sink's memory) and checks
// the frame-end octet.
func (fr *FrameReader) readInto(f Frame, dst []byte) (Frame, error) {
	if _, err := io.ReadFull(fr.r, dst); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	end, err := fr.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	if end != FrameEnd {
		return Frame{}, frameError("frame end octet 0x%02x, want 0x%02x", end, FrameEnd)
	}
	fr.consumed += uint64(len(dst)) + frameOverhead
	f.Payload = dst
	return f, nil
}

// Reset makes the FrameReader read from br (a reader of another buffer
// size over the same stream, swapped in when br's predecessor holds no
// buffered bytes) and releases the buffer kept for oversized frames.
func (fr *FrameReader) Reset(br *bufio.Reader) {
	fr.r = br
	fr.buf = nil
}

// Consumed returns the bytes of the frames read so far.
func (fr *FrameReader) Consumed() uint64 { return fr.consumed }

// AppendFrame appends a frame of any type carrying payload.
func AppendFrame(dst []byte, typ uint8, channel uint16, payload []byte) []byte {
	dst = append(dst, typ, byte(channel>>8), byte(channel))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return append(dst, FrameEnd)
}

// AppendMethodFrame appends a method frame carrying m.
func AppendMethodFrame(dst []byte, channel uint16, m Method) []byte {
	start := len(dst)
	dst = append(dst, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	dst = m.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+3:], uint32(len(dst)-start-7))
	return append(dst, FrameEnd)
}

// AppendHeartbeatFrame appends a heartbeat frame.
func AppendHeartbeatFrame(dst []byte) []byte {
	return append(dst, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}

// AppendContentFrames appends a content header frame (class id, weight 0,
// bodySize and rawProps, the property flags and list as received) followed by
// body frames carrying body, each at most frameMax bytes including the frame
// overhead. frameMax 0 means no limit: the body goes in one frame. An empty
// body produces no body frame. bodySize normally equals len(body).
func AppendContentFrames(dst []byte, channel uint16, classID uint16, bodySize uint64, rawProps, body []byte, frameMax uint32) []byte {
	dst = appendContentHeaderFrame(dst, channel, classID, bodySize, rawProps)
	chunk := bodyChunk(len(body), frameMax)
	for len(body) > 0 {
		n := min(chunk, len(body))
		dst = AppendFrame(dst, FrameBody, channel, body[:n])
		body = body[n:]
	}
	return dst
}

// AppendContentFramesRef is AppendContentFrames without copying the body:
// it appends the header frame and each body frame's header and end byte to
// dst, and calls ref with the offset in dst where each body part belongs
// and the part itself, for a vectored write (writev) that sends
// dst[:at], part, dst[at:] ... in order. body must stay unchanged until it
// is written.
func AppendContentFramesRef(dst []byte, channel uint16, classID uint16, bodySize uint64, rawProps, body []byte, frameMax uint32, ref func(at int, part []byte)) []byte {
	dst = appendContentHeaderFrame(dst, channel, classID, bodySize, rawProps)
	chunk := bodyChunk(len(body), frameMax)
	for len(body) > 0 {
		n := min(chunk, len(body))
		dst = append(dst, FrameBody, byte(channel>>8), byte(channel))
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
		ref(len(dst), body[:n])
		dst = append(dst, FrameEnd)
		body = body[n:]
	}
	return dst
}

// bodyChunk is the largest body part a frame of frameMax carries.
func bodyChunk(size int, frameMax uint32) int {
	if frameMax > frameOverhead && uint64(frameMax-frameOverhead) < uint64(size) {
		return int(frameMax - frameOverhead)
	}
	return size
}

func appendContentHeaderFrame(dst []byte, channel uint16, classID uint16, bodySize uint64, rawProps []byte) []byte {
	dst = append(dst, FrameHeader, byte(channel>>8), byte(channel))
	dst = binary.BigEndian.AppendUint32(dst, uint32(12+len(rawProps)))
	dst = append(dst, byte(classID>>8), byte(classID), 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, bodySize)
	dst = append(dst, rawProps...)
	return append(dst, FrameEnd)
}
