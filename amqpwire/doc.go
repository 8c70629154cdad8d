// Package amqpwire is Warren's AMQP 0-9-1 codec: bytes to frames, methods,
// content headers, properties and field tables and back. It never touches a
// socket; the broker hands it an io.Reader and byte slices.
//
// # Layout
//
//	spec_gen.go    generated from amqp0-9-1.extended.xml by internal/gen
//	               (go generate ./amqpwire): one struct per method of the
//	               classes connection, channel, exchange, queue, basic,
//	               confirm and tx; class and method ids; reply codes with
//	               their soft/hard split; basic property flags and Properties
//	frame.go       protocol header, FrameReader, frame writers
//	method.go      Method, DecodeMethod, MethodDecoder
//	content.go     ContentHeader, DecodeProperties, PeekDeliveryMode
//	table.go       Table, field values, AppendTable
//	reader.go      Reader (sticky-error decoder) and Append* primitives
//	error.go       Error, NewError
//
// # Wire format
//
// A connection starts with the 8-byte ProtocolHeader, then carries frames:
//
//	+------+---------+---------+-------------+-----------+
//	| type | channel |  size   |   payload   | frame-end |
//	|  1   |    2    |    4    |  size bytes |  1 (0xCE) |
//	+------+---------+---------+-------------+-----------+
//
// frame-max counts all of it, so a payload holds at most frame-max - 8 bytes.
// A method payload is class id (2), method id (2) and the arguments;
// consecutive bit arguments share an octet, the first in bit 0. A content
// header payload is class id (2), weight (2), body size (8), then property
// flags (2, bit 15 for content-type down to bit 2 for cluster-id, bit 0 for a
// continuation word) and the flagged properties in order.
//
// # Allocation rules
//
// The hot path (publish in, deliver out, acks both ways) does not allocate
// in steady state:
//
//   - FrameReader reads every frame into one buffer that grows to the largest
//     frame seen (never past frame-max, checked before growing); a Frame's
//     payload is valid only until the next ReadFrame.
//   - MethodDecoder keeps one struct per method type and keeps a string field
//     when the new bytes equal it, so repeated exchange and routing keys cost
//     nothing. Its result is valid until the next Decode. DecodeMethod
//     allocates a fresh method each call instead.
//   - DecodeContentHeader validates the properties without decoding them and
//     returns them as RawProps aliasing the payload: the broker stores and
//     forwards those bytes unchanged, and PeekDeliveryMode reads persistence
//     from them without allocating. Copy RawProps before the next ReadFrame.
//   - Encoders append to a caller's buffer (AppendMethodFrame,
//     AppendContentFrames, Method.AppendTo); pass a reused method struct.
//
// Decoding bounds every length by the bytes that remain before allocating,
// and field tables and arrays may nest at most MaxTableDepth deep.
//
// # Errors
//
// Every decode error is an *Error carrying the reply code the broker sends
// in connection.close: FrameError (501) for a bad frame, SyntaxError (502)
// for malformed arguments, properties or tables, NotImplemented (540) for an
// unknown method. Error.Hard tells a connection error from a channel error.
// I/O errors from the underlying reader are returned unchanged, and a wrong
// protocol header is ErrProtocolHeader.
package amqpwire
