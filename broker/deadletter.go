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

// dlxConfig reads a queue's dead-letter arguments.
func (q *queue) dlxConfig() {
	if v, ok := stringOf(q.args["x-dead-letter-exchange"]); ok {
		q.dlx, q.hasDLX = v, true
	}
	if v, ok := stringOf(q.args["x-dead-letter-routing-key"]); ok {
		q.dlrk, q.hasDLRK = v, true
	}
}

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
	entry := amqpwire.Table{
		"count":        count,
		"reason":       reason,
		"queue":        q.name,
		"time":         now.Truncate(time.Second),
		"exchange":     rec.Exchange,
		"routing-keys": []any{rec.RoutingKey},
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
func (vh *vhost) republish(recs []segment.Record) {
	if len(recs) == 0 {
		return
	}
	snap := vh.routes()
	groups := make(map[*queue][]segment.Record)
	var order []*queue
	var dst []string
	for _, r := range recs {
		dst = vh.route(snap, r.Exchange, r.RoutingKey, r.Props, dst[:0])
		for _, name := range dst {
			q := vh.queueByName(name)
			if q == nil {
				continue
			}
			if _, ok := groups[q]; !ok {
				order = append(order, q)
			}
			groups[q] = append(groups[q], r)
		}
	}
	for _, q := range order {
		q.publish(groups[q], nil)
	}
}
