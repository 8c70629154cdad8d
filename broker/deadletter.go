package broker

import (
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
)

// Dead-letter reasons, as RabbitMQ writes them in x-death.
const (
	reasonRejected = "rejected"
	reasonExpired  = "expired"
	reasonMaxLen   = "maxlen"
)

// deadLetterLocked reads the records of handed-out seqs (before they are
// acked) and returns them rewritten for the dead-letter exchange.
func (q *queue) deadLetterLocked(seqs []uint64, reason string) []segment.Record {
	out := make([]segment.Record, 0, len(seqs))
	now := time.Now()
	for _, seq := range seqs {
		rec, err := q.sq.Read(seq)
		if err != nil {
			q.vh.s.log.Warn().Err(err).Str("queue", q.name).Uint64("seq", seq).Msg("cannot read message to dead-letter it")
			continue
		}
		out = append(out, q.deadLetter(rec, reason, now))
	}
	return out
}

// deadLetter rewrites a record (owned by the caller) for the dead-letter
// exchange: x-death header, routing key, exchange, timestamp.
func (q *queue) deadLetter(rec segment.Record, reason string, now time.Time) segment.Record {
	rec.Props = q.deathProps(rec, reason, now)
	if q.hasDLRK {
		rec.RoutingKey = q.dlrk
	}
	rec.Exchange = q.dlx
	rec.Timestamp = now.UnixMilli()
	return rec
}

// deathProps adds this death to the message's x-death header as RabbitMQ
// does: one entry per (queue, reason), most recent first, with a count.
func (q *queue) deathProps(rec segment.Record, reason string, now time.Time) []byte {
	p, err := amqpwire.DecodeProperties(rec.Props)
	if err != nil {
		return rec.Props
	}
	if p.Headers == nil {
		p.Headers = amqpwire.Table{}
	}
	var deaths []any
	if old, ok := p.Headers["x-death"].([]any); ok {
		deaths = old
	}
	count := int64(1)
	for i, d := range deaths {
		t, ok := d.(amqpwire.Table)
		if !ok {
			continue
		}
		if t["queue"] == q.name && t["reason"] == reason {
			if n, ok := intArg(t["count"]); ok {
				count = n + 1
			}
			deaths = append(deaths[:i], deaths[i+1:]...)
			break
		}
	}
	keys := []any{rec.RoutingKey} // with CC's, as RabbitMQ records them
	if cc, _, err := routingHeaders(p.Headers, nil); err == nil {
		for _, k := range cc {
			keys = append(keys, k)
		}
	}
	if q.hasDLRK {
		delete(p.Headers, "CC") // the new routing key replaces them all
	}
	entry := amqpwire.Table{
		"count":        count,
		"reason":       reason,
		"queue":        q.name,
		"time":         now.Truncate(time.Second),
		"exchange":     rec.Exchange,
		"routing-keys": keys,
	}
	if p.Expiration != "" {
		entry["original-expiration"] = p.Expiration
		p.Expiration = ""
		p.Flags &^= amqpwire.FlagExpiration
	}
	p.Headers["x-death"] = append([]any{entry}, deaths...)
	if _, ok := p.Headers["x-first-death-reason"]; !ok {
		p.Headers["x-first-death-reason"] = reason
		p.Headers["x-first-death-queue"] = q.name
		p.Headers["x-first-death-exchange"] = rec.Exchange
	}
	p.Headers["x-last-death-reason"] = reason
	p.Headers["x-last-death-queue"] = q.name
	p.Headers["x-last-death-exchange"] = rec.Exchange
	p.Flags |= amqpwire.FlagHeaders
	return p.AppendTo(nil)
}

// republish routes dead-lettered records through the vhost, outside any
// queue lock. Messages that route nowhere are dropped, as in RabbitMQ.
// Dead letters that the target queues drop in turn (max-length overflow)
// are routed by the same loop, and a message that would die again in a
// queue it already died in, with no rejection on the way, is dropped as a
// dead-letter cycle (RabbitMQ's rule), so chains always end.
func (vh *vhost) republish(recs []segment.Record) {
	var dst []string
	cycles := 0
	for len(recs) > 0 {
		snap := vh.routes()
		groups := make(map[*queue][]segment.Record)
		var order []*queue
		for _, r := range recs {
			dst = vh.route(snap, r.Exchange, r.RoutingKey, r.Props, dst[:0])
			var deaths []any
			for _, name := range dst {
				q := vh.queueByName(name)
				if q == nil {
					continue
				}
				if deaths == nil {
					deaths = xDeaths(r.Props)
				}
				if isDeadLetterCycle(deaths, name) {
					cycles++
					continue
				}
				if _, ok := groups[q]; !ok {
					order = append(order, q)
				}
				groups[q] = append(groups[q], r)
			}
		}
		var next []segment.Record
		for _, q := range order {
			dead, _ := q.append(groups[q], nil)
			next = append(next, dead...)
		}
		recs = next
	}
	if cycles > 0 {
		vh.s.log.Warn().Str("vhost", vh.name).Int("dropped", cycles).
			Msg("dead-lettered messages dropped: dead-letter cycle detected")
	}
}

// xDeaths returns a message's x-death header (most recent death first),
// or an empty non-nil slice.
func xDeaths(props []byte) []any {
	if p, err := amqpwire.DecodeProperties(props); err == nil {
		if d, ok := p.Headers["x-death"].([]any); ok {
			return d
		}
	}
	return []any{}
}

// isDeadLetterCycle applies RabbitMQ's cycle rule: dead-lettering into
// queue is a cycle when the message already died in queue and no death
// since then, that one included, was a rejection by a client.
func isDeadLetterCycle(deaths []any, queue string) bool {
	for _, d := range deaths {
		t, ok := d.(amqpwire.Table)
		if !ok {
			continue
		}
		if t["reason"] == reasonRejected {
			return false
		}
		if t["queue"] == queue {
			return true
		}
	}
	return false
}
