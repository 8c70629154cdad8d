package amqpwire

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is an AMQP protocol error: a reply code, the reply text sent in
// channel.close or connection.close, and the ids of the method that caused
// it (zero when no method did). Every decode error of this package is an
// *Error.
type Error struct {
	Code     uint16
	Text     string
	ClassID  uint16
	MethodID uint16
}

// NewError returns an *Error whose Text is the RabbitMQ-style reply name
// followed by the formatted detail, e.g. "NOT_FOUND - no queue 'q' in vhost '/'".
func NewError(code, classID, methodID uint16, format string, args ...any) *Error {
	name := ReplyText(code)
	if name == "" {
		name = "REPLY_" + strconv.Itoa(int(code))
	}
	return &Error{
		Code:     code,
		Text:     name + " - " + fmt.Sprintf(format, args...),
		ClassID:  classID,
		MethodID: methodID,
	}
}

// Error formats the error as "amqpwire: CODE TEXT" plus the method name, if any.
func (e *Error) Error() string {
	s := "amqpwire: " + strconv.Itoa(int(e.Code)) + " " + e.Text
	if e.ClassID != 0 || e.MethodID != 0 {
		if n := methodName(e.ClassID, e.MethodID); n != "" {
			s += " (" + n + ")"
		} else {
			s += " (class " + strconv.Itoa(int(e.ClassID)) + ", method " + strconv.Itoa(int(e.MethodID)) + ")"
		}
	}
	return s
}

// Hard reports whether the error closes the connection (a hard-error reply
// code in the specification) rather than just the channel. Codes the
// specification does not define count as hard.
func (e *Error) Hard() bool { return isHardError(e.Code) }

// Is reports whether target is an *Error with the same reply code, so that
// errors.Is(err, &amqpwire.Error{Code: amqpwire.FrameError}) matches any
// frame error.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// ErrProtocolHeader reports that a peer opened the connection with something
// other than the AMQP 0-9-1 protocol header. The server answers it by writing
// ProtocolHeader and closing the socket.
var ErrProtocolHeader = errors.New("amqpwire: bad protocol header")

func frameError(format string, args ...any) *Error {
	return NewError(FrameError, 0, 0, format, args...)
}

func syntaxError(format string, args ...any) *Error {
	return NewError(SyntaxError, 0, 0, format, args...)
}
