package broker

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// Queue types and the checks RabbitMQ 4.x makes on queue.declare
// arguments (rabbit_amqqueue:check_declare_arguments and the queue types'
// declare callbacks): the x-queue-type first, then the value of every
// argument the type supports, then any argument that only another type
// supports, then the properties a replicated type refuses.

// queueKind is a queue's type.
type queueKind uint8

const (
	kindClassic queueKind = iota
	kindQuorum
	kindStream
)

func (k queueKind) String() string {
	switch k {
	case kindQuorum:
		return "quorum"
	case kindStream:
		return "stream"
	}
	return "classic"
}

// module is the type's name in RabbitMQ's error texts.
func (k queueKind) module() string {
	return "rabbit_" + k.String() + "_queue"
}

// policyName is the type's name in a policy's apply-to.
func (k queueKind) policyName() string {
	switch k {
	case kindQuorum:
		return "quorum_queues"
	case kindStream:
		return "streams"
	}
	return "classic_queues"
}

func parseKind(s string) (queueKind, bool) {
	switch s {
	case "classic":
		return kindClassic, true
	case "quorum":
		return kindQuorum, true
	case "stream":
		return kindStream, true
	}
	return 0, false
}

// The queue arguments each type supports, as RabbitMQ 4.x lists them in its
// queue types' capabilities. An argument only another type supports is
// refused (406); arguments no type knows are kept and ignored.
var typeArgs = map[queueKind][]string{
	kindClassic: {"x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
		"x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode",
		"x-queue-version", "x-single-active-consumer", "x-queue-type", "x-queue-master-locator",
		"x-queue-leader-locator"},
	kindQuorum: {"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-dead-letter-strategy",
		"x-expires", "x-max-length", "x-max-length-bytes", "x-max-in-memory-length",
		"x-max-in-memory-bytes", "x-overflow", "x-single-active-consumer", "x-queue-type",
		"x-quorum-initial-group-size", "x-member-placement-tag", "x-delivery-limit", "x-message-ttl",
		"x-queue-leader-locator", "x-consumer-disconnected-timeout", "x-consumer-timeout",
		"x-delayed-retry-type", "x-delayed-retry-min", "x-delayed-retry-max"},
	kindStream: {"x-max-length-bytes", "x-queue-type", "x-max-age", "x-stream-max-segment-size-bytes",
		"x-stream-filter-size-bytes", "x-initial-cluster-size", "x-queue-leader-locator"},
}

// consumerArgs are the consumer (basic.consume) arguments each type
// supports.
var consumerArgs = map[queueKind][]string{
	kindClassic: {"x-priority"},
	kindQuorum:  {"x-priority", "x-consumer-timeout"},
	kindStream:  {"x-stream-offset", "x-stream-filter", "x-stream-match-unfiltered"},
}

// argCheck validates one argument's value; it returns the Erlang term
// RabbitMQ prints after "invalid arg 'x-...' for queue ...: ", or "".
type argCheck func(v any, args amqpwire.Table) string

// declareChecks are the value checks, in RabbitMQ's order.
var declareChecks = []struct {
	name  string
	check argCheck
}{
	{"x-expires", checkExpires},
	{"x-message-ttl", checkTTL},
	{"x-dead-letter-exchange", checkString},
	{"x-dead-letter-routing-key", checkDLRK},
	{"x-dead-letter-strategy", checkEnum("invalid_dlx_strategy", "at-most-once", "at-least-once")},
	{"x-max-length", checkNonNegInt},
	{"x-max-length-bytes", checkNonNegInt},
	{"x-max-in-memory-length", checkNonNegInt},
	{"x-max-in-memory-bytes", checkNonNegInt},
	{"x-max-priority", checkMaxPriority},
	{"x-overflow", checkEnum("invalid_overflow", "drop-head", "reject-publish", "reject-publish-dlx")},
	{"x-queue-version", checkQueueVersion},
	{"x-single-active-consumer", checkBool},
	{"x-consumer-timeout", checkNonNegInt},
	{"x-consumer-disconnected-timeout", checkNonNegInt},
	{"x-quorum-initial-group-size", checkClusterSize},
	{"x-max-age", checkMaxAgeArg},
	{"x-stream-max-segment-size-bytes", checkNonNegInt},
	{"x-stream-filter-size-bytes", checkNonNegInt},
	{"x-initial-cluster-size", checkClusterSize},
	{"x-queue-leader-locator", checkEnum("invalid_queue_locator_arg", "client-local", "balanced")},
	{"x-member-placement-tag", checkPlacementTag},
}

// maxStreamSegmentSize bounds x-stream-max-segment-size-bytes, as RabbitMQ.
const maxStreamSegmentSize = 3_000_000_000

// queueTypeOf returns the type x-queue-type asks for, dflt when absent.
func queueTypeOf(args amqpwire.Table, dflt queueKind) queueKind {
	if s, ok := args["x-queue-type"].(string); ok {
		if k, ok := parseKind(s); ok {
			return k
		}
	}
	return dflt
}

// declaredType is the type of a queue declared with args and these
// properties: its x-queue-type, else the vhost's default type when the
// queue can be of it (a quorum queue or stream is durable, not exclusive,
// not auto-delete), else classic, as RabbitMQ picks it.
func declaredType(args amqpwire.Table, dflt queueKind, durable, exclusive, autoDelete bool) queueKind {
	if _, ok := args["x-queue-type"]; ok {
		return queueTypeOf(args, dflt)
	}
	if dflt != kindClassic && (!durable || exclusive || autoDelete) {
		return kindClassic
	}
	return dflt
}

// checkDeclareArgs checks a new or redeclared queue's arguments and
// properties as RabbitMQ 4.x does and returns its type. dflt is the
// vhost's default queue type, which a declare without x-queue-type gets.
func checkDeclareArgs(m *amqpwire.QueueDeclare, name, vhost string, dflt queueKind) (queueKind, error) {
	rs := fmt.Sprintf("queue '%s' in vhost '%s'", name, vhost)
	bad := func(arg, term string) error {
		return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg '%s' for %s: %s", arg, rs, term)
	}
	args := m.Arguments
	kind := declaredType(args, dflt, m.Durable, m.Exclusive, m.AutoDelete)
	if v, ok := args["x-queue-type"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return 0, bad("x-queue-type", "{unacceptable_type,"+erlType(v)+"}")
		}
		k, known := parseKind(s)
		if !known {
			return 0, bad("x-queue-type", erlString("unsupported queue type '"+s+"'"))
		}
		kind = k
	}
	supported := typeArgs[kind]
	for _, c := range declareChecks {
		v, ok := args[c.name]
		if !ok || !slices.Contains(supported, c.name) {
			continue
		}
		if term := c.check(v, args); term != "" {
			return 0, bad(c.name, term)
		}
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(supported, k) {
			continue
		}
		for _, other := range typeArgs {
			if slices.Contains(other, k) {
				return 0, amqpErr(amqpwire.PreconditionFailed, m, "invalid arg '%s' for %s of queue type %s", k, rs, kind.module())
			}
		}
	}
	if kind != kindClassic {
		prop := ""
		switch {
		case m.AutoDelete:
			prop = "auto-delete"
		case m.Exclusive:
			prop = "exclusive-owner"
		case !m.Durable:
			prop = "non-durable"
		}
		if prop != "" {
			return 0, amqpErr(amqpwire.PreconditionFailed, m, "invalid property '%s' for %s", prop, rs)
		}
	}
	if kind == kindStream {
		if n, ok := intArg(args["x-stream-max-segment-size-bytes"]); ok && n > maxStreamSegmentSize {
			return 0, amqpErr(amqpwire.PreconditionFailed, m, "Exceeded max value for x-stream-max-segment-size-bytes")
		}
		if v, ok := args["x-stream-filter-size-bytes"]; ok {
			if n, ok := intArg(v); !ok {
				return 0, amqpErr(amqpwire.PreconditionFailed, m, "Invalid type for x-stream-filter-size-bytes")
			} else if n < 16 || n > 255 {
				return 0, amqpErr(amqpwire.PreconditionFailed, m, "Invalid value for x-stream-filter-size-bytes")
			}
		}
	}
	return kind, nil
}

// ---- value checks (rabbit_amqqueue's check_*_arg) ----

func checkInt(v any, _ amqpwire.Table) string {
	if _, ok := intArg(v); !ok {
		return erlString("expected integer, got " + erlType(v))
	}
	return ""
}

func checkNonNegInt(v any, args amqpwire.Table) string {
	if t := checkInt(v, args); t != "" {
		return t
	}
	if n, _ := intArg(v); n < 0 {
		return fmt.Sprintf("{value_negative,%d}", n)
	}
	return ""
}

// maxExpiry is rabbit_misc:check_expiry's bound: ten years in ms.
const maxExpiry = 315_360_000_000

func checkExpiry(n int64) string {
	switch {
	case n < 0:
		return fmt.Sprintf("{value_negative,%d}", n)
	case n > maxExpiry:
		return fmt.Sprintf("{value_too_large,%d}", n)
	}
	return ""
}

func checkExpires(v any, args amqpwire.Table) string {
	if t := checkInt(v, args); t != "" {
		return t
	}
	n, _ := intArg(v)
	if n == 0 {
		return "{value_zero,0}"
	}
	return checkExpiry(n)
}

func checkTTL(v any, args amqpwire.Table) string {
	if t := checkInt(v, args); t != "" {
		return t
	}
	n, _ := intArg(v)
	return checkExpiry(n)
}

func checkMaxPriority(v any, args amqpwire.Table) string {
	if t := checkNonNegInt(v, args); t != "" {
		return t
	}
	if n, _ := intArg(v); n > 255 {
		return fmt.Sprintf("{max_value_exceeded,%d}", n)
	}
	return ""
}

func checkClusterSize(v any, args amqpwire.Table) string {
	if t := checkNonNegInt(v, args); t != "" {
		return t
	}
	if n, _ := intArg(v); n == 0 {
		return "{value_zero,0}"
	}
	return ""
}

func checkQueueVersion(v any, args amqpwire.Table) string {
	if t := checkNonNegInt(v, args); t != "" {
		return t
	}
	if n, _ := intArg(v); n != 2 {
		return erlString(fmt.Sprintf("unsupported queue version '%d'", n))
	}
	return ""
}

func checkBool(v any, _ amqpwire.Table) string {
	if _, ok := v.(bool); !ok {
		return "{unacceptable_type," + erlType(v) + "}"
	}
	return ""
}

func checkString(v any, _ amqpwire.Table) string {
	if _, ok := v.(string); !ok {
		return "{unacceptable_type," + erlType(v) + "}"
	}
	return ""
}

func checkDLRK(v any, args amqpwire.Table) string {
	if t := checkString(v, args); t != "" {
		return t
	}
	if _, ok := args["x-dead-letter-exchange"]; !ok {
		return "routing_key_but_no_dlx_defined"
	}
	return ""
}

func checkEnum(errTerm string, allowed ...string) argCheck {
	return func(v any, _ amqpwire.Table) string {
		s, ok := v.(string)
		if !ok {
			return "{unacceptable_type," + erlType(v) + "}"
		}
		if !slices.Contains(allowed, s) {
			return errTerm
		}
		return ""
	}
}

func checkPlacementTag(v any, _ amqpwire.Table) string {
	s, ok := v.(string)
	if !ok {
		return "{unacceptable_type," + erlType(v) + "}"
	}
	if s == "" {
		return "invalid_member_placement_tag_arg"
	}
	return ""
}

func checkMaxAgeArg(v any, _ amqpwire.Table) string {
	s, ok := v.(string)
	if !ok {
		return "{unacceptable_type," + erlType(v) + "}"
	}
	if _, ok := parseMaxAge(s); !ok {
		return "invalid_max_age"
	}
	return ""
}

var maxAgeRE = regexp.MustCompile(`^([0-9]+)(.*)$`)

// parseMaxAge reads x-max-age's syntax: a positive integer and a unit among
// Y, M, D, h, m, s (a month is 30 days, a year 365).
func parseMaxAge(s string) (time.Duration, bool) {
	m := maxAgeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	day := 24 * time.Hour
	unit := map[string]time.Duration{"Y": 365 * day, "M": 30 * day, "D": day, "h": time.Hour, "m": time.Minute, "s": time.Second}[m[2]]
	if unit == 0 || n > int64(1<<62)/int64(unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// erlType names a value's AMQP field type as RabbitMQ's table code does.
func erlType(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case int8:
		return "byte"
	case uint8:
		return "unsignedbyte"
	case int16:
		return "short"
	case uint16:
		return "unsignedshort"
	case int32:
		return "signedint"
	case uint32:
		return "unsignedint"
	case int64, int:
		return "long"
	case float32:
		return "float"
	case float64:
		return "double"
	case amqpwire.Decimal:
		return "decimal"
	case string:
		return "longstr"
	case []byte:
		return "binary"
	case []any:
		return "array"
	case time.Time:
		return "timestamp"
	case amqpwire.Table, map[string]any:
		return "table"
	case nil:
		return "void"
	}
	return fmt.Sprintf("%T", v)
}

// erlString prints s as Erlang's ~p prints a string.
func erlString(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// erlTypeVal prints a table value as Erlang's ~p prints {Type, Value}.
func erlTypeVal(v any) string {
	switch x := v.(type) {
	case string:
		return "{longstr,<<" + erlString(x) + ">>}"
	case []byte:
		return "{binary,<<" + erlString(string(x)) + ">>}"
	case bool:
		return fmt.Sprintf("{bool,%v}", x)
	}
	if n, ok := intArg(v); ok {
		return fmt.Sprintf("{%s,%d}", erlType(v), n)
	}
	return fmt.Sprintf("{%s,%v}", erlType(v), v)
}
