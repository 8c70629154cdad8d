package broker

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// messageExpiry returns when a message expires (unix ms), from the queue's
// TTL and the message's expiration property, whichever is sooner.
func (q *queue) messageExpiry(rec *segment.Record) (int64, bool) {
	exp := int64(-1)
	if q.ttl >= 0 {
		exp = rec.Timestamp + q.ttl
	}
	if len(rec.Props) >= 2 && binary.BigEndian.Uint16(rec.Props)&amqpwire.FlagExpiration != 0 {
		if p, err := amqpwire.DecodeProperties(rec.Props); err == nil {
			if ms, err := strconv.ParseInt(p.Expiration, 10, 64); err == nil && ms >= 0 {
				if e := rec.Timestamp + ms; exp < 0 || e < exp {
					exp = e
				}
			}
		}
	}
	return exp, exp >= 0
}

// mayExpire reports whether any message of the queue can expire.
func (q *queue) mayExpire() bool { return q.ttl >= 0 || q.perMsgTTL }

// deadRecordLocked queues a copy of a dropped message for its dead-letter
// exchange, if the queue has one; it is republished once q.mu is released.
func (q *queue) deadRecordLocked(rec *segment.Record, reason string) {
	if !q.hasDLX {
		return
	}
	c := *rec
	c.Exchange = strings.Clone(rec.Exchange)
	c.RoutingKey = strings.Clone(rec.RoutingKey)
	c.Props = slices.Clone(rec.Props)
	c.Body = slices.Clone(rec.Body)
	q.deadQ = append(q.deadQ, q.deadLetter(c, reason, time.Now()))
}

// expireHeadLocked drops expired messages at the head of the queue, as
// RabbitMQ does, and arms a timer for the next head to expire.
func (q *queue) expireHeadLocked() {
	if !q.mayExpire() || q.deleted {
		return
	}
	q.now = time.Now().UnixMilli()
	next := int64(-1)
	q.sq.Deliver(1, func(m *store.Message) store.Verdict {
		exp, ok := q.messageExpiry(&m.Record)
		if !ok {
			return store.Stop
		}
		if q.now <= exp {
			next = exp
			return store.Stop
		}
		q.deadRecordLocked(&m.Record, reasonExpired)
		return store.Drop
	})
	if next >= 0 {
		q.armExpiryLocked(next - q.now + 1)
	}
}

func (q *queue) armExpiryLocked(ms int64) {
	q.expiryArmed = true
	d := time.Duration(ms) * time.Millisecond
	if q.expiryTimer == nil {
		q.expiryTimer = time.AfterFunc(d, q.onExpiryTimer)
		return
	}
	q.expiryTimer.Reset(d)
}

func (q *queue) onExpiryTimer() {
	if q.vh.s.closing.Load() {
		return
	}
	q.mu.Lock()
	q.expiryArmed = false
	q.expireHeadLocked()
	q.unlock()
}

// overLimitLocked reports whether the ready messages pass the queue's
// length or byte limit.
func (q *queue) overLimitLocked() bool {
	if q.maxLen >= 0 && int64(q.sq.Ready()) > q.maxLen {
		return true
	}
	return q.maxBytes >= 0 && q.sq.ReadyBytes() > q.maxBytes
}

// enforceMaxLenLocked drops messages from the head until the queue is within
// its length and byte limits (RabbitMQ's default drop-head overflow); for a
// priority queue the head is the highest priority's, as in RabbitMQ.
func (q *queue) enforceMaxLenLocked() {
	if q.overflow != overflowDropHead || (q.maxLen < 0 && q.maxBytes < 0) {
		return
	}
	for q.overLimitLocked() {
		dropped := 0
		q.sq.Deliver(1, func(m *store.Message) store.Verdict {
			if dropped > 0 {
				return store.Stop
			}
			dropped++
			q.deadRecordLocked(&m.Record, reasonMaxLen)
			return store.Drop
		})
		if dropped == 0 {
			return
		}
	}
}

// rejectOverflowLocked applies x-overflow reject-publish and
// reject-publish-dlx to a batch, message by message as RabbitMQ does: a
// message is refused when the ready messages, with it, would pass the
// length or byte limit; one that a waiting consumer takes at once does not
// count. It returns the records accepted (recs, filtered in place) and the
// indexes of those refused; with reject-publish-dlx these are also
// dead-lettered (reason maxlen).
func (q *queue) rejectOverflowLocked(recs []segment.Record) ([]segment.Record, []int) {
	ready := int64(q.sq.Ready())
	var bytes int64
	if q.maxBytes >= 0 {
		bytes = q.sq.ReadyBytes()
	}
	credit := 0
	if ready == 0 {
		credit = q.waitingCreditLocked()
	}
	var rejected []int
	keep := recs[:0]
	for i := range recs {
		size := int64(len(recs[i].Body))
		if (q.maxLen >= 0 && ready+1 > q.maxLen) || (q.maxBytes >= 0 && bytes+size > q.maxBytes) {
			rejected = append(rejected, i)
			if q.overflow == overflowRejectPublishDLX {
				q.deadRecordLocked(&recs[i], reasonMaxLen)
			}
			continue
		}
		if ready == 0 && credit > 0 {
			credit-- // delivered at once: never ready
		} else {
			ready++
			bytes += size
		}
		keep = append(keep, recs[i])
	}
	return keep, rejected
}

// waitingCreditLocked is how many messages the consumers could take now.
func (q *queue) waitingCreditLocked() int {
	n := 0
	cons := q.consumers
	if q.sac && len(cons) > 1 {
		cons = cons[:1]
	}
	for _, c := range cons {
		if !c.ch.c.stalled.Load() {
			n += c.credit()
		}
	}
	return n
}

func (q *queue) takeDeadLocked() []segment.Record {
	d := q.deadQ
	q.deadQ = nil
	return d
}

// touch restarts the x-expires countdown: the queue is in use.
func (q *queue) touchLocked() {
	if q.expires <= 0 || q.deleted {
		return
	}
	d := time.Duration(q.expires) * time.Millisecond
	if q.idleTimer == nil {
		q.idleTimer = time.AfterFunc(d, q.onIdleTimer)
		return
	}
	q.idleTimer.Reset(d)
}

func (q *queue) onIdleTimer() {
	if q.vh.s.closing.Load() {
		return
	}
	q.mu.Lock()
	unused := len(q.consumers) == 0 && !q.deleted
	q.mu.Unlock()
	if unused {
		q.vh.deleteQueueLogged(q, "x-expires: unused")
	}
}

func (q *queue) stopTimersLocked() {
	if q.expiryTimer != nil {
		q.expiryTimer.Stop()
	}
	if q.idleTimer != nil {
		q.idleTimer.Stop()
	}
}
