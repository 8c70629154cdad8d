package broker

import (
	"sync/atomic"
)

// Message counters. They are exact and cumulative since the broker started;
// the management API derives rates by sampling them. The hot path adds to
// them once per batch (a publish batch, a delivery round, an ack batch),
// never per message.

// Totals are the node-wide message counters, named after RabbitMQ's global
// counters (rabbitmq_global_messages_*).
type Totals struct {
	// Received counts messages published by clients; ReceivedConfirm those
	// published on channels in confirm mode.
	Received, ReceivedConfirm uint64
	// Routed counts messages routed to at least one queue; UnroutableReturned
	// and UnroutableDropped the others, returned (mandatory) or dropped.
	Routed, UnroutableReturned, UnroutableDropped uint64
	// Confirmed counts publisher confirms (basic.ack) sent, per message.
	Confirmed uint64
	// DeliveredAck and DeliveredNoAck count deliveries to consumers with
	// manual and automatic acknowledgement; GetAck and GetNoAck the same for
	// basic.get, GetEmpty the basic.get that found nothing.
	DeliveredAck, DeliveredNoAck, GetAck, GetNoAck, GetEmpty uint64
	// Redelivered counts deliveries flagged redelivered; Acked the messages
	// acknowledged by clients.
	Redelivered, Acked uint64
}

type totals struct {
	received, receivedConfirm                     atomic.Uint64
	routed, unroutableReturned, unroutableDropped atomic.Uint64
	confirmed                                     atomic.Uint64
	deliveredAck, deliveredNoAck                  atomic.Uint64
	getAck, getNoAck, getEmpty                    atomic.Uint64
	redelivered, acked                            atomic.Uint64
}

func (t *totals) snapshot() Totals {
	return Totals{
		Received: t.received.Load(), ReceivedConfirm: t.receivedConfirm.Load(),
		Routed: t.routed.Load(), UnroutableReturned: t.unroutableReturned.Load(), UnroutableDropped: t.unroutableDropped.Load(),
		Confirmed:    t.confirmed.Load(),
		DeliveredAck: t.deliveredAck.Load(), DeliveredNoAck: t.deliveredNoAck.Load(),
		GetAck: t.getAck.Load(), GetNoAck: t.getNoAck.Load(), GetEmpty: t.getEmpty.Load(),
		Redelivered: t.redelivered.Load(), Acked: t.acked.Load(),
	}
}

// QueueStats are one queue's message counters since it was declared (or
// since the broker started, for a recovered queue).
type QueueStats struct {
	// Published counts messages appended to the queue (dead letters
	// included).
	Published uint64
	// DeliveredAck, DeliveredNoAck, GetAck and GetNoAck count messages
	// handed to clients, as in Totals.
	DeliveredAck, DeliveredNoAck, GetAck, GetNoAck uint64
	// Redelivered counts deliveries flagged redelivered; Acked the messages
	// acknowledged.
	Redelivered, Acked uint64
}

type queueCounters struct {
	published                    atomic.Uint64
	deliveredAck, deliveredNoAck atomic.Uint64
	getAck, getNoAck             atomic.Uint64
	redelivered, acked           atomic.Uint64
}

func (c *queueCounters) snapshot() QueueStats {
	return QueueStats{
		Published:    c.published.Load(),
		DeliveredAck: c.deliveredAck.Load(), DeliveredNoAck: c.deliveredNoAck.Load(),
		GetAck: c.getAck.Load(), GetNoAck: c.getNoAck.Load(),
		Redelivered: c.redelivered.Load(), Acked: c.acked.Load(),
	}
}

// roundCounts gathers one delivery round's counts under queue.mu; flushed
// into the atomics once per round.
type roundCounts struct {
	ack, noAck, redelivered uint64
}

// flushRoundLocked adds the round's counts to the queue's and the node's
// counters. Called with q.mu held.
func (q *queue) flushRoundLocked() {
	r := &q.round
	if r.ack|r.noAck|r.redelivered == 0 {
		return
	}
	t := &q.vh.s.totals
	if r.ack > 0 {
		q.stats.deliveredAck.Add(r.ack)
		t.deliveredAck.Add(r.ack)
	}
	if r.noAck > 0 {
		q.stats.deliveredNoAck.Add(r.noAck)
		t.deliveredNoAck.Add(r.noAck)
	}
	if r.redelivered > 0 {
		q.stats.redelivered.Add(r.redelivered)
		t.redelivered.Add(r.redelivered)
	}
	*r = roundCounts{}
}
