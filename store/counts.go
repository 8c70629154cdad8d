package store

import (
	"fmt"
	"slices"

	"github.com/warrenmq/warren/index"
)

// Delivery counts (quorum queues). RabbitMQ's quorum queues count, per
// message, how many times it went back to the queue (x-acquired-count) and
// how many of those were failed deliveries (x-delivery-count), and
// dead-letter a message whose failed count passes the delivery limit. The
// counts live in the Raft log there, so they survive a restart; here they
// are kept, for the messages returned at least once and not yet acked, in
// RAM and in the index ('C' keys, committed with the log state in the same
// batch). Their number is bounded by the messages in flight or requeued,
// like the requeued set itself.

// countPair is one message's counts.
type countPair struct{ acquired, failed uint32 }

// deliveryCounts is a queue's counts and the changes not yet committed.
// A nil *deliveryCounts (a queue without counts) ignores forget.
type deliveryCounts struct {
	m map[uint64]countPair
	// dirty lists the sequences changed since the last commit (durable
	// queues only; nil otherwise).
	dirty map[uint64]struct{}
}

func (c *deliveryCounts) get(seq uint64) (uint32, uint32) {
	p := c.m[seq]
	return p.acquired, p.failed
}

// forget drops seq's counts (acked, dropped or purged).
func (c *deliveryCounts) forget(seq uint64) {
	if c == nil {
		return
	}
	if _, ok := c.m[seq]; ok {
		delete(c.m, seq)
		if c.dirty != nil {
			c.dirty[seq] = struct{}{}
		}
	}
}

// bump counts one return of seq.
func (c *deliveryCounts) bump(seq uint64, failed bool) countPair {
	p := c.m[seq]
	p.acquired++
	if failed {
		p.failed++
	}
	c.m[seq] = p
	if c.dirty != nil {
		c.dirty[seq] = struct{}{}
	}
	return p
}

// EnableCounts makes the queue keep delivery counts (a quorum queue),
// loading those recorded before a restart. It is idempotent.
func (q *Queue) EnableCounts() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.errLocked(); err != nil {
		return err
	}
	if q.counts != nil {
		return nil
	}
	c := &deliveryCounts{m: make(map[uint64]countPair)}
	if q.durable {
		c.dirty = make(map[uint64]struct{})
		recs, err := q.s.db.DeliveryCounts(q.id)
		if err != nil {
			return fmt.Errorf("store: delivery counts of %s: %w", q.id, err)
		}
		for _, r := range recs {
			if r.Seq >= q.next || q.acks.contains(r.Seq) {
				c.dirty[r.Seq] = struct{}{} // its message is gone: delete it
				continue
			}
			c.m[r.Seq] = countPair{r.Acquired, r.Failed}
		}
		if len(c.dirty) > 0 {
			q.s.markDirtyLocked(q)
		}
	}
	q.counts = c
	return nil
}

// Return gives unacked deliveries back, as Requeue does, and counts the
// return in each message's delivery counts when the queue keeps them:
// Acquired always, Failed when failed is set (a rejection, or a consumer
// that went away holding it). A message whose Failed count then exceeds
// limit (when limit >= 0) is not requeued: it stays outstanding and is
// listed in dead, for the caller to dead-letter and ack. Without counts,
// Return is Requeue.
func (q *Queue) Return(seqs []uint64, failed bool, limit int64) (dead []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.errLocked() != nil {
		return nil
	}
	var add []uint64
	for _, seq := range seqs {
		if !q.outstandingLocked(seq) {
			continue
		}
		if q.counts != nil {
			p := q.counts.bump(seq, failed)
			if limit >= 0 && int64(p.failed) > limit {
				dead = append(dead, seq)
				continue
			}
		}
		add = append(add, seq)
	}
	if q.counts != nil && q.durable {
		q.changedLocked()
	}
	if len(add) == 0 {
		return dead
	}
	slices.Sort(add)
	add = slices.Compact(add)
	q.requeueLocked(add)
	return dead
}

// countsForCommit adds the count changes since the last commit to b.
func (q *Queue) countsForCommit(b *index.Batch) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.counts
	if q.deleted {
		return nil
	}
	if c == nil || len(c.dirty) == 0 {
		return nil
	}
	for seq := range c.dirty {
		var err error
		if p, ok := c.m[seq]; ok {
			err = b.SetDeliveryCount(q.id, index.DeliveryCount{Seq: seq, Acquired: p.acquired, Failed: p.failed})
		} else {
			err = b.DeleteDeliveryCount(q.id, seq)
		}
		if err != nil {
			return err
		}
	}
	clear(c.dirty)
	return nil
}
