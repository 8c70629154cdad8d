package router

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Headers exchange matching, as RabbitMQ 4's rabbit_exchange_type_headers:
//
//   - The binding argument "x-match" selects the mode: "all" (the default
//     when absent), "any", "all-with-x" or "any-with-x". Any other string, or
//     a non-string x-match, makes the binding invalid (ErrInvalidBinding; the
//     broker answers 406 PRECONDITION_FAILED).
//   - The binding argument "x-match" itself never takes part. Other binding
//     arguments whose key begins with "x-" are ignored under all and any
//     and compared under all-with-x and any-with-x.
//   - A binding argument with a void value (nil) matches when the message
//     has that header, whatever its value (presence match).
//   - Otherwise the argument matches when the message has the header with
//     an equal value (see valueEqual).
//   - all: every compared argument matches (so a binding with none matches
//     every message); any: at least one does (so a binding with none
//     matches nothing).

type matchMode uint8

const (
	matchAll matchMode = iota
	matchAny
)

// headerArg is one compared binding argument.
type headerArg struct {
	key  string
	ki   int // index of key in the exchange's distinct keys
	void bool
	val  any
}

// maxHeaderKeys bounds the distinct argument keys of a headers exchange
// whose message header values Route looks up once into a stack array;
// beyond it each binding looks its keys up itself.
const maxHeaderKeys = 32

// headerVal is a message header looked up by key: its value and presence.
type headerVal struct {
	v  any
	ok bool
}

// indexHeaderKeys numbers the distinct argument keys of ms, sets each
// argument's ki and returns the keys.
func indexHeaderKeys(ms []*headerMatcher) []string {
	idx := make(map[string]int)
	var keys []string
	for _, m := range ms {
		for i := range m.args {
			a := &m.args[i]
			k, ok := idx[a.key]
			if !ok {
				k = len(keys)
				idx[a.key] = k
				keys = append(keys, a.key)
			}
			a.ki = k
		}
	}
	return keys
}

// matchVals is match over pre-looked-up header values (see headerVal).
func (m *headerMatcher) matchVals(vals []headerVal) bool {
	if m.mode == matchAll {
		for i := range m.args {
			a := &m.args[i]
			hv := &vals[a.ki]
			if !hv.ok || (!a.void && !valueEqual(a.val, hv.v)) {
				return false
			}
		}
		return true
	}
	for i := range m.args {
		a := &m.args[i]
		if hv := &vals[a.ki]; hv.ok && (a.void || valueEqual(a.val, hv.v)) {
			return true
		}
	}
	return false
}

// headerMatcher is a compiled headers binding pattern shared by every
// binding with the same arguments.
type headerMatcher struct {
	mode matchMode
	args []headerArg
	d    *dests
}

// parseHeaderArgs validates binding args for a headers exchange and
// compiles them.
func parseHeaderArgs(args map[string]any) (*headerMatcher, error) {
	m := &headerMatcher{}
	withX := false
	if v, ok := args["x-match"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, fmt.Errorf("%w: x-match of type %T, expected longstr", ErrInvalidBinding, v)
		}
		switch s {
		case "all":
		case "any":
			m.mode = matchAny
		case "all-with-x":
			withX = true
		case "any-with-x":
			m.mode, withX = matchAny, true
		default:
			return nil, fmt.Errorf("%w: x-match %q, expected all, any, all-with-x, or any-with-x", ErrInvalidBinding, s)
		}
	}
	for k, v := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		m.args = append(m.args, headerArg{key: k, void: v == nil, val: v})
	}
	slices.SortFunc(m.args, func(a, b headerArg) int { return strings.Compare(a.key, b.key) })
	return m, nil
}

// match reports whether the message headers h match the pattern.
func (m *headerMatcher) match(h map[string]any) bool {
	if m.mode == matchAll {
		for i := range m.args {
			a := &m.args[i]
			v, ok := h[a.key]
			if !ok || (!a.void && !valueEqual(a.val, v)) {
				return false
			}
		}
		return true
	}
	for i := range m.args {
		a := &m.args[i]
		if v, ok := h[a.key]; ok && (a.void || valueEqual(a.val, v)) {
			return true
		}
	}
	return false
}

// valueEqual compares a binding argument with a message header the way
// RabbitMQ 4 does (Erlang =:= on the decoded values, types erased to
// Erlang's):
//
//   - integers of every width and signedness compare by value
//     (int8(1) == uint32(1) == int64(1));
//   - floats compare by value across float32/float64;
//   - an integer never equals a float (1 != 1.0);
//   - a longstr (string) equals a byte array ([]byte) with the same bytes;
//   - bools compare with bools; a void header equals nothing;
//   - timestamps compare with timestamps at second resolution (RabbitMQ 4
//     scales the message's timestamp to milliseconds before comparing, so
//     there a timestamp argument can never match; Warren keeps the 3.x
//     behaviour of comparing seconds, minus 3.x's timestamp == integer);
//   - nested tables and arrays compare strictly: same keys or order, and at
//     every level the same Go type and value (RabbitMQ compares the typed
//     field lists);
//   - anything else (amqpwire.Decimal) equals a value of the same type with
//     the same contents.
func valueEqual(a, b any) bool {
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok { // the common case first
			return as == bs
		}
	}
	if ai, aok := intOf(a); aok {
		bi, bok := intOf(b)
		return bok && ai == bi
	}
	if af, aok := floatOf(a); aok {
		bf, bok := floatOf(b)
		return bok && af == bf
	}
	switch a := a.(type) {
	case string:
		switch b := b.(type) {
		case string:
			return a == b
		case []byte:
			return a == string(b)
		}
		return false
	case []byte:
		switch b := b.(type) {
		case string:
			return string(a) == b
		case []byte:
			return string(a) == string(b)
		}
		return false
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case nil:
		return false
	}
	return strictEqual(a, b)
}

// bigInt is an integer of any Go width: sign and magnitude.
type bigInt struct {
	neg bool
	mag uint64
}

func intOf(v any) (bigInt, bool) {
	switch v := v.(type) {
	case int8:
		return signed(int64(v)), true
	case int16:
		return signed(int64(v)), true
	case int32:
		return signed(int64(v)), true
	case int64:
		return signed(v), true
	case int:
		return signed(int64(v)), true
	case uint8:
		return bigInt{mag: uint64(v)}, true
	case uint16:
		return bigInt{mag: uint64(v)}, true
	case uint32:
		return bigInt{mag: uint64(v)}, true
	case uint64:
		return bigInt{mag: v}, true
	case uint:
		return bigInt{mag: uint64(v)}, true
	}
	return bigInt{}, false
}

func signed(v int64) bigInt {
	if v < 0 {
		return bigInt{neg: true, mag: uint64(-v)} // -MinInt64 wraps to 1<<63, the right magnitude
	}
	return bigInt{mag: uint64(v)}
}

func floatOf(v any) (float64, bool) {
	switch v := v.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// strictEqual compares values inside nested tables and arrays: same Go
// type, same value. Floats compare by ==, so NaN equals nothing.
func strictEqual(a, b any) bool {
	switch a := a.(type) {
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Unix() == b.Unix()
	case []byte:
		b, ok := b.([]byte)
		return ok && string(a) == string(b)
	case float32:
		b, ok := b.(float32)
		return ok && a == b
	case float64:
		b, ok := b.(float64)
		return ok && a == b
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !strictEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !strictEqual(av, bv) {
				return false
			}
		}
		return true
	case nil:
		return b == nil
	}
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	ra, rb := reflect.ValueOf(a), reflect.ValueOf(b)
	if ra.Kind() == reflect.Map && ra.Type().Key().Kind() == reflect.String {
		// A defined table type (amqpwire.Table if it is not an alias).
		if ra.Len() != rb.Len() {
			return false
		}
		it := ra.MapRange()
		for it.Next() {
			bv := rb.MapIndex(it.Key())
			if !bv.IsValid() || !strictEqual(it.Value().Interface(), bv.Interface()) {
				return false
			}
		}
		return true
	}
	if ra.Comparable() {
		return a == b
	}
	return reflect.DeepEqual(a, b)
}
