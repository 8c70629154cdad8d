package broker

import (
	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/store"
)

// Quorum queues on a single node (x-queue-type: quorum) are durable queues
// whose messages are all kept on disk whatever their delivery mode, with
// RabbitMQ 4.x's poison-message handling: the store counts, per message,
// the returns to the queue (x-acquired-count) and the failed deliveries
// among them (x-delivery-count: basic.reject, or a channel or connection
// closed while holding the message; not basic.nack, a recover or the
// consumer timeout), and a message whose failed count passes
// x-delivery-limit (default 20, -1 for none) is dead-lettered with reason
// delivery_limit instead of requeued. Redeliveries carry both headers. The
// counts survive a restart (the store persists them), as RabbitMQ's do.

// reasonDeliveryLimit is the x-death reason of a poison message.
const reasonDeliveryLimit = "delivery_limit"

// countHeadersLocked returns the properties to deliver m with: for a
// quorum queue message returned before, its x-acquired-count and
// x-delivery-count headers are added (in q.propScratch).
func (q *queue) countHeadersLocked(m *store.Message) []byte {
	if q.kind != kindQuorum || m.Acquired == 0 {
		return m.Record.Props
	}
	raw := m.Record.Props
	if amqpwire.HasHeader(raw, "x-acquired-count") || amqpwire.HasHeader(raw, "x-delivery-count") {
		set := map[string]any{"x-acquired-count": int64(m.Acquired)}
		if m.Failed > 0 {
			set["x-delivery-count"] = int64(m.Failed)
		}
		q.propScratch = replaceHeaders(q.propScratch[:0], raw, set)
		return q.propScratch
	}
	h := amqpwire.AppendLongEntry(q.hdrScratch[:0], "x-acquired-count", int64(m.Acquired))
	if m.Failed > 0 {
		h = amqpwire.AppendLongEntry(h, "x-delivery-count", int64(m.Failed))
	}
	q.hdrScratch = h
	q.propScratch, _ = amqpwire.AppendWithHeaders(q.propScratch[:0], raw, h)
	return q.propScratch
}
