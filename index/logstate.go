package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Range is the half-open sequence range [Lo, Hi).
type Range struct {
	Lo, Hi uint64
}

// LogState is the persisted state of one queue's message log.
type LogState struct {
	// Segments are the base sequences of the queue's segment files, ascending.
	Segments []uint64
	// NextSeq is the sequence the next appended record receives.
	NextSeq uint64
	// Watermark is the ack watermark: every sequence below it is acked.
	Watermark uint64
	// Acked lists acked ranges above the watermark: sorted, non-overlapping,
	// non-adjacent, each Lo > Watermark.
	Acked []Range
	// Delivered is one past the highest sequence ever delivered (0: none).
	// After a restart, a message below it is flagged redelivered.
	Delivered uint64
	// Bytes is the body bytes of the messages in [Watermark, NextSeq) that
	// are not acked: the ready bytes after a restart, for
	// x-max-length-bytes. Stored from value version 2 on; 0 in version 1.
	Bytes uint64
}

// logStateVersion2 is the value version of a log state with Bytes. A state
// without bytes is still written as version 1. Part of the format, do not
// change.
const logStateVersion2 = 2

// AppendTo appends the encoded state to dst (see the package doc).
func (s LogState) AppendTo(dst []byte) []byte {
	if s.Bytes != 0 {
		dst = append(dst, logStateVersion2)
	} else {
		dst = append(dst, valueVersion)
	}
	dst = binary.AppendUvarint(dst, s.NextSeq)
	dst = binary.AppendUvarint(dst, s.Watermark)
	dst = binary.AppendUvarint(dst, s.Delivered)
	dst = binary.AppendUvarint(dst, uint64(len(s.Segments)))
	var prev uint64
	for _, base := range s.Segments {
		dst = binary.AppendUvarint(dst, base-prev)
		prev = base
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Acked)))
	prev = 0
	for _, r := range s.Acked {
		dst = binary.AppendUvarint(dst, r.Lo-prev)
		dst = binary.AppendUvarint(dst, r.Hi-r.Lo)
		prev = r.Hi
	}
	if s.Bytes != 0 {
		dst = binary.AppendUvarint(dst, s.Bytes)
	}
	return dst
}

// Validate checks the invariants documented on LogState's fields.
func (s LogState) Validate() error {
	for i := 1; i < len(s.Segments); i++ {
		if s.Segments[i] <= s.Segments[i-1] {
			return fmt.Errorf("%w: segment bases not ascending at %d", ErrInvalid, i)
		}
	}
	prev := s.Watermark
	for i, r := range s.Acked {
		if r.Lo >= r.Hi {
			return fmt.Errorf("%w: empty acked range %d [%d,%d)", ErrInvalid, i, r.Lo, r.Hi)
		}
		if r.Lo <= prev {
			return fmt.Errorf("%w: acked range %d [%d,%d) not above %d", ErrInvalid, i, r.Lo, r.Hi, prev)
		}
		prev = r.Hi
	}
	return nil
}

// DecodeLogState decodes a state encoded by AppendTo. It never panics and
// bounds every count by the bytes present.
func DecodeLogState(v []byte) (LogState, error) {
	v2 := len(v) > 0 && v[0] == logStateVersion2
	var r *valueReader
	if v2 {
		r = &valueReader{b: v[1:]}
	} else {
		r = newValueReader(v)
	}
	var s LogState
	s.NextSeq = r.uvarint()
	s.Watermark = r.uvarint()
	s.Delivered = r.uvarint()
	if n := r.count(1); n > 0 {
		s.Segments = make([]uint64, n)
		var prev uint64
		for i := range s.Segments {
			prev += r.uvarint()
			s.Segments[i] = prev
		}
	}
	if n := r.count(2); n > 0 {
		s.Acked = make([]Range, n)
		var prev uint64
		for i := range s.Acked {
			lo := prev + r.uvarint()
			hi := lo + r.uvarint()
			s.Acked[i] = Range{lo, hi}
			prev = hi
		}
	}
	if v2 {
		s.Bytes = r.uvarint()
	}
	if err := r.done(); err != nil {
		return LogState{}, err
	}
	if err := s.Validate(); err != nil {
		return LogState{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return s, nil
}

// Batch gathers log-state writes, and queue definitions created or deleted
// with them, to be committed atomically: typically by the segment syncer
// after the fdatasync round of the data it describes. A Batch is not safe
// for concurrent use.
type Batch struct {
	db  *DB
	b   *pebble.Batch
	gen uint64
	ops []jop // definition writes, journaled
	buf []byte
	n   int
}

// NewBatch returns an empty batch.
func (db *DB) NewBatch() *Batch {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return &Batch{db: db, b: db.db.NewBatch(), gen: db.gen}
}

// SetLogState records the state of the queue's log.
func (b *Batch) SetLogState(queueID string, s LogState) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("index: log state of %q: %w", queueID, err)
	}
	b.buf = s.AppendTo(b.buf[:0])
	if err := b.b.Set(keyOf(kindLogState, queueID), b.buf, nil); err != nil {
		return fmt.Errorf("index: log state of %q: %w", queueID, err)
	}
	b.n++
	return nil
}

// DeleteQueueState removes the state of the queue's log, the delivery
// counts of its messages and its deletion mark (DefsBatch.DeleteQueue).
func (b *Batch) DeleteQueueState(queueID string) error {
	if err := b.b.Delete(keyOf(kindLogState, queueID), nil); err != nil {
		return fmt.Errorf("index: delete log state of %q: %w", queueID, err)
	}
	if err := b.deleteDeliveryCounts(queueID); err != nil {
		return err
	}
	if err := b.b.Delete(keyOf(kindLease, queueID), nil); err != nil {
		return fmt.Errorf("index: delete delivery lease of %q: %w", queueID, err)
	}
	if err := b.b.Delete(keyOf(kindDeleting, queueID), nil); err != nil {
		return fmt.Errorf("index: delete deletion mark of %q: %w", queueID, err)
	}
	b.n++
	return nil
}

// PutQueue creates or replaces a queue definition with the batch.
func (b *Batch) PutQueue(q Queue) error {
	if q.ID == "" {
		return fmt.Errorf("%w: queue %q in vhost %q has no ID", ErrInvalid, q.Name, q.VHost)
	}
	b.ops = append(b.ops, jop{op: 'S', key: keyOf(kindQueue, q.VHost, q.Name), value: encodeQueue(q)})
	b.n++
	return nil
}

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return b.n }

// Commit applies the batch, waiting for it to reach stable storage if sync
// is set (a batch with definitions is always synced, and journaled), and
// releases it: the Batch must not be used afterwards.
func (b *Batch) Commit(sync bool) error {
	db := b.db
	db.mu.RLock()
	defer db.mu.RUnlock()
	switch {
	case db.closed || b.gen != db.gen:
		_ = b.b.Close()
		return fmt.Errorf("index: commit: %w", pebble.ErrClosed)
	case db.readOnly:
		_ = b.b.Close()
		return ErrReadOnly
	}
	if len(b.ops) > 0 {
		db.jmu.Lock()
		defer db.jmu.Unlock()
		if err := db.writeLocked(b.ops, b.b, true); err != nil {
			return fmt.Errorf("index: commit: %w", err)
		}
		return nil
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	err := b.b.Commit(opts)
	_ = b.b.Close()
	if err != nil {
		return fmt.Errorf("index: commit log states: %w", err)
	}
	return nil
}

// Close releases an uncommitted batch, discarding its writes.
func (b *Batch) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("index: close batch: %w", err)
	}
	return nil
}

// LogState returns the state of one queue's log, or ErrNotFound.
func (db *DB) LogState(queueID string) (LogState, error) {
	v, err := db.get(keyOf(kindLogState, queueID))
	if err != nil {
		return LogState{}, fmt.Errorf("log state of %q: %w", queueID, err)
	}
	s, err := DecodeLogState(v)
	if err != nil {
		return LogState{}, fmt.Errorf("log state of %q: %w", queueID, err)
	}
	return s, nil
}

// LogStates returns the state of every queue log, keyed by queue ID.
func (db *DB) LogStates() (map[string]LogState, error) {
	out := make(map[string]LogState)
	err := db.scan([]byte{kindLogState}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		id := r.str()
		if err := r.done(); err != nil {
			return err
		}
		s, err := DecodeLogState(v)
		if err != nil {
			return fmt.Errorf("log state of %q: %w", id, err)
		}
		out[id] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
