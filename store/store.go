package store

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	// ErrNeedsRepair is returned by Open when the index is missing or
	// unreadable, or does not account for queue logs on disk: the store
	// refuses to start rather than ignore (or delete) data; Options.Repair
	// rebuilds what is missing from the segments and the definitions
	// journal.
	ErrNeedsRepair = errors.New("store: the index does not account for the data on disk; start with --repair to rebuild it")
)

// Directory layout under Options.Dir.
const (
	indexDir     = "index"
	queuesDir    = "queues"    // durable queues, one directory per queue ID
	transientDir = "transient" // non-durable queues: wiped by Open
	journalFile  = "definitions.journal"
	ballastFile  = "ballast"
	// brokenIndexPrefix names an index moved aside by a repair.
	brokenIndexPrefix = "index.broken-"
)

// storeFormat is the meta key marking a data directory written by this
// version of the layout (durable logs under queues/, transient ones under
// transient/, identity in segment headers).
const storeFormatKey = "store.format"

// Defaults.
const (
	// DefaultReclaimInterval is how often acked segments are deleted and
	// idle queues' buffers released.
	DefaultReclaimInterval = time.Second
	// DefaultCommitInterval spaces the synced index commits of ack state.
	DefaultCommitInterval = 2 * time.Millisecond
	// DefaultSyncWorkers is the default of Options.SyncWorkers.
	DefaultSyncWorkers = 16
	// DefaultLargeHold is the default of Options.LargeHold.
	DefaultLargeHold = 10 * time.Millisecond
	// DefaultMaxOpenFiles bounds the segment files held open.
	DefaultMaxOpenFiles = segment.DefaultMaxOpenFiles
	// DefaultBallastSize is the space reserved for the index against a full
	// disk (at most 2% of the file system).
	DefaultBallastSize = 64 << 20
)

// Options configures Open.
type Options struct {
	// Dir holds the index (Dir/index), the definitions journal, and the
	// queue logs (Dir/queues/<id>, Dir/transient/<id>).
	Dir string
	// FS is the file system; nil means the operating system's.
	FS vfs.FS
	// SegmentSize is the largest size at which a queue's active segment is
	// rolled (0: segment.DefaultSegmentSize); MinSegmentSize the smallest
	// (0: segment.DefaultMinSegmentSize).
	SegmentSize, MinSegmentSize int64
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
	// CommitInterval spaces the synced index commits under load (0:
	// DefaultCommitInterval).
	CommitInterval time.Duration
	// SyncWorkers bounds how many logs a sync round flushes (writes and
	// fdatasyncs) at once (0: DefaultSyncWorkers). An fdatasync waits on
	// the disk, not the CPU: with thousands of queues written now and then,
	// each round has many logs to sync, and overlapping them is what keeps
	// the round short.
	SyncWorkers int
	// LargeHold is how long a persistent message of at least 64 KiB
	// (segment.LargeBody) waits before its body is written (0:
	// DefaultLargeHold; negative: no wait): one that its consumer
	// acknowledges meanwhile is never written, only a stub
	// (segment.SyncerOptions.Hold).
	LargeHold time.Duration
	// ReclaimInterval is the period of the background pass that deletes
	// fully acked segments (0: DefaultReclaimInterval; negative: never, call
	// Reclaim yourself).
	ReclaimInterval time.Duration
	// MaxOpenFiles bounds the segment files held open (0:
	// DefaultMaxOpenFiles); the index keeps up to a quarter of it more.
	MaxOpenFiles int
	// BallastSize is the space kept reserved, as a file, for the index: a
	// full disk would stop Pebble (a failed WAL write is fatal to it), so
	// when the index meets ENOSPC the ballast is deleted and the write
	// retried, and the logs stop writing until the disk has room for the
	// ballast again (0: DefaultBallastSize, at most 2% of the file system;
	// negative: none).
	BallastSize int64
	// Repair rebuilds what the index is missing instead of refusing to
	// start: a missing or unreadable index is moved aside and rebuilt from
	// the definitions journal, queue definitions missing from it are
	// rebuilt from the segment headers, and log states from the segments
	// (every message not provably acked comes back, flagged redelivered).
	Repair bool
}

// Recovered describes a durable queue found by Open.
type Recovered struct {
	// ID is the queue's ID.
	ID string
	// Def is the queue's identity as its segments record it (zero for a
	// queue whose segments predate identities).
	Def index.Queue
	// Ready counts the messages ready for delivery: persistent, not acked,
	// not lost. Non-persistent messages written before the restart are not
	// counted (they are dropped when reached).
	Ready int
	// Unacked is always 0 after a restart: messages unacked at the crash are
	// ready again (and flagged redelivered when they were delivered).
	Unacked int
	// Segments is the number of segment files of the queue's log.
	Segments int
	// Lost counts messages lost to corruption or missing files; Dropped the
	// non-persistent messages that did not survive the restart.
	Lost, Dropped uint64
}

// Store is the message store of a broker node: one Pebble index and one
// segment log per queue, sharing one group-commit Syncer and one bound on
// open files.
type Store struct {
	opts   Options
	fs     vfs.FS
	log    zerolog.Logger
	db     *index.DB
	syncer *segment.Syncer
	files  *segment.Files

	mu        sync.Mutex
	closed    bool
	queues    map[string]*Queue
	recovered []Recovered
	// retired sums the write counters of the queues deleted since start.
	retired segment.Stats

	// commitMu serialises index commits of log state with queue deletion,
	// so a deleted queue's state is never written back. dbClosed, set
	// under it by Close, stops any commit after the final one.
	commitMu sync.Mutex
	dbClosed bool
	// commit error reporting, rate limited
	commitErrs    int
	commitErrLast time.Time

	// releaseIdle's account of memory released since it last trimmed
	trimMu            sync.Mutex
	releasedElsewhere atomic.Int64 // NoteReleased's count, taken by trim
	releasedSinceTrim int
	lastTrim          time.Time
	heapAfterTrim     int64
	quietTrimmed      bool // trimmed since the broker was last busy

	dirtyMu sync.Mutex
	dirty   []*Queue
	spare   []*Queue

	// With SyncIndex, the syncer's hook only wakes the committer.
	commitKick chan struct{}
	commitDone chan struct{}

	// The ballast: released (deleted) when the index meets a full disk.
	ballastSize int64
	ballastGone atomic.Bool

	stop chan struct{}
	done chan struct{}
}

// Open opens or creates the store in opts.Dir and recovers every durable
// queue: it reads each queue's log state from the index and walks its
// segment files (chunk headers only, except for the last segment), so its
// cost grows with queues and segments, not with messages. Non-durable
// queues' logs (under transient/) are deleted. Open refuses (ErrNeedsRepair)
// a data directory whose index is missing, unreadable, or does not account
// for a queue log that holds messages, unless Options.Repair is set. On a
// disk that cannot be written, the index is opened read-only: queues can
// be read and drained, writes fail until space returns.
func Open(opts Options) (*Store, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.ReclaimInterval == 0 {
		opts.ReclaimInterval = DefaultReclaimInterval
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = DefaultCommitInterval
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	s := &Store{
		opts:   opts,
		fs:     fs,
		log:    opts.Logger,
		queues: make(map[string]*Queue),
		files:  segment.NewFiles(opts.MaxOpenFiles),
	}
	if err := s.removeTransient(); err != nil {
		return nil, err
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
	names, err := fs.List(qdir)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", qdir, err)
	}
	sort.Strings(names)
	if opts.BallastSize >= 0 {
		s.ballastSize = opts.BallastSize
		if s.ballastSize == 0 {
			s.ballastSize = DefaultBallastSize
			if u, err := fs.GetDiskUsage(opts.Dir); err == nil && u.TotalBytes > 0 {
				s.ballastSize = min(s.ballastSize, int64(u.TotalBytes/50))
			}
		}
	}
	fresh, err := s.openIndex(names)
	if err != nil {
		return nil, err
	}
	hook := s.commitStates
	if opts.SyncIndex {
		s.commitKick, s.commitDone = make(chan struct{}, 1), make(chan struct{})
		go s.commitLoop()
		hook = s.kickCommit
	}
	workers := opts.SyncWorkers
	if workers <= 0 {
		workers = DefaultSyncWorkers
	}
	hold := opts.LargeHold
	switch {
	case hold == 0:
		hold = DefaultLargeHold
	case hold < 0:
		hold = 0
	}
	s.syncer = segment.NewSyncer(segment.SyncerOptions{Hook: hook, Logger: opts.Logger, Workers: workers, Hold: hold})
	if err := s.recover(names, fresh); err != nil {
		s.syncer.Close()
		s.stopCommitter()
		for _, q := range s.queues {
			q.log.Close()
		}
		s.db.Close()
		return nil, err
	}
	s.fitBallast()
	if !s.ensureBallast() && !s.db.ReadOnly() {
		s.log.Warn().Int64("bytes", s.ballastSize).
			Msg("store: no ballast (it needs three times its size free): the index has no reserve against a full disk until there is room")
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.reclaimLoop()
	return s, nil
}

// releaseBallast is the index file system's disk-full callback: it deletes
// the ballast so that Pebble's write, retried once, finds room. The logs
// stop writing until the ballast is back.
func (s *Store) releaseBallast() {
	if s.ballastSize <= 0 || s.ballastGone.Load() {
		return
	}
	s.ballastGone.Store(true)
	path := s.fs.PathJoin(s.opts.Dir, ballastFile)
	if err := s.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error().Err(err).Msg("store: disk full, and the ballast cannot be removed")
		return
	}
	s.log.Error().Int64("bytes", s.ballastSize).
		Msg("store: disk full: released the ballast kept for the index; publishes fail until the disk has room again")
}

// fitBallast makes, at Open, a ballast an earlier start left fit this
// one's setting: removed when none is wanted, grown in place, or replaced
// by a smaller one. It holds no data; a failure keeps the old one.
func (s *Store) fitBallast() {
	path := s.fs.PathJoin(s.opts.Dir, ballastFile)
	tmp := path + ".tmp"
	_ = s.fs.Remove(tmp) // left by a replacement a crash cut off
	st, err := s.fs.Stat(path)
	if err != nil {
		return
	}
	if s.ballastSize <= 0 {
		if err := s.fs.Remove(path); err != nil {
			s.log.Error().Err(err).Str("file", path).Msg("store: cannot remove the ballast (none is configured)")
			return
		}
		s.log.Info().Msg("store: no ballast is configured: removed the earlier one")
		return
	}
	// The ballast is preallocated, so its length says nothing: its blocks
	// tell, where the file system gives them.
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	have := sys.Blocks * 512
	if have >= s.ballastSize && have < s.ballastSize+1<<20 {
		return
	}
	// As ensureBallast, only with room to spare: the ballast must not be
	// what fills the disk. Growing needs three times the new size free,
	// counting the old; the smaller replacement twice its size.
	u, err := s.fs.GetDiskUsage(s.opts.Dir)
	switch {
	case err != nil:
	case have < s.ballastSize && u.AvailBytes+uint64(have) < uint64(3*s.ballastSize),
		have > s.ballastSize && u.AvailBytes < uint64(2*s.ballastSize):
		err = fmt.Errorf("%d bytes free", u.AvailBytes)
	case have < s.ballastSize:
		err = s.preallocBallast(path, false) // grows in place
	default:
		if err = s.preallocBallast(tmp, true); err == nil {
			err = s.fs.Rename(tmp, path)
		}
	}
	if err != nil {
		_ = s.fs.Remove(tmp)
		s.log.Warn().Err(err).Int64("bytes", have).Int64("configured", s.ballastSize).
			Msg("store: cannot resize the ballast; the earlier one stays")
		return
	}
	s.log.Info().Int64("from", have).Int64("to", s.ballastSize).Msg("store: resized the ballast")
}

// preallocBallast allocates the ballast's size to the file name, created
// or opened, and syncs it.
func (s *Store) preallocBallast(name string, create bool) error {
	var f vfs.File
	var err error
	if create {
		f, err = s.fs.Create(name, vfs.WriteCategoryUnspecified)
	} else {
		f, err = s.fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	}
	if err != nil {
		return err
	}
	err = f.Preallocate(0, s.ballastSize)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ensureBallast (re)creates the ballast when the disk has room for it and
// twice as much again; it reports whether the ballast is in place.
func (s *Store) ensureBallast() bool {
	if s.ballastSize <= 0 || s.db.ReadOnly() {
		return s.ballastSize <= 0
	}
	path := s.fs.PathJoin(s.opts.Dir, ballastFile)
	if _, err := s.fs.Stat(path); err == nil && !s.ballastGone.Load() {
		return true
	}
	u, err := s.fs.GetDiskUsage(s.opts.Dir)
	if err != nil || u.AvailBytes < uint64(3*s.ballastSize) {
		return false
	}
	if err := s.preallocBallast(path, true); err != nil {
		s.fs.Remove(path)
		return false
	}
	if s.ballastGone.Swap(false) {
		s.log.Info().Int64("bytes", s.ballastSize).Msg("store: the disk has room again: ballast restored, writes resume")
	}
	return true
}

// guard is the logs' and the definitions' write guard: while the ballast
// is released, their writes fail as on a full disk.
func (s *Store) guard() error {
	if s.ballastGone.Load() {
		return fmt.Errorf("store: disk full (the space reserved for the index is in use): %w", syscall.ENOSPC)
	}
	return nil
}

// removeTransient deletes the logs of non-durable queues: they never
// survive a restart.
func (s *Store) removeTransient() error {
	tdir := s.fs.PathJoin(s.opts.Dir, transientDir)
	names, err := s.fs.List(tdir)
	if err != nil {
		return nil // none
	}
	if err := s.fs.RemoveAll(tdir); err != nil {
		// A failing disk: the next Open tries again; they are never read.
		s.log.Error().Err(err).Str("dir", tdir).Msg("store: cannot remove the logs of non-durable queues")
		return nil
	}
	if len(names) > 0 {
		s.log.Info().Int("queues", len(names)).Msg("store: removed the logs of non-durable queues (they do not survive a restart)")
	}
	return nil
}

// openIndex opens the index, deciding between a new data directory, a
// normal open, a read-only open (the disk cannot be written), a repair and
// a refusal. It reports whether the data directory is new.
func (s *Store) openIndex(queueDirs []string) (bool, error) {
	fs := s.fs
	idir := fs.PathJoin(s.opts.Dir, indexDir)
	journal := fs.PathJoin(s.opts.Dir, journalFile)
	ifs := fs
	if s.ballastSize > 0 {
		ifs = vfs.OnDiskFull(fs, s.releaseBallast)
	}
	iopts := index.Options{FS: ifs, JournalFS: fs, Logger: s.log, Journal: journal, Guard: s.guard,
		MaxOpenFiles: max(64, s.opts.MaxOpenFiles/4)}
	_, jerr := fs.Stat(journal)
	logs := 0
	for _, n := range queueDirs {
		if !strings.HasSuffix(n, segment.DeletedSuffix) {
			logs++
		}
	}
	hasData := logs > 0 || jerr == nil
	if _, err := fs.Stat(idir); err != nil && !hasData {
		db, err := index.Open(idir, iopts)
		if err != nil {
			return false, fmt.Errorf("store: %w", err)
		}
		s.db = db
		if err := db.SetMeta(storeFormatKey, []byte{1}); err != nil {
			return false, fmt.Errorf("store: %w", err)
		}
		return true, nil
	}
	o := iopts
	o.MustExist = hasData
	db, err := index.Open(idir, o)
	if err == nil {
		s.db = db
		return false, nil
	}
	// A full or read-only disk: the index itself may be fine.
	ro := iopts
	ro.ReadOnly = true
	if rdb, rerr := index.Open(idir, ro); rerr == nil {
		s.log.Error().Err(err).Msg("store: cannot open the index for writing (disk full or read-only?); serving read-only until it can be written")
		s.db = rdb
		return false, nil
	}
	why := fmt.Sprintf("the index in %s is unreadable: %v", idir, err)
	if errors.Is(err, index.ErrMissing) {
		why = fmt.Sprintf("the index in %s is missing", idir)
	}
	if !s.opts.Repair {
		return false, fmt.Errorf("%w: %s, but %d queue logs are in %s", ErrNeedsRepair, why, logs,
			fs.PathJoin(s.opts.Dir, queuesDir))
	}
	s.log.Error().Str("reason", why).Int("queue_logs", logs).Msg("store: repair: rebuilding the index")
	if _, serr := fs.Stat(idir); serr == nil {
		aside := fs.PathJoin(s.opts.Dir, brokenIndexPrefix+time.Now().UTC().Format("20060102T150405"))
		if err := fs.Rename(idir, aside); err != nil {
			return false, fmt.Errorf("store: repair: move %s aside: %w", idir, err)
		}
		s.log.Warn().Str("moved_to", aside).Msg("store: repair: kept the damaged index")
	}
	db, st, err := index.Rebuild(idir, iopts)
	if err != nil {
		return false, fmt.Errorf("store: repair: %w", err)
	}
	ev := s.log.Warn()
	if st.Torn {
		ev = s.log.Error()
	}
	ev.Int("records", st.Records).Bool("journal_torn", st.Torn).
		Msg("store: repair: definitions rebuilt from the journal (a torn journal lost its last changes)")
	s.db = db
	return false, nil
}

// recover opens every durable queue's log and reconciles it with the index.
func (s *Store) recover(names []string, fresh bool) error {
	start := time.Now()
	states, err := s.db.LogStates()
	if err != nil {
		if !s.opts.Repair {
			return fmt.Errorf("%w: reading log states: %w", ErrNeedsRepair, err)
		}
		states = map[string]index.LogState{}
	}
	leases, err := s.db.DeliveredLeases()
	if err != nil && !s.opts.Repair {
		return fmt.Errorf("%w: reading delivery leases: %w", ErrNeedsRepair, err)
	}
	for id, l := range leases {
		// Deliveries up to a lease written after the last state commit.
		if st, ok := states[id]; ok && l > st.Delivered {
			st.Delivered = l
			states[id] = st
		}
	}
	legacy := false
	if !fresh {
		if _, err := s.db.Meta(storeFormatKey); errors.Is(err, index.ErrNotFound) {
			legacy = true
		}
	}
	qdir := s.fs.PathJoin(s.opts.Dir, queuesDir)
	var orphans []string
	seen := make(map[string]bool, len(names))
	var total, lost, dropped uint64
	for _, name := range names {
		path := s.fs.PathJoin(qdir, name)
		if strings.HasSuffix(name, segment.DeletedSuffix) {
			if err := s.fs.RemoveAll(path); err != nil {
				s.log.Error().Err(err).Str("dir", path).Msg("store: cannot remove the log of a deleted queue")
			} else {
				s.log.Info().Str("dir", name).Msg("store: removed the log of a queue deleted before the restart")
			}
			continue
		}
		if checkID(name) != nil {
			s.log.Error().Str("dir", path).Msg("store: ignoring a queue directory with an invalid name")
			continue
		}
		seen[name] = true
		st, hasState := states[name]
		q, err := s.openQueue(name, index.Queue{ID: name, Durable: true}, st, true)
		if err != nil {
			return err
		}
		if !hasState {
			empty := q.next == q.log.FirstSeq()
			id := q.log.Recovery().Identity
			switch {
			case empty:
				q.log.Remove()
				s.log.Info().Str("queue", name).Msg("store: removed an empty log without index state (a declaration that did not complete)")
				continue
			case legacy && id == nil:
				// Written by the previous layout, where non-durable queues
				// shared this directory and had no state.
				q.log.Remove()
				s.log.Warn().Str("queue", name).Msg("store: removed the log of a non-durable queue left by the previous data layout")
				continue
			case s.opts.Repair:
				if err := s.repairQueue(q); err != nil {
					q.log.Close()
					return err
				}
			default:
				q.log.Close()
				orphans = append(orphans, name)
				continue
			}
		}
		s.queues[name] = q
	}
	if len(orphans) > 0 {
		return fmt.Errorf("%w: %d queue logs hold messages but have no state in the index (%s)",
			ErrNeedsRepair, len(orphans), strings.Join(orphans[:min(len(orphans), 5)], ", "))
	}
	// States of queues whose log holds no file (empty, or fully reclaimed).
	for id, st := range states {
		if seen[id] {
			continue
		}
		if checkID(id) != nil {
			s.log.Error().Str("queue", id).Msg("store: ignoring log state with invalid queue id")
			continue
		}
		q, err := s.openQueue(id, index.Queue{ID: id, Durable: true}, st, true)
		if err != nil {
			return err
		}
		if st.NextSeq > st.Watermark {
			n := st.NextSeq - st.Watermark
			if marked, _ := s.db.Deleting(id); marked {
				// Deleted on purpose, its directory removed: the broker
				// finishes the delete.
				s.log.Info().Str("queue", id).Uint64("records", n).
					Msg("store: the log of a queue being deleted is gone")
			} else {
				s.log.Error().Str("queue", id).Uint64("records_lost", n).
					Msg("store: the log of a queue with unacked messages is missing")
			}
			q.lost += n
		}
		s.queues[id] = q
	}
	ids := make([]string, 0, len(s.queues))
	for id := range s.queues {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		q := s.queues[id]
		r := Recovered{ID: id, Ready: int(q.ready), Segments: len(q.log.Segments()), Lost: q.lost, Dropped: q.dropped}
		if b := q.log.Recovery().Identity; b != nil {
			if def, err := decodeIdentity(b); err == nil {
				r.Def = def
			}
		}
		s.recovered = append(s.recovered, r)
		total += uint64(r.Ready)
		lost += r.Lost
		dropped += r.Dropped
	}
	if legacy && !s.db.ReadOnly() {
		if err := s.db.SetMeta(storeFormatKey, []byte{1}); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	ev := s.log.Info()
	if lost > 0 {
		ev = s.log.Error()
	}
	ev.Int("queues", len(ids)).Uint64("ready", total).Uint64("lost", lost).
		Uint64("transient_dropped", dropped).Dur("took", time.Since(start)).Msg("store: recovered")
	return nil
}

// repairQueue rebuilds the index entries of a recovered queue whose state
// is missing: its log state from the segments (nothing acked, everything
// flagged redelivered) and, when the index has no definition for it, its
// definition from the segment headers.
func (s *Store) repairQueue(q *Queue) error {
	first, next := q.log.FirstSeq(), q.next
	st := index.LogState{NextSeq: next, Watermark: first, Delivered: next, Segments: q.log.Segments()}
	b := s.db.NewBatch()
	if err := b.SetLogState(q.id, st); err != nil {
		b.Close()
		return fmt.Errorf("store: repair %s: %w", q.id, err)
	}
	def, err := s.putBackDefinition(q, b)
	if err != nil {
		b.Close()
		return fmt.Errorf("store: repair %s: %w", q.id, err)
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("store: repair %s: %w", q.id, err)
	}
	q.mu.Lock()
	q.acks = ackSet{watermark: first}
	q.cursor = first
	q.redeliverBelow = next
	q.lease = next
	q.ready = q.countReadyLocked(first)
	q.bytes.ready, q.bytes.unknownFrom = 0, first // sizes are read when a byte limit asks
	q.mu.Unlock()
	q.log.SetIdentity(encodeIdentity(def))
	s.log.Warn().Str("vhost", def.VHost).Str("queue", def.Name).Str("id", q.id).Int64("ready", q.ready).
		Msg("store: repair: rebuilt the queue's log state from its segments; acks since its last commit are lost, those messages come back redelivered")
	return nil
}

// putBackDefinition adds to b the definition of q's queue, taken from the
// identity its segments record, when the index has none for it: under its
// own name, or NAME-recovered-ID when the name now belongs to another
// queue, with its vhost recreated if that is gone too. A priority level's
// log gives its queue's definition (and q.partOf is set). Segments from
// before identities give "recovered-ID" in vhost "/". It returns the
// definition.
func (s *Store) putBackDefinition(q *Queue, b *index.Batch) (index.Queue, error) {
	def, err := decodeIdentity(q.log.Recovery().Identity)
	if err == nil && def.ID != "" && def.ID != q.id {
		// A log of queue def.ID (a priority level): its definition is
		// the queue's.
		q.partOf = def.ID
	} else if err != nil {
		// Segments from before identities: give it a name that says so.
		def = index.Queue{VHost: "/", Name: "recovered-" + q.id, ID: q.id, Durable: true}
		s.log.Warn().Str("queue", q.id).Str("name", def.Name).
			Msg("store: repair: the segments do not record the queue's identity; recovered under a new name")
	}
	if q.partOf == "" {
		def.ID = q.id
	}
	def.Durable = true
	if _, err := s.db.GetVHost(def.VHost); errors.Is(err, index.ErrNotFound) {
		if err := s.db.PutVHost(index.VHost{Name: def.VHost}); err != nil {
			return def, err
		}
		s.log.Warn().Str("vhost", def.VHost).Msg("store: repair: recreated a vhost from a queue's identity")
	}
	if have, err := s.db.GetQueue(def.VHost, def.Name); err != nil || have.ID != def.ID {
		if err == nil {
			// The name now belongs to another queue: keep both.
			def.Name = def.Name + "-recovered-" + def.ID
		}
		if err := b.PutQueue(def); err != nil {
			return def, err
		}
	}
	return def, nil
}

// RestoreQueue puts back, for a repair, the definition of an unclaimed
// queue (see Unclaimed) whose log holds messages and carries no deletion
// mark, from the identity its segments record (see putBackDefinition). The
// caller opens the queue with the definition returned; for a priority
// level's log that is its queue's (Def.ID is the queue's ID, not id).
func (s *Store) RestoreQueue(id string) (index.Queue, error) {
	s.mu.Lock()
	q := s.queues[id]
	s.mu.Unlock()
	if q == nil {
		return index.Queue{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	b := s.db.NewBatch()
	def, err := s.putBackDefinition(q, b)
	if err == nil {
		err = b.Commit(true)
	} else {
		b.Close()
	}
	if err != nil {
		return def, fmt.Errorf("store: restore queue %s: %w", id, err)
	}
	s.log.Warn().Str("vhost", def.VHost).Str("queue", def.Name).Str("id", id).
		Msg("store: repair: put back the definition of a queue whose log had none (its bindings are gone)")
	return def, nil
}

func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || len(id) > 255 ||
		strings.HasSuffix(id, segment.DeletedSuffix) {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	return nil
}

// wantFlush is the logs' WantFlush: records waiting for a file to be
// created go to the Syncer.
func (s *Store) wantFlush(l *segment.Log) { s.syncer.Add(l, nil) }

// openQueue opens the log of a queue and rebuilds its in-memory state from
// the persisted log state st (zero for a new queue).
func (s *Store) openQueue(id string, def index.Queue, st index.LogState, recovering bool) (*Queue, error) {
	dir := s.fs.PathJoin(s.opts.Dir, queuesDir, id)
	if !def.Durable {
		dir = s.fs.PathJoin(s.opts.Dir, transientDir, id)
	}
	var identity []byte
	if def.Name != "" {
		identity = encodeIdentity(def)
	}
	l, err := segment.Open(s.fs, dir, segment.Options{
		SegmentSize:    s.opts.SegmentSize,
		MinSegmentSize: s.opts.MinSegmentSize,
		ChunkSize:      s.opts.ChunkSize,
		Codec:          s.opts.Codec,
		Logger:         s.log, // the log names its directory, which names the queue
		Sync:           def.Durable,
		Files:          s.files,
		Identity:       identity,
		NextSeq:        st.NextSeq,
		WantFlush:      s.wantFlush,
		Guard:          s.guard,
	})
	if err != nil {
		return nil, fmt.Errorf("store: queue %s: %w", id, err)
	}
	if identity == nil {
		if b := l.Recovery().Identity; b != nil {
			l.SetIdentity(b)
		}
	}
	q := &Queue{s: s, id: id, durable: def.Durable, log: l}
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
	q.committedW = st.Watermark
	q.committedNext = st.NextSeq
	q.bytes.tailBase = next
	if !recovering {
		return q, nil
	}
	q.recoveredNext = next
	q.redeliverBelow = min(st.Delivered, next)
	q.lease = st.Delivered
	for _, g := range l.Gaps() {
		q.openGaps = append(q.openGaps, index.Range{Lo: g.First, Hi: g.Last + 1})
		lo, hi := max(g.First, w), g.Last+1
		if hi > lo {
			q.lost += hi - lo - q.acks.countIn(lo, hi)
		}
	}
	// Segments are deleted only below a watermark the index holds, so a
	// log starting above it lost files; an index claiming more durable
	// records than the log holds lost its tail.
	if st.NextSeq > 0 && first > st.Watermark && st.NextSeq > st.Watermark {
		n := min(first, st.NextSeq) - st.Watermark
		ev := s.log.Error()
		if !s.opts.SyncIndex {
			ev = s.log.Warn() // an unsynced index commit may simply be lost
		}
		ev.Str("queue", id).Uint64("first", first).Uint64("watermark", st.Watermark).Uint64("records_lost", n).
			Msg("store: records missing at the head of a log (segment files deleted?)")
		q.lost += n
	}
	if st.NextSeq > next && st.NextSeq > max(next, st.Watermark) {
		n := st.NextSeq - max(next, st.Watermark)
		s.log.Error().Str("queue", id).Uint64("log_end", next).Uint64("index_durable_end", st.NextSeq).
			Uint64("records_lost", n).Msg("store: durable records missing at the tail of a log")
		q.lost += n
	}
	q.ready = q.countReadyLocked(w)
	q.dropped = q.transientIn(w, next)
	// Body bytes come from the log state; records appended after its
	// commit, or anything past a loss, are read lazily when a byte limit
	// needs them (ReadyBytesExact).
	q.bytes.ready = int64(st.Bytes)
	if from := max(st.NextSeq, w); from < next {
		q.bytes.unknownFrom = from
	}
	if q.lost > 0 || len(q.openGaps) > 0 {
		q.bytes.ready, q.bytes.unknownFrom = 0, w
	}
	q.bytes.settle(q.ready, 0)
	return q, nil
}

// Recovered lists the durable queues found by Open, in ID order.
func (s *Store) Recovered() []Recovered {
	return append([]Recovered(nil), s.recovered...)
}

// Unclaimed lists the recovered durable queues that no Queue call has
// opened since Open: state the index holds for a queue without a
// definition, which a deletion interrupted by a crash leaves (the
// definition goes first). Def tells which queue it was.
func (s *Store) Unclaimed() []Recovered {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Recovered
	for _, r := range s.recovered {
		if q := s.queues[r.ID]; q != nil && !q.claimed {
			r.Ready = q.Ready()
			out = append(out, r)
		}
	}
	return out
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
	// Skipped counts the large records acknowledged before they were
	// written, so never written (segment.Log.Skip); SkippedBytes is their
	// raw size.
	Skipped, SkippedBytes int64
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
	written := s.retired
	s.mu.Unlock()
	st := Stats{Queues: len(logs), Sync: s.syncer.Stats()}
	for _, l := range logs {
		n, b := l.DiskUsage()
		st.Segments += n
		st.DiskBytes += b
		written.Add(l.Stats())
	}
	st.RawBytes, st.StoredBytes = written.RawBytes, written.StoredBytes
	st.Skipped, st.SkippedBytes = written.Skipped, written.SkippedBytes
	return st
}

// Index returns the store's index, for the broker's definitions.
func (s *Store) Index() *index.DB { return s.db }

// Files returns the cache bounding the store's open segment files.
func (s *Store) Files() *segment.Files { return s.files }

// Queue returns the queue with the given ID, creating it if needed; a
// shorthand for OpenQueue with a definition named after the ID.
func (s *Store) Queue(id string, durable bool) (*Queue, error) {
	return s.OpenQueue(index.Queue{ID: id, Name: id, Durable: durable})
}

// OpenQueue returns the queue def.ID, creating it if needed. A new durable
// queue's definition and initial log state are written to the index in one
// synced batch (and the definitions journal) before anything else, so a
// restart finds it; its log holds no file until the first append. A
// non-durable queue's log lives under transient/ and goes at the next Open.
// Every segment file of the queue records def as its identity.
func (s *Store) OpenQueue(def index.Queue) (*Queue, error) {
	return s.openLog(def.ID, def, def.VHost != "")
}

// openLog is OpenQueue for a log id that belongs to the queue def (a
// priority level's log has its own ID and records its queue's identity);
// putDef writes def with a new durable log's initial state.
func (s *Store) openLog(id string, def index.Queue, putDef bool) (*Queue, error) {
	durable := def.Durable
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
		if !q.claimed {
			q.claimed = true
			if def.VHost != "" {
				q.def = def
				q.log.SetIdentity(encodeIdentity(def))
			}
		}
		return q, nil
	}
	if durable {
		if err := s.guard(); err != nil {
			return nil, fmt.Errorf("store: queue %s: %w", id, err)
		}
		b := s.db.NewBatch()
		err := b.SetLogState(id, index.LogState{NextSeq: 1, Watermark: 1, Delivered: 1 + leaseAhead})
		if err == nil && putDef {
			err = b.PutQueue(def)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("store: queue %s: %w", id, err)
		}
		if err := b.Commit(true); err != nil {
			return nil, fmt.Errorf("store: queue %s: %w", id, err)
		}
	} else if err := s.fs.RemoveAll(s.fs.PathJoin(s.opts.Dir, transientDir, id)); err != nil {
		// A leftover log of a non-durable queue is never reused.
		return nil, fmt.Errorf("store: queue %s: %w", id, err)
	}
	q, err := s.openQueue(id, def, index.LogState{}, false)
	if err != nil {
		return nil, err
	}
	q.claimed = true
	if def.VHost != "" {
		q.def = def
	}
	if durable {
		q.lease = 1 + leaseAhead // committed above
	}
	s.queues[id] = q
	return q, nil
}

// DeleteQueue deletes a queue's messages: its log directory is renamed to
// <id>.deleted, then its index state goes (synced), then the directory is
// removed; a crash anywhere leaves either the queue or a directory the next
// Open removes. The queue's definition is the caller's to delete (first,
// so that a state left by a crash shows up in Unclaimed). Later calls on
// the Queue return ErrDeleted.
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
	if ok {
		// Stats counts what was written since start: a deleted queue's
		// figures stay in the totals.
		s.retired.Add(q.log.Stats())
	}
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
	rmErr := q.log.Remove()
	if errors.Is(rmErr, segment.ErrNotRemoved) {
		// The log may still be found under its name: its state (and the
		// deletion mark the caller wrote with the definition's removal)
		// stay, so that the next Open finds it and the broker finishes the
		// delete, instead of a log nothing accounts for.
		s.commitMu.Unlock()
		return fmt.Errorf("store: delete queue %s: %w", id, rmErr)
	}
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
	if rmErr != nil {
		return fmt.Errorf("store: delete queue %s: %w", id, rmErr)
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
	committed := make([]uint64, len(qs))
	leases := make([]uint64, len(qs))
	for i, q := range qs {
		st, ok := q.stateForCommit()
		if !ok {
			committed[i] = 0
			continue
		}
		committed[i], leases[i] = st.Watermark, st.Delivered
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
		// The states stay dirty: the next round commits them again.
		for _, q := range qs {
			q.mu.Lock()
			s.markDirtyLocked(q)
			q.mu.Unlock()
		}
		s.commitErrs++
		if time.Since(s.commitErrLast) > 10*time.Second {
			s.log.Error().Err(err).Int("failures", s.commitErrs).Msg("store: commit log states")
			s.commitErrLast, s.commitErrs = time.Now(), 0
		}
		return fmt.Errorf("store: commit log states: %w", err)
	}
	for i, q := range qs {
		if committed[i] > 0 {
			q.mu.Lock()
			q.committedW = max(q.committedW, committed[i])
			if s.opts.SyncIndex {
				// Only a synced Delivered survives a crash.
				q.lease = max(q.lease, leases[i])
			}
			q.mu.Unlock()
		}
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

// commitLoop commits log states after sync rounds, at most every
// CommitInterval under load: ack and delivery state then reaches the disk
// at most this much later than the round that changed it, and a busy
// broker pays for one index fsync per interval instead of one per round.
func (s *Store) commitLoop() {
	defer close(s.commitDone)
	var last time.Time
	for range s.commitKick {
		if d := s.opts.CommitInterval - time.Since(last); d > 0 {
			time.Sleep(d)
		}
		last = time.Now()
		if s.commitStates() != nil {
			// A failing disk: do not spin; the next round retries.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (s *Store) stopCommitter() {
	if s.commitKick != nil {
		close(s.commitKick)
		<-s.commitDone
		s.commitKick = nil
	}
}

// Reclaim deletes the segments whose messages are all acked (the active
// one included, so a drained queue holds no file). The background pass
// calls it every ReclaimInterval.
func (s *Store) Reclaim() error {
	s.mu.Lock()
	qs := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	var first error
	for _, q := range qs {
		if err := q.reclaim(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// releaseIdle drops the buffers of queues idle since the previous pass,
// then lets trim decide whether to return memory to the operating system.
func (s *Store) releaseIdle() {
	s.mu.Lock()
	qs := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	released, quiet := 0, true
	for _, q := range qs {
		n, used := q.log.ReleaseIdle()
		released += n
		quiet = quiet && !used
		q.mu.Lock()
		q.releaseLocked()
		q.mu.Unlock()
	}
	s.trim(released, quiet)
}

// trim asks the runtime to collect and return free memory to the operating
// system at once. It does so when the idle pass or the connections
// (NoteReleased) let go of trimBytes or more since the last trim (queues
// drained after a burst), at most every trimInterval; and once each time
// the broker goes quiet (no queue used in the last pass) with the heap
// grown by trimBytes since the last trim (the garbage a burst left
// behind), and every trimInterval while a quiet broker's heap holds
// trimBytes of garbage. Otherwise a quiet
// broker runs no garbage collection for minutes and keeps the burst's
// memory resident.
func (s *Store) trim(released int, quiet bool) {
	s.trimMu.Lock()
	s.releasedSinceTrim += released + int(s.releasedElsewhere.Swap(0))
	if !quiet {
		s.quietTrimmed = false
	}
	heap := heapObjectBytes()
	grown := heap - s.heapAfterTrim
	// a forced collection costs in proportion to the live heap: with a
	// large one, trim only for a release worth it
	busyTrim := s.releasedSinceTrim >= max(trimBytes, int(s.heapAfterTrim/4)) && time.Since(s.lastTrim) >= trimInterval
	// Quiet: once, if the burst's garbage grew the heap; and again, at most
	// every trimInterval, while the heap holds that much garbage (the
	// management sampler's, say: the broker's GOGC lets garbage pile up
	// over a small live heap, so a collection may not come for minutes).
	quietTrim := quiet && ((!s.quietTrimmed && grown >= trimBytes) ||
		(heap-heapLiveBytes() >= trimBytes && time.Since(s.lastTrim) >= trimInterval))
	if !busyTrim && !quietTrim {
		s.trimMu.Unlock()
		return
	}
	s.releasedSinceTrim = 0
	s.quietTrimmed = s.quietTrimmed || quiet
	s.trimMu.Unlock()
	debug.FreeOSMemory()
	s.trimMu.Lock()
	s.lastTrim, s.heapAfterTrim = time.Now(), heapObjectBytes()
	s.trimMu.Unlock()
}

// NoteReleased tells the store that n bytes of buffers held outside it
// (a connection's) were let go, for trim's account.
func (s *Store) NoteReleased(n int) {
	s.releasedElsewhere.Add(int64(n))
}

// trimBytes and trimInterval decide when trim returns memory to the
// operating system.
const (
	trimBytes    = 32 << 20
	trimInterval = 10 * time.Second
)

// heapObjectBytes is the memory held by heap objects, live or not yet
// collected.
func heapObjectBytes() int64 { return runtimeBytes("/memory/classes/heap/objects:bytes") }

// heapLiveBytes is the heap the last collection found live.
func heapLiveBytes() int64 { return runtimeBytes("/gc/heap/live:bytes") }

// runtimeBytes reads one of the runtime's byte metrics (0 if unknown).
func runtimeBytes(name string) int64 {
	m := [1]metrics.Sample{{Name: name}}
	metrics.Read(m[:])
	if m[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(m[0].Value.Uint64())
}

func (s *Store) reclaimLoop() {
	defer close(s.done)
	if s.opts.ReclaimInterval < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.opts.ReclaimInterval)
	defer t.Stop()
	var lastErr time.Time
	var reopen time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Reclaim(); err != nil && time.Since(lastErr) > 10*time.Second {
				s.log.Error().Err(err).Msg("store: reclaim")
				lastErr = time.Now()
			}
			s.releaseIdle()
			s.ensureBallast()
			if s.db.ReadOnly() && time.Since(reopen) > 5*s.opts.ReclaimInterval {
				reopen = time.Now()
				if err := s.db.Reopen(); err == nil {
					s.log.Info().Msg("store: the index is writable again")
				}
			}
		}
	}
}

// Failing returns an error while the store cannot write: the index is
// read-only, or a queue's log is failing writes (a full disk, an I/O
// error). It is cheap enough to poll for an alarm: it looks at each queue
// once, without I/O.
func (s *Store) Failing() error {
	if s.db.ReadOnly() {
		return fmt.Errorf("store: %w", index.ErrReadOnly)
	}
	if err := s.guard(); err != nil {
		return err
	}
	s.mu.Lock()
	qs := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	for _, q := range qs {
		if err := q.log.Failing(); err != nil {
			return err
		}
	}
	return nil
}

// DiskFree returns the bytes available to the broker and the total size of
// the file system holding the data directory (statfs).
func (s *Store) DiskFree() (free, total uint64, err error) {
	u, err := s.fs.GetDiskUsage(s.opts.Dir)
	if err != nil {
		return 0, 0, fmt.Errorf("store: disk usage of %s: %w", s.opts.Dir, err)
	}
	return u.AvailBytes, u.TotalBytes, nil
}

// IsWriteFailure reports whether err is a storage failure the client can
// retry later (a full or failing disk, a read-only index), as opposed to a
// bad request.
func IsWriteFailure(err error) bool {
	return errors.Is(err, segment.ErrFailing) || errors.Is(err, index.ErrReadOnly) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.EDQUOT) || errors.Is(err, os.ErrPermission)
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
		if q.durable {
			keep(q.log.Close())
		} else {
			q.log.Remove() // never survives a restart anyway
		}
	}
	s.commitMu.Lock()
	s.dbClosed = true // no commit after this one; DeleteQueue checks it
	if !s.db.ReadOnly() {
		b := s.db.NewBatch()
		for _, q := range qs {
			q.mu.Lock()
			q.closed = true
			q.mu.Unlock()
			if st, ok := q.stateForCommit(); ok {
				keep(b.SetLogState(q.id, st))
				keep(q.countsForCommit(b))
				keep(b.DeleteDeliveredLease(q.id)) // st holds the exact Delivered
			}
		}
		keep(b.Commit(true))
	}
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
