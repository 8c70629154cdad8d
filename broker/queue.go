package broker

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// deliverBatch is how many messages a queue takes from its store per round.
const deliverBatch = 128

// queue is an AMQP queue: its store, consumers and delivery loop. Ready
// messages live in the store (on disk); the queue holds only consumers and
// the state of the current delivery round.
type queue struct {
	vh         *vhost
	name       string
	id         string
	durable    bool
	exclusive  bool
	autoDelete bool
	args       amqpwire.Table
	owner      *conn // exclusive owner

	kind    queueKind
	maxPrio int // x-max-priority, -1 for none

	// Effective settings (qconfig.go), from the arguments and the policies
	// that apply; they change under mu when policies do.
	dlx, dlrk       string // dead-letter exchange and routing key
	hasDLX, hasDLRK bool
	ttl             int64 // message TTL in ms, -1 for none
	maxLen          int64 // max length, -1 for none
	maxBytes        int64 // max length in body bytes, -1 for none
	overflow        overflowMode
	expires         int64 // queue expiry in ms, -1 for none
	sac             bool  // x-single-active-consumer
	perMsgTTL       bool  // a message with an expiration property was seen
	deliveryLimit   int64 // quorum queues: -1 for none
	retention       store.Retention
	policy          *policy // the policy that applies, nil for none
	opPolicy        *policy // the operator policy that applies

	mu          sync.Mutex
	sq          msgStore
	st          *store.Stream // streams: the log sq wraps
	consumers   []*consumer
	rr          int
	deleted     bool
	hadConsumer bool
	deliver     amqpwire.BasicDeliver
	delivering  bool
	deadQ       []segment.Record // dead letters to republish once unlocked
	offerFn     func(*store.Message) store.Verdict
	stopped     bool     // the last offer found no consumer with credit
	autoAcks    []uint64 // no-ack deliveries of the current round
	now         int64    // unix ms of the current round, for TTL
	expiryTimer *time.Timer
	expiryArmed bool
	idleTimer   *time.Timer
	appendErrAt time.Time   // last append failure logged
	appendErrs  int         // messages refused since
	round       roundCounts // the current delivery round's counts
	stats       queueCounters
	// Scratch buffers for deliveries whose properties get headers added
	// (x-stream-offset, x-delivery-count), reused under mu.
	hdrScratch, propScratch []byte
}

// unlock releases q.mu and republishes the dead letters gathered under it.
func (q *queue) unlock() {
	dead := q.takeDeadLocked()
	q.mu.Unlock()
	q.vh.republish(dead)
}

// consumer is one basic.consume subscription.
type consumer struct {
	tag       string
	ch        *channel
	q         *queue
	noAck     bool
	exclusive bool
	prefetch  int32 // 0 = unlimited
	priority  int32
	unacked   atomic.Int32
	args      amqpwire.Table
	// offset is a stream consumer's next sequence to read (under q.mu);
	// start is where it began, resolved when the queue accepts it.
	offset uint64
	start  offsetSpec
}

// credit is how many more messages c may take now.
func (c *consumer) credit() int {
	if c.noAck {
		return deliverBatch
	}
	n := deliverBatch
	if c.prefetch > 0 {
		n = int(c.prefetch - c.unacked.Load())
	}
	if g := c.ch.globalPrefetch.Load(); g > 0 {
		if m := int(g - c.ch.unackedN.Load()); m < n {
			n = m
		}
	}
	conn := c.ch.c
	if m := conn.s.cfg.MaxUnacked - conn.unacked.Load(); m < int64(n) {
		// The connection's bound on unacked deliveries, whatever the
		// prefetch (a consumer with prefetch 0 that never acks).
		n = int(m)
		if n <= 0 {
			conn.unackedCapped.Store(true)
		}
	}
	if n < 0 {
		n = 0
	}
	return n
}

// publish appends a batch of records and delivers what consumers can take.
// onDurable (nil when nobody waits) runs once the batch is durable. It
// returns the indexes of the records the queue refused (x-overflow
// reject-publish), whose publishers get basic.nack.
func (q *queue) publish(recs []segment.Record, onDurable func(error)) []int {
	dead, rejected := q.append(recs, onDurable)
	q.vh.republish(dead)
	return rejected
}

// append is publish without routing the dead letters it causes (messages
// dropped by max-length): it returns them instead, so that republish can
// route chains of dead letters in a loop rather than by recursion.
func (q *queue) append(recs []segment.Record, onDurable func(error)) (dead []segment.Record, rejected []int) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		if onDurable != nil {
			onDurable(nil)
		}
		return nil, nil
	}
	if onDurable == nil {
		onDurable = noopDurable
	}
	if q.kind != kindClassic {
		// Quorum queues and streams keep every message, whatever its
		// delivery mode.
		for i := range recs {
			recs[i].Flags |= segment.FlagPersistent
		}
	}
	if q.overflow != overflowDropHead && (q.maxLen >= 0 || q.maxBytes >= 0) {
		recs, rejected = q.rejectOverflowLocked(recs)
		if len(recs) == 0 {
			dead = q.takeDeadLocked()
			q.mu.Unlock()
			onDurable(nil)
			return dead, rejected
		}
	}
	if !q.perMsgTTL {
		for i := range recs {
			if p := recs[i].Props; len(p) >= 2 && binary.BigEndian.Uint16(p)&amqpwire.FlagExpiration != 0 {
				q.perMsgTTL = true
				break
			}
		}
	}
	if _, err := q.sq.Append(recs, onDurable); err != nil {
		// onDurable has nacked the batch; log once per queue and interval
		// (a full disk fails every publish).
		q.logAppendErrLocked(err, len(recs))
	} else {
		q.stats.published.Add(uint64(len(recs)))
	}
	if q.kind == kindStream {
		if q.st.TakeRolled() {
			q.applyRetentionLocked(time.Now())
		}
		q.deliverStreamLocked()
		q.mu.Unlock()
		return nil, rejected
	}
	q.deliverLocked() // waiting consumers first, then trim, as RabbitMQ
	q.enforceMaxLenLocked()
	if q.mayExpire() && !q.expiryArmed {
		q.expireHeadLocked()
	}
	dead = q.takeDeadLocked()
	q.mu.Unlock()
	return dead, rejected
}

func noopDurable(error) {}

// logAppendErrLocked logs a failed append: the first one at once, then a
// summary at most every 10 s, so a full disk does not flood the log.
func (q *queue) logAppendErrLocked(err error, n int) {
	q.appendErrs += n
	if now := time.Now(); now.Sub(q.appendErrAt) >= 10*time.Second {
		q.vh.s.log.Error().Err(err).Str("vhost", q.vh.name).Str("queue", q.name).Int("messages", q.appendErrs).
			Msg("append failed; publishes nacked")
		q.appendErrAt, q.appendErrs = now, 0
	}
}

// kick runs a delivery round (after credit was freed or the writer caught up).
func (q *queue) kick() {
	q.mu.Lock()
	q.deliverLocked()
	q.unlock()
}

// settle acks, discards and requeues store sequences, then delivers again.
// Discarded messages go to the dead-letter exchange if the queue has one.
// fails are requeues after a failed delivery (basic.reject, a consumer
// gone): a quorum queue counts them against its delivery limit.
func (q *queue) settle(acks, discards, requeues, fails []uint64) {
	var dead []segment.Record
	q.mu.Lock()
	if q.deleted {
		q.unlock()
		return
	}
	if q.kind == kindStream {
		// Acks of stream deliveries only give credit back.
		if n := len(acks); n > 0 {
			q.stats.acked.Add(uint64(n))
			q.vh.s.totals.acked.Add(uint64(n))
		}
		q.deliverStreamLocked()
		q.mu.Unlock()
		return
	}
	if len(acks) > 0 {
		q.sq.AckMany(acks)
		q.stats.acked.Add(uint64(len(acks)))
		q.vh.s.totals.acked.Add(uint64(len(acks)))
	}
	if len(discards) > 0 {
		if q.hasDLX {
			dead = q.deadLetterLocked(discards, reasonRejected)
		}
		q.sq.AckMany(discards)
	}
	if q.kind == kindQuorum {
		for i, seqs := range [2][]uint64{requeues, fails} {
			if len(seqs) == 0 {
				continue
			}
			// Past the delivery limit: dead-lettered (or dropped), as
			// RabbitMQ's quorum queues do with reason delivery_limit.
			if over := q.sq.Return(seqs, i == 1, q.deliveryLimit); len(over) > 0 {
				if q.hasDLX {
					dead = append(dead, q.deadLetterLocked(over, reasonDeliveryLimit)...)
				}
				q.sq.AckMany(over)
			}
		}
	} else if len(requeues)+len(fails) > 0 {
		q.sq.Requeue(append(requeues, fails...))
	}
	q.deliverLocked()
	q.deadQ = append(q.deadQ, dead...)
	q.unlock()
}

// deliverLocked hands ready messages to consumers with credit, round-robin
// among the highest-priority consumers that can take one.
func (q *queue) deliverLocked() {
	if q.kind == kindStream {
		q.deliverStreamLocked()
		return
	}
	if q.delivering || len(q.consumers) == 0 || q.deleted {
		return
	}
	q.delivering = true
	defer func() {
		q.delivering = false
		q.flushRoundLocked()
	}()
	if q.offerFn == nil {
		q.offerFn = q.offer
	}
	q.now = time.Now().UnixMilli() // for TTL and the deliveries' age
	for ready := q.sq.Ready(); ready > 0; {
		q.stopped = false
		q.sq.Deliver(deliverBatch, q.offerFn)
		if len(q.autoAcks) > 0 {
			q.sq.AckMany(q.autoAcks)
			q.autoAcks = q.autoAcks[:0]
		}
		if q.stopped {
			return
		}
		next := q.sq.Ready()
		if next >= ready {
			// Nothing moved although consumers had credit: the store could
			// not read the head (it logged why). The next publish, ack or
			// consumer change tries again.
			return
		}
		ready = next
	}
}

// offer decides for one ready message: dropped when expired, sent to the
// next consumer with credit, or left ready when no consumer can take it.
// It runs inside store.Queue.Deliver, with the record aliasing the log.
func (q *queue) offer(m *store.Message) store.Verdict {
	if q.mayExpire() {
		if exp, ok := q.messageExpiry(&m.Record); ok && q.now > exp {
			q.deadRecordLocked(&m.Record, reasonExpired)
			return store.Drop
		}
	}
	c := q.pickLocked()
	if c == nil {
		q.stopped = true
		return store.Stop
	}
	q.sendLocked(c, m)
	if c.noAck {
		q.autoAcks = append(q.autoAcks, m.Seq)
		q.round.noAck++
	} else {
		q.round.ack++
	}
	if m.Redelivered {
		q.round.redelivered++
	}
	return store.Take
}

// pickLocked chooses the next consumer with credit: highest priority first,
// round-robin within a priority.
func (q *queue) pickLocked() *consumer {
	n := len(q.consumers)
	if q.sac && n > 1 {
		n = 1 // single active consumer: the first one subscribed
	}
	var best *consumer
	bestIdx := -1
	for i := 0; i < n; i++ {
		idx := (q.rr + i) % n
		c := q.consumers[idx]
		if c.credit() <= 0 || c.ch.c.stalled.Load() {
			continue
		}
		if best == nil || c.priority > best.priority {
			best, bestIdx = c, idx
		}
	}
	if best != nil {
		q.rr = bestIdx + 1
	}
	return best
}

// sendLocked encodes one delivery into the consumer's connection.
func (q *queue) sendLocked(c *consumer, m *store.Message) {
	ch := c.ch
	conn := ch.c
	ch.umu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	if !c.noAck {
		ch.pushUnackedLocked(delivery{tag: tag, q: q, seq: m.Seq, cons: c, at: q.now})
		c.unacked.Add(1)
		ch.unackedN.Add(1)
		conn.unacked.Add(1)
	}
	d := &q.deliver
	d.ConsumerTag = c.tag
	d.DeliveryTag = tag
	d.Redelivered = m.Redelivered
	d.Exchange = m.Record.Exchange
	d.RoutingKey = m.Record.RoutingKey
	props := q.countHeadersLocked(m)
	conn.wmu.Lock()
	wake := false
	if !conn.wclosed {
		// Only the append that finds the buffer empty wakes the writer:
		// a non-empty buffer already has a wake-up pending.
		wake = len(conn.out) == 0
		conn.out = amqpwire.AppendMethodFrame(conn.out, ch.id, d)
		body := m.Record.Body
		if m.Record.Stable && len(body) >= refBody {
			// A large body the log never reuses: the writer sends it from
			// there (writev), not copied.
			conn.out = amqpwire.AppendContentFramesRef(conn.out, ch.id, amqpwire.ClassBasic, uint64(len(body)), props, body, conn.frameMax, conn.refFn)
		} else {
			conn.out = amqpwire.AppendContentFrames(conn.out, ch.id, amqpwire.ClassBasic, uint64(len(body)), props, body, conn.frameMax)
		}
		conn.noteCongestionLocked(true)
	}
	conn.wmu.Unlock()
	ch.umu.Unlock()
	// The reused method struct must not keep the record's strings: they
	// view the log's chunk buffer, which would stay alive with them.
	d.Exchange, d.RoutingKey = "", ""
	if wake {
		conn.signal()
	}
}

// get serves basic.get: one message or nil.
func (q *queue) get(ch *channel, noAck bool) (*amqpwire.BasicGetOk, *store.Message) {
	q.mu.Lock()
	defer q.unlock()
	if q.deleted {
		return nil, nil
	}
	q.touchLocked()
	q.now = time.Now().UnixMilli()
	var m store.Message
	taken := q.sq.Deliver(1, func(msg *store.Message) store.Verdict {
		if q.mayExpire() {
			if exp, ok := q.messageExpiry(&msg.Record); ok && q.now > exp {
				q.deadRecordLocked(&msg.Record, reasonExpired)
				return store.Drop
			}
		}
		// Copy what outlives the call: the record aliases the log.
		m = *msg
		m.Record.Exchange = strings.Clone(msg.Record.Exchange)
		m.Record.RoutingKey = strings.Clone(msg.Record.RoutingKey)
		m.Record.Props = slices.Clone(q.countHeadersLocked(msg))
		m.Record.Body = slices.Clone(msg.Record.Body)
		return store.Take
	})
	t := &q.vh.s.totals
	if taken == 0 {
		t.getEmpty.Add(1)
		return nil, nil
	}
	if noAck {
		q.stats.getNoAck.Add(1)
		t.getNoAck.Add(1)
	} else {
		q.stats.getAck.Add(1)
		t.getAck.Add(1)
	}
	if m.Redelivered {
		q.stats.redelivered.Add(1)
		t.redelivered.Add(1)
	}
	ch.umu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	if !noAck {
		ch.pushUnackedLocked(delivery{tag: tag, q: q, seq: m.Seq, at: q.now})
		ch.unackedN.Add(1)
		ch.c.unacked.Add(1)
	}
	ch.umu.Unlock()
	if noAck {
		q.sq.Ack(m.Seq)
	}
	return &amqpwire.BasicGetOk{DeliveryTag: tag, Redelivered: m.Redelivered, Exchange: m.Record.Exchange,
		RoutingKey: m.Record.RoutingKey, MessageCount: uint32(q.sq.Ready())}, &m
}

// addConsumer subscribes c; it fails when the queue is in exclusive use.
// accepted, if set, runs under the queue's lock once c is accepted and
// before its first delivery (it sends consume-ok).
func (q *queue) addConsumer(c *consumer, accepted func()) (ok bool, exclusiveUse bool) {
	q.mu.Lock()
	defer q.unlock()
	if q.deleted {
		return false, false
	}
	if len(q.consumers) > 0 && (c.exclusive || q.consumers[0].exclusive) {
		return false, true
	}
	if accepted != nil {
		accepted()
	}
	if q.kind == kindStream {
		c.offset = c.start.resolveLocked(q.st)
	}
	q.consumers = append(q.consumers, c)
	q.hadConsumer = true
	q.touchLocked()
	q.deliverLocked()
	return true, false
}

// removeConsumer unsubscribes c. An auto-delete queue goes with its last
// consumer.
func (q *queue) removeConsumer(c *consumer, mayAutoDelete bool) {
	q.mu.Lock()
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			break
		}
	}
	auto := mayAutoDelete && q.autoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	q.touchLocked()
	q.deliverLocked() // with single active consumer, the next one takes over
	q.unlock()
	if auto {
		q.vh.deleteQueueLogged(q, "auto-delete: last consumer gone")
	}
}

// counts returns ready messages and consumers.
func (q *queue) counts() (uint32, uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return 0, 0
	}
	if q.kind == kindStream {
		return uint32(q.sq.Ready()), 0 // RabbitMQ reports no consumers for a stream
	}
	return uint32(q.sq.Ready()), uint32(len(q.consumers))
}
