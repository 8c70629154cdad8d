package store

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// Errors returned by this package. Callers test them with errors.Is.
var (
	// ErrClosed is returned after Store.Close.
	ErrClosed = errors.New("store: closed")
	// ErrDeleted is returned by a Queue after Store.DeleteQueue.
	ErrDeleted = errors.New("store: queue deleted")
	// ErrNotFound is returned by DeleteQueue for an unknown queue.
	ErrNotFound = errors.New("store: queue not found")
	// ErrInvalidID is returned for a queue ID that cannot name a directory.
	ErrInvalidID = errors.New("store: invalid queue id")
	// ErrDurability is returned by Store.Queue when a queue is reopened with
	// a different durability than it has.
	ErrDurability = errors.New("store: durability mismatch")
)

// Directory layout under Options.Dir.
const (
	indexDir  = "index"
	queuesDir = "queues"
)

// DefaultReclaimInterval is how often idle, drained queues give back the
// space of their active segment.
const DefaultReclaimInterval = time.Second

// Options configures Open.
type Options struct {
	// Dir holds the index (Dir/index) and the queue logs (Dir/queues/<id>).
	Dir string
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// SegmentSize is the size at which a queue's active segment is rolled
	// (0: segment.DefaultSegmentSize).
	SegmentSize int64
	// ChunkSize is the raw size at which an append seals a chunk by itself
	// (0: segment.DefaultChunkSize).
	ChunkSize int
	// Codec compresses chunks (zero value: segment.CodecS2).
	Codec segment.Codec
	// Logger receives recovery reports and failures.
	Logger zerolog.Logger
	// SyncIndex makes the index commits of ack and delivery state synced,
	// on a committer goroutine of their own that runs after each sync round
	// without holding the round up: publisher confirms wait for the
	// segment fdatasync only. Without it, ack state reaches Pebble's WAL
	// unsynced after the round's segment fdatasync, where a crash of the
	// process or the machine may forget recent acks (those messages are
	// redelivered, flagged redelivered when the delivery was recorded), but
	// never loses a message.
	SyncIndex bool
	// ReclaimInterval is the period of the background pass that deletes
	// fully acked segments (0: DefaultReclaimInterval; negative: never, call
	// Reclaim yourself).
	ReclaimInterval time.Duration
}

// Recovered describes a durable queue found by Open.
type Recovered struct {
	// ID is the queue's ID.
	ID string
	// Ready counts the messages ready for delivery. It includes
	// non-persistent messages written before the restart, which are dropped
	// (counted as acked) only when NextReady reaches them.
	Ready int
	// Unacked is always 0 after a restart: messages unacked at the crash are
	// ready again (and flagged redelivered when they were delivered).
	Unacked int
	// Segments is the number of segment files of the queue's log.
	Segments int
	// Lost counts messages the log reported lost to corruption.
	Lost uint64
}

// Store is the message store of a broker node: one Pebble index and one
// segment log per queue, sharing one group-commit Syncer.
type Store struct {
	opts   Options
	fs     vfs.FS
	log    zerolog.Logger
	db     *index.DB
	syncer *segment.Syncer

	mu        sync.Mutex
	closed    bool
	queues    map[string]*Queue
	recovered []Recovered

	// commitMu serialises index commits of log state with queue deletion,
	// so a deleted queue's state is never written back. dbClosed, set
	// under it by Close, stops any commit after the final one.
	commitMu sync.Mutex
	dbClosed bool

	dirtyMu sync.Mutex
	dirty   []*Queue
	spare   []*Queue

	// With SyncIndex, the syncer's hook only wakes the committer.
	commitKick chan struct{}
	commitDone chan struct{}

	stop chan struct{}
	done chan struct{}
}

// Open opens or creates the store in opts.Dir and recovers every durable
// queue: it reads each queue's log state from the index and walks its
// segment files (chunk headers only, except for the last segment), so its
// cost grows with queues and segments, not with messages. Logs without
// index state belong to non-durable queues and are deleted.
func Open(opts Options) (*Store, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.ReclaimInterval == 0 {
		opts.ReclaimInterval = DefaultReclaimInterval
	}
	s := &Store{
		opts:   opts,
		fs:     fs,
		log:    opts.Logger,
		queues: make(map[string]*Queue),
	}
	qdir := fs.PathJoin(opts.Dir, queuesDir)
	if _, err := fs.Stat(qdir); err != nil {
		// A new store: make the directory entries durable before the
		// index and logs rely on them.
		if err := fs.MkdirAll(qdir, 0o755); err != nil {
			return nil, fmt.Errorf("store: mkdir %s: %w", qdir, err)
		}
		for _, d := range []string{opts.Dir, fs.PathDir(opts.Dir)} {
			if err := syncDir(fs, d); err != nil {
				return nil, err
			}
		}
	}
	db, err := index.Open(fs.PathJoin(opts.Dir, indexDir), index.Options{FS: fs, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.db = db
	hook := s.commitStates
	if opts.SyncIndex {
		s.commitKick, s.commitDone = make(chan struct{}, 1), make(chan struct{})
		go s.commitLoop()
		hook = s.kickCommit
	}
	s.syncer = segment.NewSyncer(segment.SyncerOptions{Hook: hook, Logger: opts.Logger})
	if err := s.recover(); err != nil {
		s.syncer.Close()
		s.stopCommitter()
		for _, q := range s.queues {
			q.log.Close()
		}
		db.Close()
		return nil, err
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.reclaimLoop()
	return s, nil
}

// recover opens every durable queue and deletes the logs of the others.
func (s *Store) recover() error {
	start := time.Now()
	states, err := s.db.LogStates()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	qdir := s.fs.PathJoin(s.opts.Dir, queuesDir)
	names, err := s.fs.List(qdir)
	if err != nil {
		return fmt.Errorf("store: list %s: %w", qdir, err)
	}
	for _, name := range names {
		if _, ok := states[name]; ok {
			continue
		}
		if err := s.fs.RemoveAll(s.fs.PathJoin(qdir, name)); err != nil {
			return fmt.Errorf("store: remove transient queue %s: %w", name, err)
		}
		s.log.Debug().Str("queue", name).Msg("store: removed non-durable queue log")
	}
	ids := make([]string, 0, len(states))
	for id := range states {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var total int
	for _, id := range ids {
		if checkID(id) != nil {
			s.log.Error().Str("queue", id).Msg("store: ignoring log state with invalid queue id")
			continue
		}
		q, err := s.openQueue(id, true, states[id], true)
		if err != nil {
			return err
		}
		s.queues[id] = q
		r := Recovered{ID: id, Ready: int(q.ready), Segments: len(q.log.Segments())}
		for _, g := range q.log.Gaps() {
			r.Lost += g.Last - g.First + 1
		}
		s.recovered = append(s.recovered, r)
		total += r.Ready
	}
	s.log.Info().Int("queues", len(ids)).Int("ready", total).Dur("took", time.Since(start)).
		Msg("store: recovered")
	return nil
}

func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || len(id) > 255 {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	return nil
}

// openQueue opens the log of a queue and rebuilds its in-memory state from
// the persisted log state st (zero for a new queue).
func (s *Store) openQueue(id string, durable bool, st index.LogState, recovering bool) (*Queue, error) {
	l, err := segment.Open(s.fs, s.fs.PathJoin(s.opts.Dir, queuesDir, id), segment.Options{
		SegmentSize: s.opts.SegmentSize,
		ChunkSize:   s.opts.ChunkSize,
		Codec:       s.opts.Codec,
		Logger:      s.log.With().Str("queue", id).Logger(),
		Sync:        durable,
	})
	if err != nil {
		return nil, fmt.Errorf("store: queue %s: %w", id, err)
	}
	q := &Queue{s: s, id: id, durable: durable, log: l}
	next, first := l.NextSeq(), l.FirstSeq()
	// The log is the truth: the index may be older than the log (acks
	// committed unsynced and lost) or, after data loss, newer; clamp it.
	w := min(max(st.Watermark, first), next)
	q.acks.watermark = w
	for _, r := range st.Acked {
		q.acks.add(r.Lo, min(r.Hi, next))
	}
	q.next = next
	q.cursor = q.acks.watermark
	q.ready = int64(next-q.acks.watermark) - int64(q.acks.countIn(q.acks.watermark, next))
	q.committedNext = st.NextSeq
	q.bytes.tailBase = next
	if recovering {
		q.recoveredNext = next
		q.redeliverBelow = min(st.Delivered, next)
		q.bytes.ready = int64(st.Bytes)
		if from := max(st.NextSeq, q.acks.watermark); from < next {
			q.bytes.unknownFrom = from
		}
		q.bytes.settle(q.ready, 0)
	}
	return q, nil
}

// Recovered lists the durable queues found by Open, in ID order.
func (s *Store) Recovered() []Recovered {
	return append([]Recovered(nil), s.recovered...)
}

// Stats are the store's storage figures.
type Stats struct {
	// Queues counts open queue logs; Segments their segment files and
	// DiskBytes the bytes of valid chunks in them.
	Queues, Segments int
	DiskBytes        int64
	// RawBytes and StoredBytes are the payload sizes of the chunks written
	// since the broker started, before and after compression.
	RawBytes, StoredBytes int64
	// Sync describes the group-commit rounds.
	Sync segment.SyncStats
}

// Stats returns the current storage figures. It takes each log's lock
// briefly; call it at scrape rate, not per message.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	logs := make([]*segment.Log, 0, len(s.queues))
	for _, q := range s.queues {
		logs = append(logs, q.log)
	}
	s.mu.Unlock()
	st := Stats{Queues: len(logs), Sync: s.syncer.Stats()}
	for _, l := range logs {
		n, b := l.DiskUsage()
		st.Segments += n
		st.DiskBytes += b
		ls := l.Stats()
		st.RawBytes += ls.RawBytes
		st.StoredBytes += ls.StoredBytes
	}
	return st
}

// Index returns the store's index, for the broker's definitions.
func (s *Store) Index() *index.DB { return s.db }

// Queue returns the queue with the given ID, creating its log if needed. A
// durable queue's log state is written to the index (synced) before its log
// is created, so a restart recognises it as durable; a non-durable queue's
// log is deleted by the next Open.
func (s *Store) Queue(id string, durable bool) (*Queue, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if q, ok := s.queues[id]; ok {
		if q.durable != durable {
			return nil, fmt.Errorf("%w: queue %s is durable=%v", ErrDurability, id, q.durable)
		}
		return q, nil
	}
	if durable {
		b := s.db.NewBatch()
		if err := b.SetLogState(id, index.LogState{NextSeq: 1, Watermark: 1, Segments: []uint64{1}}); err != nil {
			b.Close()
			return nil, fmt.Errorf("store: queue %s: %w", id, err)
		}
		if err := b.Commit(true); err != nil {
			return nil, fmt.Errorf("store: queue %s: %w", id, err)
		}
	} else if err := s.fs.RemoveAll(s.fs.PathJoin(s.opts.Dir, queuesDir, id)); err != nil {
		// A leftover log of a non-durable queue is never reused.
		return nil, fmt.Errorf("store: queue %s: %w", id, err)
	}
	q, err := s.openQueue(id, durable, index.LogState{}, false)
	if err != nil {
		return nil, err
	}
	s.queues[id] = q
	return q, nil
}

// DeleteQueue deletes a queue: its index state first (synced), then its log
// directory, so a crash in between leaves a log without state, which the
// next Open deletes. Later calls on the Queue return ErrDeleted.
func (s *Store) DeleteQueue(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	q, ok := s.queues[id]
	delete(s.queues, id)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	s.commitMu.Lock()
	if s.dbClosed {
		// Close finished meanwhile (it did not see this queue).
		s.commitMu.Unlock()
		return ErrClosed
	}
	q.mu.Lock()
	q.deleted = true
	q.requeued = nil
	q.acks = ackSet{}
	q.mu.Unlock()
	var err error
	if q.durable {
		b := s.db.NewBatch()
		if err = b.DeleteQueueState(id); err == nil {
			err = b.Commit(true)
		} else {
			b.Close()
		}
	}
	s.commitMu.Unlock()
	if err != nil {
		return fmt.Errorf("store: delete queue %s: %w", id, err)
	}
	if err := q.log.Remove(); err != nil {
		return fmt.Errorf("store: delete queue %s: %w", id, err)
	}
	return nil
}

// markDirty queues q's log state for the next index commit. Called with q.mu held.
func (s *Store) markDirtyLocked(q *Queue) bool {
	if q.dirty || !q.durable || q.deleted {
		return false
	}
	q.dirty = true
	s.dirtyMu.Lock()
	s.dirty = append(s.dirty, q)
	s.dirtyMu.Unlock()
	return true
}

// commitStates is the Syncer hook: after a round's segment data is durable,
// it writes the log state of every queue changed since the last round.
func (s *Store) commitStates() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.dbClosed {
		return nil
	}
	s.dirtyMu.Lock()
	qs := s.dirty
	s.dirty, s.spare = s.spare, nil
	s.dirtyMu.Unlock()
	defer func() {
		clear(qs)
		s.dirtyMu.Lock()
		s.spare = qs[:0]
		s.dirtyMu.Unlock()
	}()
	if len(qs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	var err error
	for _, q := range qs {
		st, ok := q.stateForCommit()
		if !ok {
			continue
		}
		if e := b.SetLogState(q.id, st); e != nil && err == nil {
			err = e
		}
		if e := q.countsForCommit(b); e != nil && err == nil {
			err = e
		}
	}
	if b.Len() == 0 {
		b.Close()
	} else if e := b.Commit(s.opts.SyncIndex); e != nil && err == nil {
		err = e
	}
	if err != nil {
		s.log.Error().Err(err).Msg("store: commit log states")
		return fmt.Errorf("store: commit log states: %w", err)
	}
	return nil
}

// kickCommit is the syncer's hook with SyncIndex: it wakes the committer,
// which commits (synced) the state of the queues changed so far. Several
// rounds may share one commit.
func (s *Store) kickCommit() error {
	select {
	case s.commitKick <- struct{}{}:
	default:
	}
	return nil
}

// minCommitInterval spaces the committer's synced index commits under
// load: ack and delivery state then reaches the disk at most this much
// later than the round that changed it, and a busy broker pays for one
// index fsync per interval instead of one per round.
const minCommitInterval = 2 * time.Millisecond

func (s *Store) commitLoop() {
	defer close(s.commitDone)
	var last time.Time
	for range s.commitKick {
		if d := minCommitInterval - time.Since(last); d > 0 {
			time.Sleep(d)
		}
		last = time.Now()
		s.commitStates() // logs its own errors; the next round retries
	}
}

func (s *Store) stopCommitter() {
	if s.commitKick != nil {
		close(s.commitKick)
		<-s.commitDone
		s.commitKick = nil
	}
}

// Reclaim deletes the segments whose messages are all acked, rolling the
// active segment of a fully drained queue so that its space comes back too.
// The background pass calls it every ReclaimInterval, rolling only queues
// that saw no append since the previous pass.
func (s *Store) Reclaim() error {
	return s.reclaim(false)
}

func (s *Store) reclaim(idleOnly bool) error {
	s.mu.Lock()
	qs := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	var first error
	for _, q := range qs {
		if err := q.reclaim(idleOnly); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *Store) reclaimLoop() {
	defer close(s.done)
	if s.opts.ReclaimInterval < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.opts.ReclaimInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.reclaim(true); err != nil {
				s.log.Error().Err(err).Msg("store: reclaim")
			}
		}
	}
}

// Close completes every pending durability callback, writes the final log
// state of every durable queue (synced), and closes logs and index.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.syncer.Close()
	s.stopCommitter()
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	s.mu.Lock()
	qs := s.queues
	s.queues = nil
	s.mu.Unlock()
	for _, q := range qs {
		keep(q.log.Close())
	}
	s.commitMu.Lock()
	s.dbClosed = true // no commit after this one; DeleteQueue checks it
	b := s.db.NewBatch()
	for _, q := range qs {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		if st, ok := q.stateForCommit(); ok {
			keep(b.SetLogState(q.id, st))
			keep(q.countsForCommit(b))
		}
	}
	keep(b.Commit(true))
	s.commitMu.Unlock()
	keep(s.db.Close())
	if first != nil {
		return fmt.Errorf("store: close: %w", first)
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("store: open dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: sync dir %s: %w", dir, err)
	}
	return nil
}
