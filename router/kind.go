package router

import (
	"errors"
	"fmt"
)

// Table is the field-table type of binding and exchange arguments and of
// message headers. It is an alias, so an amqpwire.Table (itself a
// map[string]any) converts to it for free.
type Table = map[string]any

// Kind is an exchange type.
type Kind uint8

// The exchange types of AMQP 0-9-1 as RabbitMQ implements them.
const (
	// Direct routes to the bindings whose key equals the routing key.
	Direct Kind = iota + 1
	// Fanout routes to every binding and ignores the routing key.
	Fanout
	// Topic matches dot-separated binding patterns with `*` (one word) and
	// `#` (zero or more words) against the routing key.
	Topic
	// Headers matches binding arguments against message headers.
	Headers
)

// String returns the AMQP name of the kind ("direct", "fanout", ...).
func (k Kind) String() string {
	switch k {
	case Direct:
		return "direct"
	case Fanout:
		return "fanout"
	case Topic:
		return "topic"
	case Headers:
		return "headers"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= Direct && k <= Headers }

// ParseKind returns the Kind named s. An unknown name (including any
// "x-..." plugin type) returns an error wrapping ErrUnknownKind; the broker
// answers it as RabbitMQ 4.x does, with the channel error 406
// PRECONDITION_FAILED "unknown exchange type".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "direct":
		return Direct, nil
	case "fanout":
		return Fanout, nil
	case "topic":
		return Topic, nil
	case "headers":
		return Headers, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownKind, s)
}

// DestKind tells whether a binding's destination is a queue or an exchange.
type DestKind uint8

const (
	// DestQueue is a queue.bind binding.
	DestQueue DestKind = iota + 1
	// DestExchange is an exchange.bind (exchange-to-exchange) binding.
	DestExchange
)

// String returns "queue" or "exchange".
func (k DestKind) String() string {
	switch k {
	case DestQueue:
		return "queue"
	case DestExchange:
		return "exchange"
	}
	return fmt.Sprintf("destkind(%d)", uint8(k))
}

// Errors returned by Topology. Each is wrapped with the names involved;
// test with errors.Is.
var (
	// ErrUnknownKind: the exchange type is not one the router implements.
	ErrUnknownKind = errors.New("router: invalid exchange type")
	// ErrNotFound: a named exchange does not exist.
	ErrNotFound = errors.New("router: no such exchange")
	// ErrInUse: exchange delete with if-unused found bindings with it as source.
	ErrInUse = errors.New("router: exchange in use")
	// ErrDefaultExchange: the default exchange "" cannot be declared,
	// deleted, bound from or bound to.
	ErrDefaultExchange = errors.New("router: operation not permitted on the default exchange")
	// ErrInequivalent: a redeclare differs from the existing exchange; the
	// error is an *InequivalentError.
	ErrInequivalent = errors.New("router: inequivalent arg")
	// ErrInvalidArg: an exchange argument has an unacceptable type or value.
	ErrInvalidArg = errors.New("router: invalid arg")
	// ErrInvalidBinding: binding arguments are invalid for the exchange type
	// (a bad x-match for headers).
	ErrInvalidBinding = errors.New("router: invalid binding")
)

// InequivalentError reports the first field in which a redeclared exchange
// differs from the existing one, as RabbitMQ checks it: type, durable,
// auto_delete, internal, then the alternate-exchange argument. The broker
// turns it into 406 PRECONDITION_FAILED "inequivalent arg 'Field' for
// exchange 'Exchange' in vhost ...: received 'Received' but current is
// 'Current'".
type InequivalentError struct {
	Exchange string
	Field    string
	Received string
	Current  string
}

// Error implements error.
func (e *InequivalentError) Error() string {
	return fmt.Sprintf("router: inequivalent arg '%s' for exchange '%s': received '%s' but current is '%s'",
		e.Field, e.Exchange, e.Received, e.Current)
}

// Unwrap makes errors.Is(err, ErrInequivalent) true.
func (e *InequivalentError) Unwrap() error { return ErrInequivalent }
