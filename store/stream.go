package store

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// Streams. A RabbitMQ stream (x-queue-type: stream) is an append-only log
// that consumers read without removing anything, each from an offset of
// its own. A Stream is a durable Queue's log used that way: its sequences
// are the offsets (offset = seq - 1, so the first message has offset 0 as
// in RabbitMQ), readers read it through the log's chunk cache without
// touching the queue's delivery state, and the queue's ack watermark is the
// first offset retained. Retention (by total size and by age) moves that
// watermark to the base of a segment and deletes the segments below it, a
// whole segment at a time, never the last one. Nothing per message is
// kept in RAM, so replaying any backlog takes bounded memory.

// Stream is the store of one stream. Its methods are safe for concurrent
// use.
type Stream struct {
	q *Queue
	// segSize is the raw size at which the active segment is rolled (0:
	// the store's segment size).
	segSize int64

	mu        sync.Mutex
	sinceRoll int64  // raw bytes appended to the active segment
	lastBatch uint64 // first sequence of the last append
	rolled    bool   // a segment rolled since TakeRolled
}

// Stream opens (or creates) the stream def.ID (always durable; a new one's
// definition is written with its log, as OpenQueue does). Its segments roll
// after about segmentSize bytes of records (0, or more than the store's
// segment size: the store's segment size).
func (s *Store) Stream(def index.Queue, segmentSize int64) (*Stream, error) {
	def.Durable = true
	q, err := s.OpenQueue(def)
	if err != nil {
		return nil, err
	}
	st := &Stream{q: q, segSize: segmentSize}
	if segs := q.log.Segments(); len(segs) > 0 {
		if fi, err := s.fs.Stat(segmentPath(s, q.log, segs[len(segs)-1])); err == nil {
			st.sinceRoll = fi.Size()
		}
	}
	return st, nil
}

// segmentPath is the file of the segment starting at base (segment/doc.go
// fixes the naming: the zero-padded base sequence and ".seg").
func segmentPath(s *Store, l *segment.Log, base uint64) string {
	return s.fs.PathJoin(l.Dir(), fmt.Sprintf("%020d.seg", base))
}

// Queue returns the queue whose log the stream uses (for its counts and
// deletion).
func (st *Stream) Queue() *Queue { return st.q }

// Append appends records (see Queue.Append), first rolling the active
// segment when it passed the stream's segment size (rolling before rather
// than after keeps the last segment from being an empty one).
func (st *Stream) Append(recs []segment.Record, onDurable func(error)) (uint64, error) {
	st.mu.Lock()
	roll := st.segSize > 0 && st.sinceRoll >= st.segSize
	if roll {
		st.sinceRoll = 0
		st.rolled = true
	}
	st.mu.Unlock()
	if roll {
		if err := st.q.log.Roll(); err != nil {
			st.q.s.log.Error().Err(err).Str("queue", st.q.id).Msg("store: stream segment roll failed")
		}
	}
	first, err := st.q.Append(recs, onDurable)
	if err != nil {
		return first, err
	}
	var n int64
	for i := range recs {
		r := &recs[i]
		n += int64(len(r.Exchange) + len(r.RoutingKey) + len(r.Props) + len(r.Body) + 16)
	}
	st.mu.Lock()
	st.lastBatch = first
	st.sinceRoll += n
	st.mu.Unlock()
	return first, nil
}

// TakeRolled reports whether a segment rolled since the last call: the
// moment to apply a size limit, as RabbitMQ applies retention on a roll.
func (st *Stream) TakeRolled() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.rolled
	st.rolled = false
	return r
}

// First returns the first sequence retained.
func (st *Stream) First() uint64 {
	q := st.q
	q.mu.Lock()
	w := q.acks.watermark
	q.mu.Unlock()
	return max(w, q.log.FirstSeq())
}

// Next returns the sequence the next message will get.
func (st *Stream) Next() uint64 {
	st.q.mu.Lock()
	defer st.q.mu.Unlock()
	return st.q.next
}

// Len returns the messages the stream holds.
func (st *Stream) Len() int { return st.q.Ready() }

// LastChunk returns where the offset "last" starts: the last batch of
// messages appended (after a restart, the last message).
func (st *Stream) LastChunk() uint64 {
	first, next := st.First(), st.Next()
	st.mu.Lock()
	lb := st.lastBatch
	st.mu.Unlock()
	switch {
	case next == first:
		return next
	case lb >= first && lb < next:
		return lb
	}
	return next - 1
}

// Read calls fn with the messages from seq on, in order, without copying
// (the record is valid during the call only), until fn returns false or
// the stream's end; it returns the sequence to read next. A seq below the
// retained range starts at the first retained message; messages lost to
// corruption are skipped (and logged). fn runs outside the log's lock
// (segment.Log.ViewPinned; one reader of the log at a time): it must not
// call the stream.
func (st *Stream) Read(seq uint64, fn func(seq uint64, r *segment.Record) bool) (uint64, error) {
	if f := st.First(); seq < f {
		seq = f
	}
	next := st.Next()
	for seq < next {
		more := true
		err := st.q.log.ViewPinned(seq, func(r *segment.Record) error {
			more = fn(seq, r)
			return nil
		})
		switch {
		case err == nil:
			if !more {
				return seq, nil
			}
			seq++
		case errors.Is(err, segment.ErrLost):
			st.q.s.log.Warn().Err(err).Str("queue", st.q.id).Uint64("seq", seq).Msg("store: stream message lost; skipped")
			seq++
		case errors.Is(err, segment.ErrNotFound):
			// Removed by retention meanwhile: go on from what is left.
			f := st.First()
			if seq >= f {
				return seq, err
			}
			seq = f
		default:
			return seq, err
		}
	}
	return seq, nil
}

// timestampAt returns the timestamp of the first readable message at or
// after seq, and its sequence.
func (st *Stream) timestampAt(seq, next uint64) (int64, uint64, bool) {
	for ; seq < next; seq++ {
		var ts int64
		err := st.q.log.View(seq, func(r *segment.Record) error { ts = r.Timestamp; return nil })
		if err == nil {
			return ts, seq, true
		}
		if !errors.Is(err, segment.ErrLost) {
			return 0, seq, false
		}
	}
	return 0, seq, false
}

// SeekTime returns the first sequence whose message arrived at or after ts
// (unix ms): the first retained one when all are newer, the next to be
// written when all are older. Timestamps are those given at append, which
// grow with the sequence.
func (st *Stream) SeekTime(ts int64) uint64 {
	lo, hi := st.First(), st.Next()
	for lo < hi {
		mid := lo + (hi-lo)/2
		t, at, ok := st.timestampAt(mid, hi)
		if !ok {
			hi = mid
			continue
		}
		if t >= ts {
			hi = mid
		} else {
			lo = at + 1
		}
	}
	return lo
}

// Retention is a stream's retention configuration; zero values disable a
// limit.
type Retention struct {
	// MaxBytes bounds the bytes on disk (x-max-length-bytes).
	MaxBytes int64
	// MaxAge bounds the age of the newest message of a segment (x-max-age).
	MaxAge time.Duration
}

// Retain applies the retention limits: the oldest segments whose removal
// brings the stream within MaxBytes, and those whose newest message is
// older than MaxAge, are deleted, never the last segment. It returns how
// many messages went.
func (st *Stream) Retain(r Retention, now time.Time) (int, error) {
	if r.MaxBytes <= 0 && r.MaxAge <= 0 {
		return 0, nil
	}
	q := st.q
	segs := q.log.Segments()
	// The last segment holding a message always stays.
	keepLast := len(segs) - 1
	if keepLast > 0 && segs[keepLast] >= st.Next() {
		keepLast-- // the active segment is empty (rolled by a reclaim)
	}
	if keepLast < 1 {
		return 0, nil
	}
	drop := 0
	if r.MaxBytes > 0 {
		sizes := make([]int64, len(segs))
		var total int64
		for i, base := range segs {
			if fi, err := q.s.fs.Stat(segmentPath(q.s, q.log, base)); err == nil {
				sizes[i] = fi.Size()
			}
			total += sizes[i]
		}
		for drop < keepLast && total > r.MaxBytes {
			total -= sizes[drop]
			drop++
		}
	}
	if r.MaxAge > 0 {
		cutoff := now.Add(-r.MaxAge).UnixMilli()
		for i := drop; i < keepLast; i++ {
			var ts int64
			err := q.log.View(segs[i+1]-1, func(rec *segment.Record) error { ts = rec.Timestamp; return nil })
			if err != nil || ts >= cutoff {
				break
			}
			drop = i + 1
		}
	}
	if drop == 0 {
		return 0, nil
	}
	keep := segs[drop]
	q.mu.Lock()
	if q.errLocked() != nil || keep <= q.acks.watermark {
		q.mu.Unlock()
		return 0, nil
	}
	from := q.acks.watermark
	gone := int(keep-from) - int(q.acks.countIn(from, keep))
	q.acks.add(from, keep)
	q.cursor = max(q.cursor, keep)
	q.ready -= int64(gone)
	q.changedLocked()
	q.mu.Unlock()
	if _, err := q.log.RemoveBelow(keep); err != nil && !errors.Is(err, segment.ErrClosed) {
		return gone, fmt.Errorf("store: stream %s retention: %w", q.id, err)
	}
	return gone, nil
}

// DiskUsage returns the stream's segment files and their bytes.
func (st *Stream) DiskUsage() (segments int, bytes int64) { return st.q.log.DiskUsage() }

// Delete deletes the stream's log and state.
func (st *Stream) Delete() error { return st.q.Delete() }
