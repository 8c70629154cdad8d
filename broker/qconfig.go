package broker

import (
	"math"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// A queue's effective settings come from its arguments and from the
// policy and operator policy that apply to it (policy.go), resolved per
// key as RabbitMQ resolves them for the queue's type: for classic queues
// the lower of argument and policy for expires, message-ttl, max-length and
// max-length-bytes, the argument for dead-lettering and overflow; for
// quorum queues the same but the policy's overflow, and delivery-limit the
// lower unless one is negative (unlimited); for streams the policy for
// retention and segment size.

// msgStore is what a queue needs from its storage: *store.Queue, or
// *store.PriorityQueue for a priority queue, or streamStore for a stream.
type msgStore interface {
	Append(recs []segment.Record, onDurable func(error)) (uint64, error)
	Deliver(max int, fn func(*store.Message) store.Verdict) int
	Ready() int
	ReadyBytes() int64
	Unacked() int
	UnackedBytes() int64
	Ack(seq uint64) bool
	AckMany(seqs []uint64) int
	Requeue(seqs []uint64) int
	Return(seqs []uint64, failed bool, limit int64) []uint64
	Purge() int
	Read(seq uint64) (segment.Record, error)
	Delete() error
}

var (
	_ msgStore = (*store.Queue)(nil)
	_ msgStore = (*store.PriorityQueue)(nil)
)

// overflowMode is x-overflow.
type overflowMode uint8

const (
	overflowDropHead overflowMode = iota
	overflowRejectPublish
	overflowRejectPublishDLX
)

func parseOverflow(s string) (overflowMode, bool) {
	switch s {
	case "drop-head":
		return overflowDropHead, true
	case "reject-publish":
		return overflowRejectPublish, true
	case "reject-publish-dlx":
		return overflowRejectPublishDLX, true
	}
	return 0, false
}

// defaultDeliveryLimit is a quorum queue's delivery limit when neither an
// argument nor a policy sets one (RabbitMQ 4.x).
const defaultDeliveryLimit = 20

// numberOf reads an integer from an argument (any AMQP integer type) or a
// policy value (a JSON number).
func numberOf(v any) (int64, bool) {
	if n, ok := intArg(v); ok {
		return n, true
	}
	if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1<<62 {
		return int64(f), true
	}
	return 0, false
}

func resolveMin(pol, arg int64) int64 { return min(pol, arg) }

// lookupInt resolves an integer setting from the argument x-<name> and the
// policies' <name>, as rabbit_queue_type_util:args_policy_lookup does.
func (q *queue) lookupInt(name string, resolve func(pol, arg int64) int64) (int64, bool) {
	arg, aok := numberOf(q.args["x-"+name])
	pv, pok := q.policyValue(name)
	pol, pok := numberOf(pv)
	switch {
	case aok && pok:
		return resolve(pol, arg), true
	case aok:
		return arg, true
	case pok:
		return pol, true
	}
	return 0, false
}

// lookupString resolves a string setting; policyWins picks the policy's
// value when both are set.
func (q *queue) lookupString(name string, policyWins bool) (string, bool) {
	arg, aok := stringOf(q.args["x-"+name])
	pv, _ := q.policyValue(name)
	pol, pok := pv.(string)
	switch {
	case aok && pok && policyWins:
		return pol, true
	case aok:
		return arg, true
	case pok:
		return pol, true
	}
	return "", false
}

// configureLocked computes the queue's effective settings. It runs at
// declaration and recovery, and whenever the policies that apply change.
func (q *queue) configureLocked() {
	q.ttl, q.maxLen, q.maxBytes, q.expires = -1, -1, -1, -1
	q.overflow = overflowDropHead
	q.dlx, q.dlrk, q.hasDLX, q.hasDLRK = "", "", false, false
	q.deliveryLimit = -1
	if v, ok := q.args["x-single-active-consumer"].(bool); ok {
		q.sac = v
	}
	if q.kind == kindStream {
		q.retention = store.Retention{}
		if n, ok := q.lookupInt("max-length-bytes", resolvePolicy); ok && n > 0 {
			q.retention.MaxBytes = n
		}
		if s, ok := q.lookupString("max-age", true); ok {
			if d, ok := parseMaxAge(s); ok {
				q.retention.MaxAge = d
			}
		}
		return
	}
	if n, ok := q.lookupInt("message-ttl", resolveMin); ok && n >= 0 {
		q.ttl = n
	}
	if n, ok := q.lookupInt("max-length", resolveMin); ok && n >= 0 {
		q.maxLen = n
	}
	if n, ok := q.lookupInt("max-length-bytes", resolveMin); ok && n >= 0 {
		q.maxBytes = n
	}
	if n, ok := q.lookupInt("expires", resolveMin); ok && n > 0 {
		q.expires = n
	}
	if s, ok := q.lookupString("overflow", q.kind == kindQuorum); ok {
		if m, ok := parseOverflow(s); ok {
			q.overflow = m
		}
	}
	if q.kind == kindQuorum && q.overflow == overflowRejectPublishDLX {
		// Quorum queues do not support it and fall back to drop-head.
		q.overflow = overflowDropHead
	}
	if v, ok := q.lookupString("dead-letter-exchange", false); ok {
		q.dlx, q.hasDLX = v, true
	}
	if v, ok := q.lookupString("dead-letter-routing-key", false); ok {
		q.dlrk, q.hasDLRK = v, true
	}
	if q.kind == kindQuorum {
		q.deliveryLimit = defaultDeliveryLimit
		if n, ok := q.lookupInt("delivery-limit", resolveDeliveryLimit); ok {
			q.deliveryLimit = n
		} else if _, set := q.args["x-delivery-limit"]; set {
			q.deliveryLimit = defaultDeliveryLimit // not an integer
		}
		if q.deliveryLimit < 0 {
			q.deliveryLimit = -1
		}
	}
}

func resolvePolicy(pol, _ int64) int64 { return pol }

// resolveDeliveryLimit is rabbit_quorum_queue's: the lower of the two,
// unless one is negative (unlimited), then the higher.
func resolveDeliveryLimit(pol, arg int64) int64 {
	if pol < 0 || arg < 0 {
		return max(pol, arg)
	}
	return min(pol, arg)
}

// levelOf returns a record's priority level: its priority property, capped
// at the queue's x-max-priority, as RabbitMQ caps it.
func (q *queue) levelOf(r *segment.Record) uint8 {
	return min(amqpwire.PeekPriority(r.Props), uint8(q.maxPrio))
}

// maxPriorityOf reads x-max-priority (-1 when absent).
func maxPriorityOf(args amqpwire.Table) int {
	if n, ok := intArg(args["x-max-priority"]); ok && n >= 0 && n <= 255 {
		return int(n)
	}
	return -1
}

// streamSegmentSize reads x-stream-max-segment-size-bytes (policy first),
// 0 when unset; only the value at declaration counts, as in RabbitMQ.
func (q *queue) streamSegmentSize() int64 {
	if n, ok := q.lookupInt("stream-max-segment-size-bytes", resolvePolicy); ok && n > 0 {
		return n
	}
	return 0
}

// retentionInterval is how often streams with an age limit apply it.
const retentionInterval = 5 * time.Second
