package amqpwire

import (
	"encoding/binary"
	"maps"
	"math"
	"slices"
	"time"
)

// Table is an AMQP field table. Decoded values have the Go types RabbitMQ's
// errata gives their type tags:
//
//	t bool      b int8     B uint8    s int16    u uint16
//	I int32     i uint32   l int64    f float32  d float64
//	D Decimal   S string   x []byte   A []any    T time.Time
//	F Table     V nil
//
// AppendTable also accepts int and uint (as I when they fit in 32 signed
// bits, else l), map[string]any (as F); other types are written as void.
type Table map[string]any

// Decimal is an AMQP decimal value: Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// MaxTableDepth bounds how deeply tables and arrays may nest in decoded
// input, so a hostile frame cannot exhaust the stack.
const MaxTableDepth = 100

// Table reads a field table: a 32-bit byte length followed by pairs of
// shortstr name, type octet and value.
func (r *Reader) Table() Table { return r.table(0) }

func (r *Reader) table(depth int) Table {
	if depth > MaxTableDepth {
		r.fail(syntaxError("field table nested deeper than %d", MaxTableDepth))
		return nil
	}
	end, saved, ok := r.enter("table")
	if !ok {
		return nil
	}
	t := Table{}
	for r.err == nil && r.off < end {
		key := string(r.shortStrBytes())
		v := r.value(depth)
		if r.err == nil {
			t[key] = v
		}
	}
	r.leave(saved)
	if r.err != nil {
		return nil
	}
	return t
}

// enter reads a 32-bit length and limits r to that many bytes. leave undoes it.
func (r *Reader) enter(what string) (end int, saved []byte, ok bool) {
	b := r.next(4, what+" length")
	if b == nil {
		return 0, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(r.buf)-r.off) {
		r.fail(syntaxError("truncated %s at offset %d: length %d, have %d", what, r.off, n, len(r.buf)-r.off))
		return 0, nil, false
	}
	saved = r.buf
	end = r.off + int(n)
	r.buf = r.buf[:end]
	return end, saved, true
}

func (r *Reader) leave(saved []byte) {
	if r.err != nil {
		r.buf = saved
		r.off = len(saved)
		return
	}
	r.buf = saved
}

func (r *Reader) array(depth int) []any {
	if depth > MaxTableDepth {
		r.fail(syntaxError("field array nested deeper than %d", MaxTableDepth))
		return nil
	}
	end, saved, ok := r.enter("array")
	if !ok {
		return nil
	}
	a := []any{}
	for r.err == nil && r.off < end {
		v := r.value(depth)
		if r.err == nil {
			a = append(a, v)
		}
	}
	r.leave(saved)
	if r.err != nil {
		return nil
	}
	return a
}

// value reads a type octet and the value it tags.
func (r *Reader) value(depth int) any {
	tag := r.Octet()
	if r.err != nil {
		return nil
	}
	switch tag {
	case 't':
		return r.Octet() != 0
	case 'b':
		return int8(r.Octet())
	case 'B':
		return r.Octet()
	case 's':
		return int16(r.Short())
	case 'u':
		return r.Short()
	case 'I':
		return int32(r.Long())
	case 'i':
		return r.Long()
	case 'l':
		return int64(r.LongLong())
	case 'f':
		return math.Float32frombits(r.Long())
	case 'd':
		return math.Float64frombits(r.LongLong())
	case 'D':
		return Decimal{Scale: r.Octet(), Value: int32(r.Long())}
	case 'S':
		return string(r.longStrBytes())
	case 'x':
		b := r.longStrBytes()
		if b == nil {
			return nil
		}
		return slices.Clone(b)
	case 'A':
		return r.array(depth + 1)
	case 'T':
		return r.Timestamp()
	case 'F':
		return r.table(depth + 1)
	case 'V':
		return nil
	}
	r.fail(syntaxError("unknown field value type %q at offset %d", tag, r.off-1))
	return nil
}

// skipValue checks a tagged value like value does, without allocating.
func (r *Reader) skipValue(depth int) {
	tag := r.Octet()
	if r.err != nil {
		return
	}
	switch tag {
	case 't', 'b', 'B':
		r.next(1, "field value")
	case 's', 'u':
		r.next(2, "field value")
	case 'I', 'i', 'f':
		r.next(4, "field value")
	case 'l', 'd', 'T':
		r.next(8, "field value")
	case 'D':
		r.next(5, "field value")
	case 'S', 'x':
		r.longStrBytes()
	case 'A', 'F':
		if depth+1 > MaxTableDepth {
			r.fail(syntaxError("field table nested deeper than %d", MaxTableDepth))
			return
		}
		end, saved, ok := r.enter("field value")
		if !ok {
			return
		}
		for r.err == nil && r.off < end {
			if tag == 'F' {
				r.shortStrBytes()
			}
			r.skipValue(depth + 1)
		}
		r.leave(saved)
	case 'V':
	default:
		r.fail(syntaxError("unknown field value type %q at offset %d", tag, r.off-1))
	}
}

// skipTable checks a field table like Table does, without allocating.
func (r *Reader) skipTable() {
	end, saved, ok := r.enter("table")
	if !ok {
		return
	}
	for r.err == nil && r.off < end {
		r.shortStrBytes()
		r.skipValue(0)
	}
	r.leave(saved)
}

// AppendTable appends t as a field table with its keys in sorted order, so
// equal tables encode to equal bytes. A nil Table encodes as an empty one.
func AppendTable(dst []byte, t Table) []byte {
	return appendTable(dst, t)
}

func appendTable(dst []byte, t map[string]any) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, k := range slices.Sorted(maps.Keys(t)) {
		dst = AppendShortStr(dst, k)
		dst = appendValue(dst, t[k])
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendArray appends a as a field array.
func AppendArray(dst []byte, a []any) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, v := range a {
		dst = appendValue(dst, v)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// appendValue appends a type octet and the value.
func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case bool:
		b := byte(0)
		if v {
			b = 1
		}
		return append(dst, 't', b)
	case int8:
		return append(dst, 'b', byte(v))
	case uint8:
		return append(dst, 'B', v)
	case int16:
		return binary.BigEndian.AppendUint16(append(dst, 's'), uint16(v))
	case uint16:
		return binary.BigEndian.AppendUint16(append(dst, 'u'), v)
	case int32:
		return binary.BigEndian.AppendUint32(append(dst, 'I'), uint32(v))
	case uint32:
		return binary.BigEndian.AppendUint32(append(dst, 'i'), v)
	case int64:
		return binary.BigEndian.AppendUint64(append(dst, 'l'), uint64(v))
	case int:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return binary.BigEndian.AppendUint32(append(dst, 'I'), uint32(v))
		}
		return binary.BigEndian.AppendUint64(append(dst, 'l'), uint64(v))
	case uint:
		if v <= math.MaxInt32 {
			return binary.BigEndian.AppendUint32(append(dst, 'I'), uint32(v))
		}
		return binary.BigEndian.AppendUint64(append(dst, 'l'), uint64(v))
	case uint64:
		return binary.BigEndian.AppendUint64(append(dst, 'l'), v)
	case float32:
		return binary.BigEndian.AppendUint32(append(dst, 'f'), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, 'd'), math.Float64bits(v))
	case Decimal:
		return binary.BigEndian.AppendUint32(append(dst, 'D', v.Scale), uint32(v.Value))
	case string:
		return AppendLongStr(append(dst, 'S'), v)
	case []byte:
		dst = binary.BigEndian.AppendUint32(append(dst, 'x'), uint32(len(v)))
		return append(dst, v...)
	case time.Time:
		return appendTimestamp(append(dst, 'T'), v)
	case Table:
		return appendTable(append(dst, 'F'), v)
	case map[string]any:
		return appendTable(append(dst, 'F'), v)
	case []any:
		return AppendArray(append(dst, 'A'), v)
	}
	return append(dst, 'V')
}
