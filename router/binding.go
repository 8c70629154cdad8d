package router

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// AlternateExchangeArg is the exchange argument naming the alternate
// exchange: where a message goes when the exchange's own bindings match
// nothing.
const AlternateExchangeArg = "alternate-exchange"

// Exchange is an exchange definition.
//
// Args is copied (top level) when the exchange is declared; treat the Args
// of an Exchange returned by the router as read-only.
type Exchange struct {
	Name       string
	Kind       Kind
	Durable    bool
	AutoDelete bool
	// Internal exchanges accept messages only through exchange-to-exchange
	// bindings or as alternate exchanges. Route does not check it: the broker
	// refuses a basic.publish to an internal exchange (403 ACCESS_REFUSED).
	Internal bool
	Args     map[string]any
}

// AlternateExchange returns the exchange's alternate-exchange argument, if
// it is set to a non-empty string.
func (x *Exchange) AlternateExchange() (string, bool) {
	ae, ok := x.Args[AlternateExchangeArg].(string)
	return ae, ok && ae != ""
}

// Binding is a binding from the Source exchange to a queue or exchange.
//
// Its identity is (Source, Destination, DestKind, Key, Args) as in RabbitMQ:
// the same key with different arguments is a different binding, and
// arguments compare with their types (int32 1 and int64 1 differ). Args is
// copied (top level) when the binding is added.
type Binding struct {
	Source      string
	Destination string
	DestKind    DestKind
	Key         string
	Args        map[string]any
}

// String renders the binding for logs and test output.
func (b Binding) String() string {
	s := b.Source + " -> " + b.DestKind.String() + ":" + b.Destination + " key=" + strconv.Quote(b.Key)
	if len(b.Args) > 0 {
		s += " args=" + fmtTable(b.Args)
	}
	return s
}

// bkey is a binding's identity within its source exchange.
type bkey struct {
	dest string
	kind DestKind
	key  string
	args string // canonical encoding of Args, see canonArgs
}

func (b *Binding) id() bkey {
	return bkey{dest: b.Destination, kind: b.DestKind, key: b.Key, args: canonArgs(b.Args)}
}

func copyTable(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// canonArgs encodes a table deterministically (keys sorted) with a type tag
// per value, so two tables encode alike exactly when RabbitMQ would consider
// them the same binding arguments. An empty or nil table encodes as "".
func canonArgs(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	return string(appendCanonTable(nil, m))
}

func appendCanonTable(b []byte, m map[string]any) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(append(b, 'F'), uint64(len(keys)))
	for _, k := range keys {
		b = appendCanonString(b, k)
		b = appendCanonValue(b, m[k])
	}
	return b
}

func appendCanonString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendCanonValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 'V')
	case bool:
		if v {
			return append(b, 't', 1)
		}
		return append(b, 't', 0)
	case int8:
		return binary.AppendVarint(append(b, 'b'), int64(v))
	case uint8:
		return binary.AppendUvarint(append(b, 'B'), uint64(v))
	case int16:
		return binary.AppendVarint(append(b, 's'), int64(v))
	case uint16:
		return binary.AppendUvarint(append(b, 'u'), uint64(v))
	case int32:
		return binary.AppendVarint(append(b, 'I'), int64(v))
	case uint32:
		return binary.AppendUvarint(append(b, 'i'), uint64(v))
	case int64:
		return binary.AppendVarint(append(b, 'l'), v)
	case int:
		return binary.AppendVarint(append(b, 'n'), int64(v))
	case uint64:
		return binary.AppendUvarint(append(b, 'N'), v)
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 'f'), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(v))
	case string:
		return appendCanonString(append(b, 'S'), v)
	case []byte:
		return appendCanonString(append(b, 'x'), string(v))
	case time.Time:
		return binary.AppendVarint(append(b, 'T'), v.Unix())
	case map[string]any:
		return appendCanonTable(b, v)
	case []any:
		b = binary.AppendUvarint(append(b, 'A'), uint64(len(v)))
		for _, e := range v {
			b = appendCanonValue(b, e)
		}
		return b
	}
	// Other named types (amqpwire.Decimal, a defined Table type): tables by
	// reflection, anything else by its Go syntax representation.
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String {
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Interface()
		}
		return appendCanonTable(b, m)
	}
	return appendCanonString(append(b, '?'), fmt.Sprintf("%T:%#v", v, v))
}

// fmtTable renders a table with sorted keys and typed values, for String
// and test output.
func fmtTable(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := "{"
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		s += k + "=" + fmtValue(m[k])
	}
	return s + "}"
}

func fmtValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "void"
	case string:
		return strconv.Quote(v)
	case []byte:
		return "bytes:" + strconv.Quote(string(v))
	case map[string]any:
		return fmtTable(v)
	}
	return fmt.Sprintf("%T:%v", v, v)
}
