package broker

import (
	"errors"
	"fmt"

	"github.com/warrenmq/warren/amqpwire"
)

// errCloseConn ends a connection's loops after a close handshake.
var errCloseConn = errors.New("broker: connection closed")

// amqpErr builds a protocol error with RabbitMQ's text layout
// ("NOT_FOUND - no queue 'q' in vhost '/'") for the method being handled.
func amqpErr(code uint16, m amqpwire.Method, format string, args ...any) *amqpwire.Error {
	e := &amqpwire.Error{Code: code, Text: amqpwire.ReplyText(code) + " - " + fmt.Sprintf(format, args...)}
	if m != nil {
		e.ClassID, e.MethodID = m.ClassID(), m.MethodID()
	}
	return e
}

// asAMQPError turns any error met while handling a method into the reply the
// client gets: protocol errors pass through, anything else is a 541.
func asAMQPError(err error, m amqpwire.Method) *amqpwire.Error {
	var e *amqpwire.Error
	if errors.As(err, &e) {
		if e.ClassID == 0 && m != nil {
			e.ClassID, e.MethodID = m.ClassID(), m.MethodID()
		}
		return e
	}
	return amqpErr(amqpwire.InternalError, m, "%v", err)
}
