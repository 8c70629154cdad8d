package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// Message is a message handed out by NextReady.
type Message struct {
	// Seq is the message's sequence in its queue's log: the handle for Ack
	// and Requeue.
	Seq uint64
	// Redelivered is set for a requeued message, and after a restart for a
	// message that was delivered before it.
	Redelivered bool
	// Record is the message: a copy owned by the caller from NextReady;
	// from Deliver, a view of the log's buffers valid during the callback.
	Record segment.Record
	// Acquired and Failed are the message's delivery counts, for a queue
	// with EnableCounts: how many times it was returned to the queue, and
	// how many of those returns were failed deliveries (see Return).
	Acquired, Failed uint32
}

// Queue is the message store of one AMQP queue: a segment log plus the
// in-memory delivery state (ready cursor, requeued set, ack state). Ready
// messages stay on disk; RAM holds only the requeued set and the acked
// ranges. Its methods are safe for concurrent use.
type Queue struct {
	s       *Store
	id      string
	durable bool
	log     *segment.Log
	def     index.Queue // as given to OpenQueue (zero until claimed)
	claimed bool        // opened by OpenQueue since Open; guarded by Store.mu

	mu sync.Mutex
	// next is one past the last appended sequence; cursor is the first
	// sequence never handed out since open (every message in
	// [cursor, next) not acked is ready).
	next, cursor uint64
	acks         ackSet
	// requeued holds sequences below cursor given back by Requeue, sorted.
	requeued []uint64
	ready    int64
	unacked  int64
	// recoveredNext bounds the records written before the last restart:
	// the non-persistent ones among them are dropped when reached.
	recoveredNext uint64
	// redeliverBelow bounds the sequences delivered before the restart.
	redeliverBelow uint64
	// openGaps are the ranges found lost by Open: not counted as ready,
	// so dropping them when reached does not count either.
	openGaps []index.Range
	// lost and dropped are what recovery found lost, and the
	// non-persistent messages it does not count.
	lost, dropped uint64
	// committedW is the highest watermark committed to the index: segments
	// are deleted only below it, so a segment missing at recovery is a loss.
	committedW uint64
	dirty      bool
	deleted    bool
	closed     bool
	reclaimedW uint64
	// bytes keeps the message body bytes (bytes.go); committedNext is the
	// NextSeq of the last log state committed, so that a queue that only
	// receives appends still commits its bytes every bytesCommitEvery
	// records.
	bytes         byteAccount
	committedNext uint64
	// counts holds delivery counts, for queues with EnableCounts (counts.go).
	counts *deliveryCounts
	// lease bounds the sequences Deliver may hand out: the index holds a
	// Delivered at least this high, so a crash cannot lose the fact that
	// they were delivered (index/lease.go). leaseErrAt rate-limits the log
	// of failures to extend it.
	lease      uint64
	leaseErrAt time.Time
	// partOf is, for a log repaired from its segments that belongs to
	// another queue (a priority level), that queue's ID.
	partOf string
}

// bytesCommitEvery bounds the records a durable queue appends without
// committing its log state, and so the records whose sizes a crash leaves
// unknown (read once, lazily, after the restart).
const bytesCommitEvery = 16384

// ID returns the queue's ID.
func (q *Queue) ID() string { return q.id }

// Durable reports whether the queue survives a restart.
func (q *Queue) Durable() bool { return q.durable }

func (q *Queue) errLocked() error {
	switch {
	case q.deleted:
		return fmt.Errorf("%w: %s", ErrDeleted, q.id)
	case q.closed:
		return fmt.Errorf("%w: queue %s", ErrClosed, q.id)
	}
	return nil
}

// Append appends a batch of records and returns the sequence of the first.
// onDurable (may be nil) is called exactly once: for a durable queue and a
// batch holding a persistent record (segment.FlagPersistent), on the Syncer
// goroutine after the fdatasync round that covers the batch; otherwise at
// once, before Append returns. Non-persistent records of a durable queue
// are written without waiting for a sync and do not survive a restart. If
// the append fails, the error is returned and also passed to onDurable.
func (q *Queue) Append(recs []segment.Record, onDurable func(error)) (uint64, error) {
	q.mu.Lock()
	err := q.errLocked()
	persistent := false
	if q.durable {
		for i := range recs {
			if recs[i].Flags&segment.FlagPersistent != 0 {
				persistent = true
				break
			}
		}
	}
	var first uint64
	if err == nil {
		switch {
		case persistent:
			first, err = q.s.syncer.AppendDurable(q.log, recs, onDurable)
		case q.durable:
			first, err = q.log.Append(recs...)
			if err == nil {
				q.s.syncer.Add(q.log, nil) // seal and write soon
			}
		default:
			// A non-durable queue keeps its records in memory until a
			// chunk's worth is pending (the log then asks the Syncer to
			// write it) or they are acked.
			first, err = q.log.Append(recs...)
		}
	}
	if err == nil {
		q.next = first + uint64(len(recs))
		q.ready += int64(len(recs))
		q.bytes.appended(first, recs, q.durable)
		if q.durable {
			if len(q.bytes.tail) > 4096 {
				q.bytes.trim(q.log.DurableNext())
			}
			if q.next-q.committedNext > bytesCommitEvery {
				q.s.markDirtyLocked(q)
			}
		}
	}
	q.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("store: append to %s: %w", q.id, err)
		if onDurable != nil {
			onDurable(err)
		}
		return 0, err
	}
	if !persistent && onDurable != nil {
		onDurable(nil)
	}
	return first, nil
}

// Verdict is what a Deliver callback decides for one ready message.
type Verdict uint8

const (
	// Take hands the message out: it becomes unacked.
	Take Verdict = iota
	// Drop removes the message as if acked (expired, dead-lettered, ...).
	Drop
	// Stop leaves the message ready and ends the call.
	Stop
)

// Deliver offers up to max ready messages to fn, in delivery order:
// requeued messages first, in sequence order, flagged redelivered; then
// messages from the ready cursor, skipping acked ones. fn sees the message
// without a copy: its Record aliases the log's buffers and is valid only
// during the call, which runs under the queue's lock but not the log's
// (segment.Log.ViewPinned), so the syncer seals and appends go on while fn
// encodes a delivery; fn must not call the queue or the log. It returns
// how many were taken.
// Messages lost to corruption and non-persistent messages written before
// the last restart are dropped (acked) when reached, without calling fn.
func (q *Queue) Deliver(max int, fn func(*Message) Verdict) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil || max <= 0 {
		return 0
	}
	var msg Message
	var verdict Verdict
	fromCursor := false
	size := 0
	view := func(r *segment.Record) error {
		size = len(r.Body)
		if fromCursor && msg.Seq < q.recoveredNext && r.Flags&segment.FlagPersistent == 0 {
			return errTransient
		}
		if q.counts != nil {
			msg.Acquired, msg.Failed = q.counts.get(msg.Seq)
			if msg.Acquired > 0 {
				msg.Redelivered = true
			}
		}
		msg.Record = *r
		verdict = fn(&msg)
		msg.Record = segment.Record{}
		return nil
	}
	changed := false
	taken := 0
	for taken < max && len(q.requeued) > 0 {
		seq := q.requeued[0]
		msg = Message{Seq: seq, Redelivered: true}
		verdict = Take
		size = 0
		if err := q.log.ViewPinned(seq, view); err != nil {
			if !q.dropLocked(seq, err) {
				// Unreadable for now: newer messages must not overtake it.
				if changed {
					q.changedLocked()
				}
				return taken
			}
			verdict = Drop
		}
		if verdict == Stop {
			break
		}
		q.requeued = q.requeued[1:]
		q.ready--
		changed = true
		if verdict == Drop {
			q.acks.add(seq, seq+1)
			q.bytes.dropped(seq, size)
			q.counts.forget(seq)
			continue
		}
		q.unacked++
		q.bytes.taken(seq, size)
		taken++
	}
	if len(q.requeued) == 0 {
		q.requeued = nil
	}
	fromCursor = true
	for taken < max && verdict != Stop && q.cursor < q.next {
		seq := q.acks.ackedFrom(q.cursor)
		if seq >= q.next {
			q.cursor = q.next
			break
		}
		q.cursor = seq
		if q.durable && seq >= q.lease {
			q.extendLeaseLocked(seq)
		}
		msg = Message{Seq: seq, Redelivered: seq < q.redeliverBelow}
		verdict = Take
		counted := true
		size = 0
		if err := q.log.ViewPinned(seq, view); err != nil {
			if !q.dropLocked(seq, err) {
				break
			}
			verdict = Drop
			counted = q.countedLocked(seq, err)
		}
		if verdict == Stop {
			break
		}
		q.cursor = seq + 1
		if counted {
			q.ready--
		}
		changed = true
		if verdict == Drop {
			q.acks.add(seq, seq+1)
			q.bytes.dropped(seq, size)
			q.counts.forget(seq)
			continue
		}
		q.unacked++
		q.bytes.taken(seq, size)
		taken++
	}
	if changed {
		q.bytes.settle(q.ready, q.unacked)
		q.changedLocked()
	}
	return taken
}

// NextReady appends up to max ready messages to dst, each a copy owned by
// the caller, and hands them out (see Deliver for the order).
func (q *Queue) NextReady(dst []Message, max int) []Message {
	q.Deliver(max, func(m *Message) Verdict {
		c := *m
		c.Record.Exchange = strings.Clone(m.Record.Exchange)
		c.Record.RoutingKey = strings.Clone(m.Record.RoutingKey)
		c.Record.Props = slices.Clone(m.Record.Props)
		c.Record.Body = slices.Clone(m.Record.Body)
		dst = append(dst, c)
		return Take
	})
	return dst
}

// errTransient marks a non-persistent record from before a restart.
var errTransient = errors.New("store: transient message from before restart")

// dropLocked reports whether a read error means the message is gone for
// good (and is to be dropped) rather than a failure to retry later.
func (q *Queue) dropLocked(seq uint64, err error) bool {
	switch {
	case errors.Is(err, errTransient):
		return true
	case errors.Is(err, segment.ErrLost), errors.Is(err, segment.ErrNotFound):
		q.s.log.Warn().Err(err).Str("queue", q.id).Uint64("seq", seq).Msg("store: dropping lost message")
		return true
	}
	q.s.log.Error().Err(err).Str("queue", q.id).Uint64("seq", seq).Msg("store: read failed")
	return false
}

// countedLocked reports whether a message dropped with err was counted as
// ready: not if it is a non-persistent one from before the restart, or lost
// in a gap Open already found.
func (q *Queue) countedLocked(seq uint64, err error) bool {
	if errors.Is(err, errTransient) {
		return false
	}
	for _, g := range q.openGaps {
		if g.Lo <= seq && seq < g.Hi {
			return false
		}
	}
	return true
}

// changedLocked schedules the ack state for the next index commit,
// starting a sync round if none is pending for this queue. A non-durable
// queue drops the acked records it still holds only in memory.
func (q *Queue) changedLocked() {
	if !q.durable {
		q.log.Discard(q.acks.watermark)
		return
	}
	if q.s.markDirtyLocked(q) {
		q.s.syncer.Add(q.log, nil)
	}
}

// countReadyLocked counts the messages ready from seq on after a restart:
// persistent, not acked, in a chunk found valid. The chunk headers say how
// many records of a chunk are non-persistent; only chunks mixing both kinds
// (or written before the headers said so) are read to count exactly.
func (q *Queue) countReadyLocked(from uint64) int64 {
	var n int64
	type span struct{ lo, hi uint64 }
	var mixed []span
	q.log.Chunks(from, func(c segment.ChunkInfo) {
		lo, hi := max(c.First, from), c.First+uint64(c.Count)
		switch {
		case c.Known && c.Transient == c.Count:
		case c.Known && c.Transient == 0:
			n += int64(hi-lo) - int64(q.acks.countIn(lo, hi))
		default:
			mixed = append(mixed, span{lo, hi})
		}
	})
	for _, sp := range mixed {
		for seq := sp.lo; seq < sp.hi; seq++ {
			if q.acks.contains(seq) {
				continue
			}
			q.log.View(seq, func(r *segment.Record) error {
				if r.Flags&segment.FlagPersistent != 0 {
					n++
				}
				return nil
			})
		}
	}
	return n
}

// transientIn counts the non-persistent records in [lo, hi) that recovery
// drops, from the chunk headers (chunks without the count are not counted).
func (q *Queue) transientIn(lo, hi uint64) uint64 {
	var n uint64
	q.log.Chunks(lo, func(c segment.ChunkInfo) {
		if c.Known && c.First < hi {
			n += uint64(c.Transient)
		}
	})
	return n
}

// releaseLocked gives back memory an idle queue does not need.
func (q *Queue) releaseLocked() {
	if len(q.requeued) == 0 {
		q.requeued = nil
	}
	if len(q.acks.ranges) == 0 {
		q.acks.ranges = nil
	}
}

// outstandingLocked reports whether seq was handed out and is neither acked
// nor requeued.
func (q *Queue) outstandingLocked(seq uint64) bool {
	if seq >= q.cursor || q.acks.contains(seq) {
		return false
	}
	_, found := slices.BinarySearch(q.requeued, seq)
	return !found
}

// Ack acknowledges a delivered message. It returns false, changing nothing,
// if seq is not an unacked delivery (already acked, requeued, or never
// delivered). Acks may come in any order.
func (q *Queue) Ack(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil || !q.outstandingLocked(seq) {
		return false
	}
	q.acks.add(seq, seq+1)
	q.unacked--
	q.bytes.acked(seq)
	q.counts.forget(seq)
	q.bytes.settle(q.ready, q.unacked)
	q.changedLocked()
	q.log.Skip(seq)
	return true
}

// AckMany acknowledges several delivered messages under one lock and
// returns how many were unacked deliveries (see Ack). A large record
// acknowledged before the log wrote it is not written (segment.Log.Skip).
func (q *Queue) AckMany(seqs []uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil {
		return 0
	}
	n := 0
	for _, seq := range seqs {
		if q.outstandingLocked(seq) {
			q.acks.add(seq, seq+1)
			q.bytes.acked(seq)
			q.counts.forget(seq)
			n++
		}
	}
	if n > 0 {
		q.unacked -= int64(n)
		q.bytes.settle(q.ready, q.unacked)
		q.changedLocked()
		q.log.Skip(seqs...)
	}
	return n
}

// Requeue gives unacked deliveries back: they become ready and are the
// first NextReady returns, flagged redelivered. It returns how many of
// seqs were unacked deliveries; the others are ignored.
func (q *Queue) Requeue(seqs []uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil {
		return 0
	}
	var add []uint64
	for _, seq := range seqs {
		if q.outstandingLocked(seq) {
			add = append(add, seq)
		}
	}
	if len(add) == 0 {
		return 0
	}
	slices.Sort(add)
	add = slices.Compact(add)
	q.requeueLocked(add)
	return len(add)
}

// requeueLocked makes the outstanding deliveries add (sorted, unique)
// ready again.
func (q *Queue) requeueLocked(add []uint64) {
	for _, seq := range add {
		q.bytes.requeued(seq)
	}
	merged := make([]uint64, 0, len(q.requeued)+len(add))
	i, j := 0, 0
	for i < len(q.requeued) || j < len(add) {
		if j == len(add) || (i < len(q.requeued) && q.requeued[i] < add[j]) {
			merged = append(merged, q.requeued[i])
			i++
		} else {
			merged = append(merged, add[j])
			j++
		}
	}
	q.requeued = merged
	q.unacked -= int64(len(add))
	q.ready += int64(len(add))
	q.bytes.settle(q.ready, q.unacked)
}

// Purge acks every ready message (requeued ones included) and returns how
// many there were; unacked deliveries stay unacked.
func (q *Queue) Purge() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil {
		return 0
	}
	n := int(q.ready)
	q.recoveredNext = 0 // nothing from before the restart is left ready
	for _, seq := range q.requeued {
		q.acks.add(seq, seq+1)
		q.bytes.gone(seq)
		q.counts.forget(seq)
	}
	for seq := max(q.cursor, q.bytes.tailBase); seq < q.next; seq++ {
		q.bytes.gone(seq)
	}
	q.requeued = nil
	q.acks.add(q.cursor, q.next)
	q.cursor = q.next
	q.ready = 0
	q.bytes.ready = 0
	q.bytes.unknownFrom = 0 // every message of unknown size is gone or unacked
	if n > 0 {
		q.changedLocked()
	}
	return n
}

// ReadyBytes returns the body bytes of the ready messages (what
// x-max-length-bytes limits).
func (q *Queue) ReadyBytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resolveBytesLocked()
	return q.bytes.ready
}

// UnackedBytes returns the body bytes of the delivered, unacked messages.
func (q *Queue) UnackedBytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes.unacked
}

// resolveBytesLocked reads the sizes of the records a crash left without
// one (see bytes.go): at most bytesCommitEvery records and one round.
func (q *Queue) resolveBytesLocked() {
	from := q.bytes.unknownFrom
	if from == 0 {
		return
	}
	q.bytes.unknownFrom = 0
	var sum int64
	for seq := from; seq < q.recoveredNext; seq++ {
		if q.acks.contains(seq) {
			continue
		}
		q.log.View(seq, func(r *segment.Record) error {
			sum += int64(len(r.Body))
			return nil
		})
	}
	q.bytes.ready += sum
	q.bytes.settle(q.ready, q.unacked)
}

// Ready returns the number of messages ready for delivery.
func (q *Queue) Ready() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.ready)
}

// Unacked returns the number of delivered, unacked messages.
func (q *Queue) Unacked() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.unacked)
}

// stateForCommit returns the log state to persist, clipped to the records
// the log holds durably (so the index never claims more than the segments),
// and clears the dirty mark, setting it again when something was clipped.
func (q *Queue) stateForCommit() (index.LogState, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dirty = false
	if q.deleted || !q.durable {
		return index.LogState{}, false
	}
	durable := q.log.DurableNext()
	w, ranges := q.acks.snapshot(durable)
	q.resolveBytesLocked()
	st := index.LogState{
		Segments:  q.log.Segments(),
		NextSeq:   durable,
		Watermark: w,
		Acked:     ranges,
		Delivered: q.deliveredForCommitLocked(durable),
		Bytes:     q.bytes.committed(durable),
	}
	q.committedNext = durable
	clipped := q.acks.watermark > durable || q.cursor > durable ||
		(len(q.acks.ranges) > 0 && q.acks.ranges[len(q.acks.ranges)-1].Hi > durable)
	if clipped && !q.closed {
		q.s.markDirtyLocked(q) // the round making them durable commits again
	}
	return st, true
}

// leaseAhead is how far past the ready cursor a commit pushes the delivery
// lease: the deliveries a queue may make between two commits without a
// synced write of its own, and the most messages a crash can flag
// redelivered without their having been delivered.
const leaseAhead = 4096

// deliveredForCommitLocked is the Delivered to commit: on a clean close the
// exact bound (clipped to the durable records, which are all a restart
// finds), otherwise a lease ahead of the cursor that never moves back.
func (q *Queue) deliveredForCommitLocked(durable uint64) uint64 {
	if q.closed {
		return min(max(q.cursor, q.redeliverBelow), durable)
	}
	return max(q.lease, q.redeliverBelow, q.cursor+leaseAhead)
}

// extendLeaseLocked writes, synced, a delivery lease past seq before seq is
// delivered: the commits did not keep up with the deliveries. When the
// index cannot be written, delivery goes on without the lease (a crash
// may then redeliver without the flag) and the failure is logged.
func (q *Queue) extendLeaseLocked(seq uint64) {
	want := seq + leaseAhead
	if err := q.s.db.SetDeliveredLease(q.id, want); err != nil {
		if now := time.Now(); now.Sub(q.leaseErrAt) >= 10*time.Second {
			q.leaseErrAt = now
			q.s.log.Error().Err(err).Str("queue", q.id).
				Msg("store: cannot record a delivery lease; delivering anyway (after a crash, these deliveries may come back without the redelivered flag)")
		}
	}
	q.lease = want
}

// reclaim deletes the segments below the ack watermark, the active one
// included when everything written is acked. A durable queue deletes only
// below the watermark committed to the index, so that recovery can tell a
// segment deleted on purpose from one lost.
func (q *Queue) reclaim() error {
	q.mu.Lock()
	if q.errLocked() != nil {
		q.mu.Unlock()
		return nil
	}
	w := q.acks.watermark
	if q.durable {
		w = min(w, q.committedW)
	}
	changed := w != q.reclaimedW
	q.reclaimedW = w
	q.mu.Unlock()
	if !changed {
		return nil
	}
	n, err := q.log.RemoveBelow(w)
	if errors.Is(err, segment.ErrClosed) {
		return nil // deleted or closed meanwhile
	}
	if err != nil {
		q.mu.Lock()
		q.reclaimedW = 0 // try again next pass
		q.mu.Unlock()
		return fmt.Errorf("store: reclaim %s: %w", q.id, err)
	}
	if n > 0 {
		q.mu.Lock()
		q.s.markDirtyLocked(q) // the segment list changed
		q.mu.Unlock()
	}
	return nil
}

// Read returns a copy of the record at seq, whatever its delivery state;
// the broker uses it to dead-letter a message it is about to drop.
func (q *Queue) Read(seq uint64) (segment.Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.errLocked(); err != nil {
		return segment.Record{}, err
	}
	return q.log.Read(seq)
}
