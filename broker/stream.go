package broker

import (
	"errors"
	"math"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// Streams over AMQP 0-9-1 (x-queue-type: stream), as RabbitMQ serves them:
// consumers read without removing, each from the offset its x-stream-offset
// argument names (first, last, next, a number, a timestamp, or an interval
// like "1h"); they must set a prefetch, and their acks (nacks and rejects
// alike) only give credit back; every delivery carries its offset in the
// x-stream-offset header. Retention (x-max-length-bytes, x-max-age)
// deletes whole segments. The store's Stream keeps nothing per message in
// RAM, so replaying a backlog of any size takes bounded memory.

// offsetKind is the kind of an x-stream-offset.
type offsetKind uint8

const (
	offsetNext offsetKind = iota
	offsetFirst
	offsetLast
	offsetNumber
	offsetTime // ms since the epoch
)

// offsetSpec is a parsed x-stream-offset.
type offsetSpec struct {
	kind offsetKind
	n    int64
}

// parseStreamOffset reads x-stream-offset as rabbit_stream_queue does: a
// timestamp is in seconds, a string other than first/last/next is an
// interval back from now (x-max-age's syntax), any integer an offset.
func parseStreamOffset(v any, ok bool) (offsetSpec, bool) {
	if !ok {
		return offsetSpec{kind: offsetNext}, true
	}
	switch x := v.(type) {
	case string:
		switch x {
		case "first":
			return offsetSpec{kind: offsetFirst}, true
		case "last":
			return offsetSpec{kind: offsetLast}, true
		case "next":
			return offsetSpec{kind: offsetNext}, true
		}
		d, ok := parseMaxAge(x)
		if !ok {
			return offsetSpec{}, false
		}
		return offsetSpec{kind: offsetTime, n: time.Now().Add(-d).UnixMilli()}, true
	case time.Time:
		return offsetSpec{kind: offsetTime, n: x.Unix() * 1000}, true
	}
	if n, ok := intArg(v); ok {
		return offsetSpec{kind: offsetNumber, n: n}, true
	}
	return offsetSpec{}, false
}

// resolveLocked turns an offset into the sequence to read first (offset =
// sequence - 1), clamped to the stream's range as RabbitMQ clamps it.
func (o offsetSpec) resolveLocked(st *store.Stream) uint64 {
	switch o.kind {
	case offsetFirst:
		return st.First()
	case offsetLast:
		return st.LastChunk()
	case offsetNumber:
		first, next := st.First(), st.Next()
		if o.n < 0 || uint64(o.n) < first-1 {
			return first
		}
		if uint64(o.n) >= next-1 || o.n == math.MaxInt64 {
			return next
		}
		return uint64(o.n) + 1
	case offsetTime:
		return st.SeekTime(o.n)
	}
	return st.Next()
}

// checkStreamConsume makes RabbitMQ's checks on basic.consume from a
// stream: a prefetch is needed, automatic acks and a channel-wide prefetch
// are not supported (540, connection error), and the offset must parse.
func (ch *channel) checkStreamConsume(m *amqpwire.BasicConsume, q *queue) (offsetSpec, error) {
	rs := "queue '" + q.name + "' in vhost '" + q.vh.name + "'"
	switch {
	case ch.prefetch == 0:
		return offsetSpec{}, amqpErr(amqpwire.PreconditionFailed, m, "consumer prefetch count is not set for stream %s", rs)
	case m.NoAck:
		return offsetSpec{}, amqpErr(amqpwire.NotImplemented, m, "automatic acknowledgement not supported by stream %s", rs)
	case ch.globalPrefetch.Load() > 0:
		return offsetSpec{}, amqpErr(amqpwire.NotImplemented, m, "%s does not support global qos", rs)
	}
	v, ok := m.Arguments["x-stream-offset"]
	spec, valid := parseStreamOffset(v, ok)
	if !valid {
		return offsetSpec{}, amqpErr(amqpwire.PreconditionFailed, m, "invalid arg 'x-stream-offset' for %s: {invalid_stream_offset_arg,%s}", rs, erlTypeVal(v))
	}
	return spec, nil
}

// deliverStreamLocked reads on for every consumer with credit, from its
// own offset.
func (q *queue) deliverStreamLocked() {
	if q.delivering || len(q.consumers) == 0 || q.deleted {
		return
	}
	q.delivering = true
	defer func() {
		q.delivering = false
		q.flushRoundLocked()
	}()
	q.now = time.Now().UnixMilli()
	for _, c := range q.consumers {
		credit := c.credit()
		if credit <= 0 || c.ch.c.stalled.Load() {
			continue
		}
		next, err := q.st.Read(c.offset, func(seq uint64, r *segment.Record) bool {
			if credit == 0 || c.ch.c.stalled.Load() {
				return false
			}
			q.sendStreamLocked(c, seq, r)
			credit--
			return true
		})
		c.offset = next
		if err != nil && !errors.Is(err, segment.ErrNotFound) {
			q.vh.s.log.Error().Err(err).Str("queue", q.name).Uint64("offset", next-1).Msg("stream read failed")
		}
	}
}

// sendStreamLocked delivers one stream message with its x-stream-offset
// header.
func (q *queue) sendStreamLocked(c *consumer, seq uint64, r *segment.Record) {
	q.hdrScratch = amqpwire.AppendLongEntry(q.hdrScratch[:0], "x-stream-offset", int64(seq-1))
	var props []byte
	if amqpwire.HasHeader(r.Props, "x-stream-offset") {
		props = replaceHeaders(q.propScratch[:0], r.Props, map[string]any{"x-stream-offset": int64(seq - 1)})
	} else {
		props, _ = amqpwire.AppendWithHeaders(q.propScratch[:0], r.Props, q.hdrScratch)
	}
	q.propScratch = props
	m := store.Message{Seq: seq, Record: *r}
	m.Record.Props = props
	q.sendLocked(c, &m)
	q.round.ack++
}

// replaceHeaders re-encodes raw properties with headers set (the slow path,
// for a message that already carries one of them).
func replaceHeaders(dst, raw []byte, set map[string]any) []byte {
	p, err := amqpwire.DecodeProperties(raw)
	if err != nil {
		return append(dst, raw...)
	}
	if p.Headers == nil {
		p.Headers = amqpwire.Table{}
	}
	for k, v := range set {
		p.Headers[k] = v
	}
	p.Flags |= amqpwire.FlagHeaders
	return p.AppendTo(dst)
}

// applyRetentionLocked applies the stream's retention limits.
func (q *queue) applyRetentionLocked(now time.Time) {
	if q.st == nil || q.deleted || (q.retention.MaxBytes <= 0 && q.retention.MaxAge <= 0) {
		return
	}
	n, err := q.st.Retain(q.retention, now)
	if err != nil {
		q.vh.s.log.Error().Err(err).Str("queue", q.name).Msg("stream retention failed")
	}
	if n > 0 {
		q.vh.s.log.Debug().Str("queue", q.name).Int("messages", n).Msg("stream retention removed segments")
	}
}

// retentionLoop applies every stream's retention periodically (age limits
// pass with time; size limits are also applied when a segment rolls).
func (s *Server) retentionLoop() {
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopAlarms:
			return
		case now := <-t.C:
			s.mu.Lock()
			vhs := make([]*vhost, 0, len(s.vhosts))
			for _, vh := range s.vhosts {
				vhs = append(vhs, vh)
			}
			s.mu.Unlock()
			for _, vh := range vhs {
				for _, q := range vh.sortedQueues() {
					if q.kind != kindStream {
						continue
					}
					q.mu.Lock()
					q.applyRetentionLocked(now)
					q.mu.Unlock()
				}
			}
		}
	}
}

// streamStore adapts a store.Stream to msgStore for the parts of the
// broker that treat every queue alike: its messages count as ready, and
// nothing is ever delivered, acked or requeued through it.
type streamStore struct{ st *store.Stream }

func (s streamStore) Append(recs []segment.Record, onDurable func(error)) (uint64, error) {
	return s.st.Append(recs, onDurable)
}
func (streamStore) Deliver(int, func(*store.Message) store.Verdict) int { return 0 }
func (s streamStore) Ready() int                                        { return s.st.Len() }
func (s streamStore) ReadyBytes() int64 {
	_, b := s.st.DiskUsage()
	return b
}
func (streamStore) Unacked() int                              { return 0 }
func (streamStore) UnackedBytes() int64                       { return 0 }
func (streamStore) Ack(uint64) bool                           { return false }
func (streamStore) AckMany([]uint64) int                      { return 0 }
func (streamStore) Requeue([]uint64) int                      { return 0 }
func (streamStore) Return([]uint64, bool, int64) []uint64     { return nil }
func (streamStore) Purge() int                                { return 0 }
func (s streamStore) Read(seq uint64) (segment.Record, error) { return s.st.Queue().Read(seq) }
func (s streamStore) Delete() error                           { return s.st.Delete() }
