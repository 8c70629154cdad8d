package store

import (
	"fmt"
	"sync"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// Priority queues. A queue declared with x-max-priority keeps one Queue (one
// log) per priority level in use, named "<id>.p<level>", and delivers from
// the highest non-empty level, FIFO within a level, as RabbitMQ's priority
// queue does with one backing queue per priority. A level holds no state
// until a message of that priority arrives; the backlog of every level stays
// on disk, so RAM does not grow with it.
//
// The sequences a PriorityQueue hands out carry the level in their top byte
// (seq | level<<56), so that acks, requeues and reads find the level without
// a lookup; a level's own sequences stay below 2^56.

const (
	levelShift = 56
	seqMask    = 1<<levelShift - 1
)

// LevelOf returns the priority level a sequence handed out by a
// PriorityQueue belongs to.
func LevelOf(seq uint64) uint8 { return uint8(seq >> levelShift) }

// PriorityQueue is the store of an AMQP priority queue: a Queue per level in
// use. Its methods mirror Queue's and are safe for concurrent use.
type PriorityQueue struct {
	s       *Store
	id      string
	durable bool
	def     index.Queue // recorded as the identity of every level's log
	levelOf func(*segment.Record) uint8

	mu      sync.Mutex // guards levels
	levels  []*Queue   // index: level 0..max; nil until used
	counts  bool       // EnableCounts was called
	deleted bool
}

func levelID(id string, level int) string { return fmt.Sprintf("%s.p%d", id, level) }

// PriorityQueue opens the store of a priority queue with levels 0..max,
// recovering the levels a durable one used before a restart. levelOf gives
// a record's level (at most max). def is the queue's definition (def.ID its
// ID), which every level's log records as its identity; unlike OpenQueue,
// PriorityQueue does not write def to the index (a level's log is created
// by its first message), so the caller persists a new queue's definition.
func (s *Store) PriorityQueue(def index.Queue, max uint8, levelOf func(*segment.Record) uint8) (*PriorityQueue, error) {
	id, durable := def.ID, def.Durable
	if err := checkID(id); err != nil {
		return nil, err
	}
	pq := &PriorityQueue{s: s, id: id, durable: durable, def: def, levelOf: levelOf, levels: make([]*Queue, int(max)+1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	for l := range pq.levels {
		if q, ok := s.queues[levelID(id, l)]; ok {
			if q.durable != durable {
				return nil, fmt.Errorf("%w: queue %s is durable=%v", ErrDurability, q.id, q.durable)
			}
			if !q.claimed {
				q.claimed = true // not a leftover of a deleted queue
				if def.VHost != "" {
					q.log.SetIdentity(encodeIdentity(def))
				}
			}
			pq.levels[l] = q
		}
	}
	return pq, nil
}

// ID returns the priority queue's ID.
func (pq *PriorityQueue) ID() string { return pq.id }

// level returns the Queue of level l, creating it when create is set.
func (pq *PriorityQueue) level(l int, create bool) (*Queue, error) {
	pq.mu.Lock()
	defer pq.mu.Unlock()
	if pq.deleted {
		return nil, fmt.Errorf("%w: %s", ErrDeleted, pq.id)
	}
	if q := pq.levels[l]; q != nil || !create {
		return q, nil
	}
	q, err := pq.s.openLog(levelID(pq.id, l), pq.def, false)
	if err != nil {
		return nil, err
	}
	if pq.counts {
		if err := q.EnableCounts(); err != nil {
			return nil, err
		}
	}
	pq.levels[l] = q
	return q, nil
}

// each calls fn for every level in use, highest first, until it returns
// false.
func (pq *PriorityQueue) each(fn func(l int, q *Queue) bool) {
	pq.mu.Lock()
	ls := pq.levels
	pq.mu.Unlock()
	for l := len(ls) - 1; l >= 0; l-- {
		if q := ls[l]; q != nil && !fn(l, q) {
			return
		}
	}
}

// Append appends records, each to its level's log. onDurable runs once,
// when every level's append reported (see Queue.Append). The sequence it
// returns is that of the first record's level.
func (pq *PriorityQueue) Append(recs []segment.Record, onDurable func(error)) (uint64, error) {
	if len(recs) == 0 {
		if onDurable != nil {
			onDurable(nil)
		}
		return 0, nil
	}
	first := pq.levelOf(&recs[0])
	same := true
	for i := 1; i < len(recs) && same; i++ {
		same = pq.levelOf(&recs[i]) == first
	}
	if same {
		q, err := pq.level(int(first), true)
		if err != nil {
			if onDurable != nil {
				onDurable(err)
			}
			return 0, fmt.Errorf("store: priority queue %s: %w", pq.id, err)
		}
		seq, err := q.Append(recs, onDurable)
		return seq | uint64(first)<<levelShift, err
	}
	groups := make(map[uint8][]segment.Record)
	var order []uint8
	for i := range recs {
		l := pq.levelOf(&recs[i])
		if _, ok := groups[l]; !ok {
			order = append(order, l)
		}
		groups[l] = append(groups[l], recs[i])
	}
	var mu sync.Mutex
	pending := len(order)
	var firstErr error
	done := func(err error) {
		mu.Lock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		pending--
		last := pending == 0
		mu.Unlock()
		if last && onDurable != nil {
			onDurable(firstErr)
		}
	}
	var seq0 uint64
	var retErr error
	for _, l := range order {
		q, err := pq.level(int(l), true)
		if err != nil {
			done(err)
			if retErr == nil {
				retErr = fmt.Errorf("store: priority queue %s: %w", pq.id, err)
			}
			continue
		}
		seq, err := q.Append(groups[l], done)
		if err != nil && retErr == nil {
			retErr = err
		}
		if l == first {
			seq0 = seq | uint64(l)<<levelShift
		}
	}
	return seq0, retErr
}

// Deliver offers up to max ready messages, highest level first (see
// Queue.Deliver for the order within a level). Sequences carry the level.
func (pq *PriorityQueue) Deliver(max int, fn func(*Message) Verdict) int {
	taken := 0
	stopped := false
	pq.each(func(l int, q *Queue) bool {
		if taken >= max {
			return false
		}
		if q.Ready() == 0 {
			return true
		}
		tag := uint64(l) << levelShift
		taken += q.Deliver(max-taken, func(m *Message) Verdict {
			m.Seq |= tag
			v := fn(m)
			m.Seq &= seqMask
			if v == Stop {
				stopped = true
			}
			return v
		})
		return !stopped
	})
	return taken
}

// byLevel splits handed-out sequences by level, stripping the level.
func byLevel(seqs []uint64) map[uint8][]uint64 {
	m := make(map[uint8][]uint64, 1)
	for _, s := range seqs {
		l := LevelOf(s)
		m[l] = append(m[l], s&seqMask)
	}
	return m
}

func (pq *PriorityQueue) get(seq uint64) *Queue {
	l := int(LevelOf(seq))
	pq.mu.Lock()
	defer pq.mu.Unlock()
	if l >= len(pq.levels) {
		return nil
	}
	return pq.levels[l]
}

// Ack acknowledges a delivered message (see Queue.Ack).
func (pq *PriorityQueue) Ack(seq uint64) bool {
	q := pq.get(seq)
	return q != nil && q.Ack(seq&seqMask)
}

// AckMany acknowledges several delivered messages (see Queue.AckMany).
func (pq *PriorityQueue) AckMany(seqs []uint64) int {
	if len(seqs) == 0 {
		return 0
	}
	n := 0
	for l, ss := range byLevel(seqs) {
		if q := pq.get(uint64(l) << levelShift); q != nil {
			n += q.AckMany(ss)
		}
	}
	return n
}

// Requeue gives unacked deliveries back (see Queue.Requeue).
func (pq *PriorityQueue) Requeue(seqs []uint64) int {
	n := 0
	for l, ss := range byLevel(seqs) {
		if q := pq.get(uint64(l) << levelShift); q != nil {
			n += q.Requeue(ss)
		}
	}
	return n
}

// Return gives unacked deliveries back counting the return (see
// Queue.Return); dead sequences carry their level.
func (pq *PriorityQueue) Return(seqs []uint64, failed bool, limit int64) (dead []uint64) {
	for l, ss := range byLevel(seqs) {
		if q := pq.get(uint64(l) << levelShift); q != nil {
			for _, s := range q.Return(ss, failed, limit) {
				dead = append(dead, s|uint64(l)<<levelShift)
			}
		}
	}
	return dead
}

// EnableCounts makes every level keep delivery counts (see
// Queue.EnableCounts).
func (pq *PriorityQueue) EnableCounts() error {
	pq.mu.Lock()
	pq.counts = true
	ls := pq.levels
	pq.mu.Unlock()
	for _, q := range ls {
		if q != nil {
			if err := q.EnableCounts(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Read returns a copy of a handed-out message (see Queue.Read).
func (pq *PriorityQueue) Read(seq uint64) (segment.Record, error) {
	q := pq.get(seq)
	if q == nil {
		return segment.Record{}, fmt.Errorf("%w: %d", segment.ErrNotFound, seq)
	}
	return q.Read(seq & seqMask)
}

// Purge drops every ready message of every level (see Queue.Purge).
func (pq *PriorityQueue) Purge() int {
	n := 0
	pq.each(func(_ int, q *Queue) bool { n += q.Purge(); return true })
	return n
}

// Ready returns the ready messages of every level.
func (pq *PriorityQueue) Ready() int {
	n := 0
	pq.each(func(_ int, q *Queue) bool { n += q.Ready(); return true })
	return n
}

// Unacked returns the delivered, unacked messages of every level.
func (pq *PriorityQueue) Unacked() int {
	n := 0
	pq.each(func(_ int, q *Queue) bool { n += q.Unacked(); return true })
	return n
}

// ReadyBytes returns the body bytes of the ready messages of every level.
func (pq *PriorityQueue) ReadyBytes() int64 {
	var n int64
	pq.each(func(_ int, q *Queue) bool { n += q.ReadyBytes(); return true })
	return n
}

// UnackedBytes returns the body bytes of the unacked messages of every level.
func (pq *PriorityQueue) UnackedBytes() int64 {
	var n int64
	pq.each(func(_ int, q *Queue) bool { n += q.UnackedBytes(); return true })
	return n
}

// Levels returns the levels that hold state (used at least once).
func (pq *PriorityQueue) Levels() []int {
	var out []int
	pq.each(func(l int, _ *Queue) bool { out = append(out, l); return true })
	return out
}

// Delete deletes every level's log and state (see Store.DeleteQueue).
func (pq *PriorityQueue) Delete() error {
	pq.mu.Lock()
	ls := pq.levels
	pq.levels = make([]*Queue, len(ls))
	pq.deleted = true
	pq.mu.Unlock()
	var first error
	for _, q := range ls {
		if q == nil {
			continue
		}
		if err := pq.s.DeleteQueue(q.id); err != nil && first == nil {
			first = err
		}
	}
	if first == nil && pq.durable {
		// The levels' states took their own marks; the queue's is keyed
		// by its ID, which no log has.
		first = pq.s.db.ClearDeleting(pq.id)
	}
	return first
}

// Delete deletes the queue's log and state (see Store.DeleteQueue).
func (q *Queue) Delete() error { return q.s.DeleteQueue(q.id) }
