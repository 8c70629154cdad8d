package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// chunkRef is one entry of the in-memory sparse index: a chunk's first
// sequence and where it lives in its segment.
type chunkRef struct {
	first     uint64
	off       int64
	count     uint32
	size      uint32 // header + stored payload
	transient uint32 // records without FlagPersistent
	v1        bool   // version-1 chunk: transient unknown
	bad       bool   // failed its CRC when read
}

// seg is one segment file.
type seg struct {
	base uint64
	name string // final path
	// tmp is set while the file still has its prepared name (h.path): the
	// next Sync renames it to name before its data counts as durable.
	tmp    bool
	h      *handle
	hdr    int64 // header size: where the first chunk starts
	size   int64 // end of the last chunk written
	synced int64 // bytes known durable (all written ones for a log without Sync)
	// dirty is set when bytes past size may hold a failed write: the file
	// is truncated to synced before anything is written again.
	dirty bool
	// readOnly is set for a segment whose header is damaged: its chunks
	// are read, nothing more is written to it.
	readOnly bool
	chunks   []chunkRef
}

// end returns one past the last sequence written to s (base if empty).
func (s *seg) end() uint64 {
	if n := len(s.chunks); n > 0 {
		c := &s.chunks[n-1]
		return c.first + uint64(c.count)
	}
	return s.base
}

// piece is a run of consecutive records held in memory: appended and not
// yet written (pending), written and not yet fdatasynced (kept to write
// them again if the sync fails), or a decoded chunk cached for reads.
type piece struct {
	first     uint64
	count     uint32
	transient uint32
	ts0       int64
	// raw holds the records in the chunk encoding. For an external record
	// (count 1, body set) it holds the encoding up to the body bytes, and
	// body follows it on disk.
	raw    []byte
	offs   []uint32
	body   []byte
	closed bool // pending: takes no more records
	lru    uint64
	// pins counts ViewPinned calls reading the piece outside the log's
	// lock: its buffers are not recycled meanwhile.
	pins int32
	// stable: a chunk of one large record read back from disk into memory
	// of its own, which is never recycled (see Record.Stable).
	stable bool
	// skip: a pending large record acknowledged before it was written
	// (Log.Skip): the flush writes a stub in its place.
	skip bool
	// at is when a large record was appended (unix nanoseconds), for the
	// Syncer's hold (SyncerOptions.Hold).
	at int64
}

func (p *piece) end() uint64  { return p.first + uint64(p.count) }
func (p *piece) rawLen() int  { return len(p.raw) + len(p.body) }
func (p *piece) memSize() int { return cap(p.raw) + len(p.body) + 4*cap(p.offs) }

// view decodes record seq of p into v.
func (p *piece) view(seq uint64, v *recordView) bool {
	i := seq - p.first
	var ok bool
	if p.body != nil {
		ok = parseRecordSplit(p.raw, p.body, v)
	} else {
		ok = parseRecord(p.raw[p.offs[i]:], v)
	}
	if ok && i > 0 {
		v.ts += p.ts0
	}
	return ok
}

// Add adds o's counters to s.
func (s *Stats) Add(o Stats) {
	s.Chunks += o.Chunks
	s.RawBytes += o.RawBytes
	s.StoredBytes += o.StoredBytes
	s.Skipped += o.Skipped
	s.SkippedBytes += o.SkippedBytes
	s.Decodes += o.Decodes
	s.Segments += o.Segments
}

// Stats are a log's cumulative counters.
type Stats struct {
	// Chunks written since Open; RawBytes and StoredBytes are their raw
	// payload and on-disk (header + payload) sizes.
	Chunks, RawBytes, StoredBytes int64
	// Skipped counts large records acknowledged before they were written,
	// and SkippedBytes their raw size: a stub was written instead.
	Skipped, SkippedBytes int64
	// Decodes counts chunks decoded for reads.
	Decodes int64
	// Segments counts segment files created since Open.
	Segments int64
}

// Log is the append-only log of one queue directory. All methods are safe
// for concurrent use. One mutex (mu) guards the in-memory state; appends
// and seals write chunks under it (pwrite). Creating, renaming, removing and
// truncating files, and fdatasync, run outside it under a second mutex
// (fmu) that serialises one log's file operations: the next segment file is
// created ahead of time by a flush (a Syncer round), so a roll only writes
// the new file's header.
type Log struct {
	fs    vfs.FS
	dir   string
	opts  Options
	files *Files

	fmu sync.Mutex // file operations; taken before mu

	mu       sync.Mutex
	closed   bool
	closeErr error
	// failErr is set while writes fail (wrapping ErrFailing and the cause);
	// appends are refused until recover succeeds.
	failErr  error
	failures int  // consecutive failed attempts, for the Syncer's backoff
	healing  bool // left the failing state; reset by the next good flush
	// retryErr is the failure a retry (recover) cleared, kept until the
	// flush that follows it ends: appends are refused until that flush
	// shows whether writes work again, so a disk that is still full does
	// not take new records at every retry.
	retryErr error
	segs     []*seg
	active   *seg // last of segs, nil when the log has no file
	spare    *seg // prepared next file (base not yet known), nil if none
	spareN   int
	target   int64 // roll size of the active segment
	// wantSpare asks the next flush to prepare a file.
	wantSpare   bool
	dirExists   bool
	dirNew      bool // created: its entry in the parent is not yet synced
	nextSeq     uint64
	writtenNext uint64 // records below are written to files (or discarded)
	durableNext uint64 // records below are fsynced (written, when !Sync)

	pend      []*piece // appended, not yet written; the last may be open
	pendBytes int
	// held counts the large records in pend (Sync logs keep them there
	// until a flush, so that one acknowledged first is never written);
	// Skip reads it without the lock.
	held atomic.Int32
	// lastOut is when ViewPinned last handed out a large record (unix
	// nanoseconds): a log whose consumers take its large records is one
	// whose new ones are worth holding.
	lastOut int64
	// flushLimit, when set, stops the flush under way before the records
	// from it on: the Syncer's hold took its snapshot of the records its
	// round covers, and later ones are the next round's.
	flushLimit uint64
	// holdWake is signalled by Skip while a round waits for acks.
	holdWake chan struct{}
	unsynced []*piece // written, not yet fdatasynced (Sync logs)

	wbuf []byte // encode scratch, from bufPool while sealing
	// rawStreak counts consecutive chunks that did not compress;
	// skipCompress is how many chunks to store raw without trying.
	rawStreak, skipCompress int
	cache                   []*piece
	cacheBytes              int
	free                    []*piece // evicted pieces whose buffers the next ones reuse
	tick                    uint64
	touched                 bool // used since the last ReleaseIdle
	gaps                    []Gap
	rec                     Recovery
	stats                   Stats
	view                    Record // scratch for View, so it does not allocate

	// vmu serialises ViewPinned calls, which share pview (taken before mu).
	vmu   sync.Mutex
	pview Record

	// Syncer bookkeeping, guarded by the Syncer's mutex or owned by its loop.
	syncDirty bool
	waiters   []func(error)
	lastTry   time.Time
}

// lg returns the logger of the log's messages, with its directory. It is
// built at each call (only failures and recovery log) rather than kept:
// a logger with a field of its own holds a context buffer of half a KiB,
// which 100,000 queues would each keep.
func (l *Log) lg() *zerolog.Logger {
	lg := l.opts.Logger.With().Str("dir", l.dir).Logger()
	return &lg
}

func (o *Options) setDefaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MinSegmentSize <= 0 {
		o.MinSegmentSize = DefaultMinSegmentSize
	}
	o.MinSegmentSize = min(o.MinSegmentSize, o.SegmentSize)
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize > MaxChunkSize {
		o.ChunkSize = MaxChunkSize
	}
	if o.CacheChunks <= 0 {
		o.CacheChunks = DefaultCacheChunks
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.NextSeq == 0 {
		o.NextSeq = 1
	}
}

func segName(base uint64) string {
	s := strconv.FormatUint(base, 10)
	return strings.Repeat("0", seqDigits-len(s)) + s + segmentSuffix
}

// ---- appending ----

// Append adds records with consecutive sequences to the pending records
// and returns the first one. Records' Seq fields are ignored. Records reach
// the file on Seal (usually a Syncer round); Append seals by itself when a
// chunk's worth (Options.ChunkSize) is pending and a file is ready. The
// batch is checked for size before any record is added. While the log
// fails writes, Append returns an error wrapping ErrFailing.
func (l *Log) Append(recs ...Record) (uint64, error) {
	l.mu.Lock()
	first, err := l.appendLocked(recs)
	want := err == nil && l.wantSpare && l.spare == nil && len(l.pend) > 0
	l.mu.Unlock()
	if want {
		if l.opts.WantFlush != nil {
			l.opts.WantFlush(l)
		} else {
			// A log used without a Syncer writes full chunks itself.
			l.fmu.Lock()
			l.writeLocked(false)
			l.fmu.Unlock()
		}
	}
	return first, err
}

func (l *Log) appendLocked(recs []Record) (uint64, error) {
	if l.closed {
		return 0, ErrClosed
	}
	if l.failErr != nil {
		return 0, l.failErr
	}
	if l.retryErr != nil {
		return 0, l.retryErr
	}
	if g := l.opts.Guard; g != nil {
		// The write would be refused: refuse the records now, rather than
		// take them and hold them until the disk has room.
		if err := g(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFailing, err)
		}
	}
	for i := range recs {
		if recordBodySize(&recs[i], 0)+2*binary.MaxVarintLen64 > MaxChunkSize {
			return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(recs[i].Body))
		}
	}
	l.touched = true
	first := l.nextSeq
	full := false
	for i := range recs {
		r := &recs[i]
		if r.Owned && len(r.Body) >= LargeBody {
			// A chunk of its own, written from the caller's buffer.
			l.closeOpenLocked()
			n := recordBodySize(r, r.Timestamp)
			p := &piece{first: l.nextSeq, count: 1, ts0: r.Timestamp, closed: true, body: r.Body}
			if l.opts.Sync {
				p.at = time.Now().UnixNano()
			}
			p.raw = appendRecordPrefix(make([]byte, 0, n-len(r.Body)+binary.MaxVarintLen64), r, r.Timestamp, n)
			p.offs = []uint32{0}
			if r.Flags&FlagPersistent == 0 {
				p.transient = 1
			}
			l.pend = append(l.pend, p)
			l.pendBytes += p.rawLen()
			l.nextSeq++
			if l.opts.Sync {
				// Held until the next flush, off the appending goroutine:
				// if it is acknowledged meanwhile, only a stub is written.
				l.held.Add(1)
			} else {
				full = true
			}
			continue
		}
		p := l.openPieceLocked()
		delta := r.Timestamp
		if p.count > 0 {
			delta = r.Timestamp - p.ts0
		}
		n := recordBodySize(r, delta)
		if p.count > 0 && len(p.raw)+uvarintLen(uint64(n))+n > l.opts.ChunkSize {
			p.closed = true
			full = true
			p = l.openPieceLocked()
			delta = r.Timestamp
			n = recordBodySize(r, delta)
		}
		if p.count == 0 {
			p.first, p.ts0 = l.nextSeq, r.Timestamp
		}
		before := len(p.raw)
		p.offs = append(p.offs, uint32(before))
		p.raw = appendRecord(p.raw, r, delta, n)
		p.count++
		if r.Flags&FlagPersistent == 0 {
			p.transient++
		}
		l.pendBytes += len(p.raw) - before
		l.nextSeq++
	}
	if full {
		// Write the full chunks now if a file is ready; otherwise the
		// next flush creates the file and writes them.
		if err := l.sealLocked(false, false, l.opts.Sync); err != nil {
			// The records stay pending and are written by a retry.
			return first, nil
		}
	}
	return first, nil
}

// openPieceLocked returns the open pending piece, starting one if needed.
func (l *Log) openPieceLocked() *piece {
	if n := len(l.pend); n > 0 && !l.pend[n-1].closed {
		return l.pend[n-1]
	}
	p := &piece{first: l.nextSeq}
	if c := l.recycleLocked(); c != nil {
		p.raw, p.offs = c.raw[:0], c.offs[:0]
	}
	l.pend = append(l.pend, p)
	return p
}

func (l *Log) closeOpenLocked() {
	if n := len(l.pend); n > 0 {
		l.pend[n-1].closed = true
		if l.pend[n-1].count == 0 {
			l.pend = l.pend[:n-1]
		}
	}
}

// recycleLocked returns a piece whose buffers can be reused: the last one
// evicted from the cache, or the least recently used cached one when the
// cache is full, so a steady stream reuses its buffers.
func (l *Log) recycleLocked() *piece {
	if n := len(l.free); n > 0 {
		p := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return p
	}
	if len(l.cache) < l.opts.CacheChunks {
		return nil
	}
	v := 0
	for i, c := range l.cache {
		if c.lru < l.cache[v].lru {
			v = i
		}
	}
	c := l.cache[v]
	if c.body != nil || c.stable || cap(c.raw) > 2*l.opts.ChunkSize || c.pins > 0 {
		return nil
	}
	l.dropCacheLocked(v)
	if n := len(l.free); n > 0 && l.free[n-1] == c {
		l.free = l.free[:n-1] // dropCacheLocked kept it: it is ours now
	}
	return c
}

// ---- sealing and rolling ----

// Seal writes the pending records as chunks, creating and naming the
// segment files they need, without fdatasync of the data (with Sync, a new
// file's directory entry is synced).
func (l *Log) Seal() error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if err := l.writeLocked(true); err != nil {
		return err
	}
	return l.nameFiles()
}

// sealLocked writes pending pieces: all of them, or only the closed ones.
// With stopFull it stops when the active segment is full and no spare is
// ready (a flush then prepares one and goes on); otherwise it writes past
// the segment's target. With hold it stops at the first large record,
// which the next flush writes.
func (l *Log) sealLocked(all, stopFull, hold bool) error {
	if l.failErr != nil {
		return l.failErr
	}
	for len(l.pend) > 0 {
		p := l.pend[0]
		if !p.closed && !all {
			break
		}
		if p.count == 0 {
			l.pend = l.pend[1:]
			continue
		}
		if hold && p.body != nil {
			break
		}
		if l.flushLimit != 0 && p.first >= l.flushLimit {
			break
		}
		if l.active == nil || l.active.readOnly {
			if l.spare == nil {
				l.wantSpare = true
				return nil // a flush creates the file
			}
			if err := l.rollLocked(p.first); err != nil {
				return err
			}
		}
		if stopFull && l.spare == nil {
			if s := l.active; s.size > s.hdr && s.size+int64(p.rawLen()/2) > l.target {
				l.wantSpare = true
				return nil
			}
		}
		w := p
		if p.skip && p.pins == 0 {
			w = stubPiece(p)
		}
		if err := l.writePieceLocked(w); err != nil {
			return err
		}
		l.pend[0] = nil
		l.pend = l.pend[1:]
		l.pendBytes -= p.rawLen()
		p.closed = true
		if p.body != nil && l.opts.Sync {
			l.held.Add(-1)
		}
		if w != p {
			l.stats.Skipped++
			l.stats.SkippedBytes += int64(p.rawLen())
		}
		if l.opts.Sync {
			l.unsynced = append(l.unsynced, w)
		} else {
			l.durableNext = l.writtenNext
			l.cachePutLocked(w)
		}
	}
	if len(l.pend) == 0 {
		l.pend = nil
	}
	if s := l.active; s != nil && l.spare == nil && s.size >= l.target-l.target/4 {
		l.wantSpare = true
	}
	return nil
}

// writePieceLocked encodes p as one chunk and writes it at the end of the
// active segment, rolling first if it is full and a spare is ready.
func (l *Log) writePieceLocked(p *piece) error {
	codec := l.opts.Codec
	if l.skipCompress > 0 {
		// Recent chunks did not compress: store raw without trying, and
		// try again after a while in case the data changed.
		codec = CodecNone
		l.skipCompress--
	}
	if l.wbuf == nil {
		l.wbuf = getBuf(0)
	}
	var e encoded
	var err error
	l.wbuf, err = e.encode(l.wbuf, p, codec)
	if err != nil {
		return err
	}
	switch {
	case codec == CodecNone:
	case e.raw:
		l.rawStreak = min(l.rawStreak+1, 6)
		l.skipCompress = 1 << l.rawStreak
	default:
		l.rawStreak = 0
	}
	s := l.active
	if s.size > s.hdr && s.size+int64(e.size) > l.target {
		if l.spare != nil {
			if err := l.rollLocked(p.first); err != nil {
				return err
			}
			s = l.active
		} else {
			l.wantSpare = true // write past the target until one is ready
		}
	}
	if g := l.opts.Guard; g != nil {
		if err := g(); err != nil {
			return l.failLocked(err, nil)
		}
	}
	f, err := l.files.acquire(s.h, true)
	if err != nil {
		return l.failLocked(err, s)
	}
	off := s.size
	for _, b := range e.parts[:e.n] {
		if len(b) == 0 {
			continue
		}
		if n, err := f.WriteAt(b, off); err != nil || n != len(b) {
			if err == nil {
				err = io.ErrShortWrite
			}
			l.files.release(s.h)
			return l.failLocked(fmt.Errorf("segment: write %s at %d: %w", s.name, off, err), s)
		}
		off += int64(len(b))
	}
	l.files.release(s.h)
	s.chunks = append(s.chunks, chunkRef{first: p.first, off: s.size, count: p.count,
		size: uint32(e.size), transient: p.transient})
	s.size += int64(e.size)
	if !l.opts.Sync {
		s.synced = s.size
	}
	l.writtenNext = p.end()
	l.stats.Chunks++
	l.stats.RawBytes += int64(p.rawLen())
	l.stats.StoredBytes += int64(e.size)
	// The scratch goes back to the shared pool: a log keeps none between
	// seals, so 10,000 queues that each write now and then do not hold
	// 10,000 encode buffers (the pool keeps a few for all of them).
	putBuf(l.wbuf)
	l.wbuf = nil
	return nil
}

// rollLocked makes the prepared spare the active segment, starting at
// base: its header is written here (a pwrite, no fsync); the next Sync
// renames it, fsyncs the directory and its data.
func (l *Log) rollLocked(base uint64) error {
	s := l.spare
	hdr := appendFileHeader(nil, base, l.opts.Identity)
	f, err := l.files.acquire(s.h, true)
	if err != nil {
		return l.failLocked(err, nil)
	}
	_, err = f.WriteAt(hdr, 0)
	l.files.release(s.h)
	if err != nil {
		return l.failLocked(fmt.Errorf("segment: write header of %s: %w", s.h.path, err), nil)
	}
	l.spare = nil
	s.base = base
	s.name = l.fs.PathJoin(l.dir, segName(base))
	s.hdr, s.size = int64(len(hdr)), int64(len(hdr))
	if !l.opts.Sync {
		s.synced = s.size
	}
	l.target = l.nextTargetLocked()
	l.segs = append(l.segs, s)
	l.active = s
	l.stats.Segments++
	return nil
}

// nextTargetLocked sizes a new segment: twice what the live segments hold,
// within [MinSegmentSize, SegmentSize].
func (l *Log) nextTargetLocked() int64 {
	var live int64
	for _, s := range l.segs {
		live += s.size
	}
	return min(max(2*live, l.opts.MinSegmentSize), l.opts.SegmentSize)
}

// Roll seals pending records and makes the next record start a new
// segment file (once the next flush has prepared it), unless the active
// segment is empty.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.sealLocked(true, false, false); err != nil {
		return err
	}
	if l.active == nil || len(l.active.chunks) == 0 {
		return nil
	}
	l.target = l.active.size // full: the next chunk rolls
	l.wantSpare = true
	return nil
}

// ---- flushing: files, sync, failure ----

// prepare creates the next segment file when the log needs one: it has
// pending records to write (all of them, or only full chunks) and no file,
// or its active segment is filling up.
func (l *Log) prepare(all bool) error {
	l.mu.Lock()
	writable := len(l.pend) > 0 && (all || l.pend[0].closed)
	need := !l.closed && l.failErr == nil && l.spare == nil &&
		((l.active == nil && writable) || l.wantSpare || (l.active != nil && l.active.readOnly && writable))
	if !need {
		l.mu.Unlock()
		return nil
	}
	dirExists := l.dirExists
	n := l.spareN
	l.spareN++
	guard := l.opts.Guard
	l.mu.Unlock()
	if guard != nil {
		if err := guard(); err != nil {
			return l.fail(err)
		}
	}
	if !dirExists {
		if err := l.fs.MkdirAll(l.dir, 0o755); err != nil {
			return l.fail(fmt.Errorf("segment: mkdir %s: %w", l.dir, err))
		}
		l.mu.Lock()
		l.dirExists, l.dirNew = true, true
		l.mu.Unlock()
	}
	path := l.fs.PathJoin(l.dir, "next-"+strconv.Itoa(n)+".tmp")
	f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return l.fail(fmt.Errorf("segment: create %s: %w", path, err))
	}
	h := &handle{fs: l.fs, path: path}
	l.files.adopt(h, f, true)
	l.files.release(h)
	l.mu.Lock()
	l.spare = &seg{h: h, tmp: true}
	l.wantSpare = false
	l.mu.Unlock()
	return nil
}

// flush makes everything appended so far durable: it prepares a file if
// needed, seals and syncs. The Syncer calls it once per round for each
// dirty log.
func (l *Log) flush(all bool) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	return l.flushLocked(all)
}

// flushLocked flushes with fmu held. Without all, only full chunks are
// written (a transient log keeps the rest in memory).
func (l *Log) flushLocked(all bool) error {
	defer l.endRetry()
	if err := l.writeLocked(all); err != nil {
		return err
	}
	if err := l.syncFiles(); err != nil {
		return err
	}
	l.mu.Lock()
	if l.healing {
		l.lg().Info().Int("attempts", l.failures).Msg("segment: writes work again")
		l.healing, l.failures = false, 0
	}
	l.mu.Unlock()
	// A roll during the seal may want the following file ready already.
	return l.prepare(all)
}

// writeLocked writes pending records (all, or only full chunks), preparing
// files as needed. Called with fmu held.
func (l *Log) writeLocked(all bool) error {
	for i := 0; ; i++ {
		if err := l.prepare(all); err != nil {
			return err
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		err := l.sealLocked(all, true, false)
		// Stopped at a full segment: prepare the next file and go on.
		more := len(l.pend) > 0 && (all || l.pend[0].closed) && l.wantSpare && l.spare == nil && i < 1<<16
		l.mu.Unlock()
		if err != nil || !more {
			return err
		}
	}
}

// syncJob is one segment to make durable.
type syncJob struct {
	s    *seg
	size int64
	end  uint64
	from string // prepared path to rename from, if s.tmp
}

// nameFiles gives prepared files that hold records their final names
// (with Sync, the parent and the log's directory are fsynced after).
// Called with fmu held.
func (l *Log) nameFiles() error {
	l.mu.Lock()
	var jobs []*seg
	for _, s := range l.segs {
		if s.tmp {
			jobs = append(jobs, s)
		}
	}
	dirNew := l.dirNew && l.opts.Sync
	l.mu.Unlock()
	if dirNew {
		if err := syncDirPath(l.fs, l.fs.PathDir(l.dir)); err != nil {
			return l.fail(err)
		}
		l.mu.Lock()
		l.dirNew = false
		l.mu.Unlock()
	}
	for _, s := range jobs {
		from := s.h.path
		if err := l.fs.Rename(from, s.name); err != nil {
			return l.fail(fmt.Errorf("segment: rename %s: %w", from, err))
		}
		l.files.rename(s.h, s.name)
		l.mu.Lock()
		s.tmp = false
		l.mu.Unlock()
	}
	if len(jobs) > 0 && l.opts.Sync {
		if err := l.syncDir(); err != nil {
			return l.fail(err)
		}
	}
	return nil
}

// syncFiles makes the written records durable, in order: for each segment
// with unsynced bytes it renames a prepared file to its final name and
// fsyncs the directory, then fdatasyncs the data. Called with fmu held.
func (l *Log) syncFiles() error {
	l.mu.Lock()
	if l.failErr != nil {
		defer l.mu.Unlock()
		return l.failErr
	}
	var jobs []syncJob
	for _, s := range l.segs {
		if s.synced < s.size || s.tmp {
			jobs = append(jobs, syncJob{s: s, size: s.size, end: s.end()})
			if s.tmp {
				jobs[len(jobs)-1].from = s.h.path
			}
		}
	}
	target := l.writtenNext
	dirNew := l.dirNew
	l.mu.Unlock()
	if !l.opts.Sync {
		return l.nameFiles() // no fsync; prepared files get their final names
	}
	if dirNew {
		if err := syncDirPath(l.fs, l.fs.PathDir(l.dir)); err != nil {
			return l.fail(err)
		}
		l.mu.Lock()
		l.dirNew = false
		l.mu.Unlock()
	}
	for _, j := range jobs {
		if j.from != "" {
			if err := l.fs.Rename(j.from, j.s.name); err != nil {
				return l.fail(fmt.Errorf("segment: rename %s: %w", j.from, err))
			}
			l.files.rename(j.s.h, j.s.name)
			l.mu.Lock()
			j.s.tmp = false
			l.mu.Unlock()
			if err := l.syncDir(); err != nil {
				return l.fail(err)
			}
		}
		f, err := l.files.acquire(j.s.h, true)
		if err == nil {
			err = f.SyncData()
			l.files.release(j.s.h)
			if err != nil {
				err = fmt.Errorf("segment: sync %s: %w", j.s.name, err)
			}
		}
		if err != nil {
			return l.fail(err)
		}
		l.mu.Lock()
		j.s.synced = max(j.s.synced, j.size)
		l.advanceDurableLocked(j.end)
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.advanceDurableLocked(target)
	l.mu.Unlock()
	return nil
}

// advanceDurableLocked records that everything below seq is durable and
// moves the synced pieces to the read cache.
func (l *Log) advanceDurableLocked(seq uint64) {
	if seq <= l.durableNext {
		return
	}
	l.durableNext = seq
	i := 0
	for ; i < len(l.unsynced) && l.unsynced[i].end() <= seq; i++ {
		l.cachePutLocked(l.unsynced[i])
		l.unsynced[i] = nil
	}
	l.unsynced = l.unsynced[i:]
	if len(l.unsynced) == 0 {
		l.unsynced = nil
	}
}

// fail records a failed file operation (mu not held).
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(err, nil)
}

// failLocked puts the log in the failing state: appends are refused, and
// the records not yet durable stay in memory to be written again by
// recover. s, if set, may hold a partial write past its size.
func (l *Log) failLocked(err error, s *seg) error {
	if s != nil {
		s.dirty = true
	}
	if l.failErr == nil {
		l.failErr = fmt.Errorf("%w: %w", ErrFailing, err)
		l.lg().Error().Err(err).Msg("segment: write failed; refusing appends until a retry succeeds")
	}
	l.failures++
	return l.failErr
}

// Failing returns the error the log fails writes with, or nil.
func (l *Log) Failing() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failErr
}

// recover tries to leave the failing state: it truncates every segment
// back to its durable size (a segment with nothing durable is removed), puts
// the records written since back in front of the pending ones, and accepts
// appends again. Called with fmu held; the caller then flushes.
func (l *Log) recover() error {
	l.mu.Lock()
	if l.failErr == nil || l.closed {
		l.mu.Unlock()
		return nil
	}
	type cut struct {
		s    *seg
		size int64
	}
	var cuts []cut
	for _, s := range l.segs {
		if s.synced < s.size || s.dirty || s.tmp {
			size := s.synced
			if size < s.hdr || (s.tmp && l.opts.Sync) {
				size = 0 // nothing durable in it: removed
			}
			cuts = append(cuts, cut{s, size})
		}
	}
	spare := l.spare
	l.mu.Unlock()

	var removed []*seg
	for _, c := range cuts {
		if c.size == 0 {
			l.files.forget(c.s.h)
			if err := l.fs.Remove(c.s.h.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return l.retryFailed(fmt.Errorf("segment: remove %s: %w", c.s.h.path, err))
			}
			removed = append(removed, c.s)
			continue
		}
		f, err := l.files.acquire(c.s.h, true)
		if err == nil {
			err = truncateFile(f, c.size)
			l.files.release(c.s.h)
		}
		if err != nil {
			return l.retryFailed(fmt.Errorf("segment: truncate %s to %d: %w", c.s.name, c.size, err))
		}
	}
	if spare != nil {
		// A spare written to by a failed roll: start it afresh.
		f, err := l.files.acquire(spare.h, true)
		if err == nil {
			err = truncateFile(f, 0)
			l.files.release(spare.h)
		}
		if err != nil {
			return l.retryFailed(fmt.Errorf("segment: truncate %s: %w", spare.h.path, err))
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cuts {
		s := c.s
		s.dirty = false
		if c.size == 0 {
			continue
		}
		s.size = c.size
		k := len(s.chunks)
		for k > 0 && s.chunks[k-1].off+int64(s.chunks[k-1].size) > c.size {
			k--
		}
		s.chunks = s.chunks[:k]
	}
	if len(removed) > 0 {
		kept := l.segs[:0]
		for _, s := range l.segs {
			if !slicesContains(removed, s) {
				kept = append(kept, s)
			}
		}
		clear(l.segs[len(kept):])
		l.segs = kept
		l.active = nil
		if n := len(l.segs); n > 0 {
			l.active = l.segs[n-1]
		}
	}
	if l.opts.Sync {
		// The records written since the last sync are written again.
		pend := make([]*piece, 0, len(l.unsynced)+len(l.pend))
		pend = append(pend, l.unsynced...)
		pend = append(pend, l.pend...)
		for _, p := range l.unsynced {
			l.pendBytes += p.rawLen()
			if p.body != nil {
				l.held.Add(1) // pending again: the next seal counts it out
			}
		}
		l.pend, l.unsynced = pend, nil
		l.writtenNext = l.durableNext
	}
	if l.active != nil {
		l.target = max(l.target, l.active.size)
	}
	l.retryErr, l.failErr = l.failErr, nil
	l.healing = true
	return nil
}

// endRetry ends the retry recover began: appends are taken again, unless
// the flush failed and put the log back in the failing state.
func (l *Log) endRetry() {
	l.mu.Lock()
	l.retryErr = nil
	l.mu.Unlock()
}

func slicesContains(ss []*seg, s *seg) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (l *Log) retryFailed(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	l.lg().Debug().Err(err).Msg("segment: retry failed")
	return l.failErr
}

// Sync fdatasyncs the records written so far (it does not seal). It is a
// no-op for a log opened with Sync false.
func (l *Log) Sync() error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return l.syncFiles()
}

// Flush seals and syncs: everything appended so far is durable on return
// (it creates the log's file if needed).
func (l *Log) Flush() error {
	return l.flush(true)
}

// ---- accessors ----

// NextSeq returns the sequence the next appended record will get.
func (l *Log) NextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextSeq
}

// FirstSeq returns the lowest sequence still held; it equals NextSeq for
// an empty log.
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstSeqLocked()
}

func (l *Log) firstSeqLocked() uint64 {
	switch {
	case len(l.segs) > 0:
		return l.segs[0].base
	case len(l.unsynced) > 0:
		return l.unsynced[0].first
	case len(l.pend) > 0:
		return l.pend[0].first
	}
	return l.nextSeq
}

// DurableNext returns the sequence below which every record is durable
// (fsynced; merely written for a log with Sync false).
func (l *Log) DurableNext() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableNext
}

// Segments returns the base sequences of the segment files, oldest first.
func (l *Log) Segments() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]uint64, len(l.segs))
	for i, s := range l.segs {
		out[i] = s.base
	}
	return out
}

// Gaps returns the sequence ranges lost to corruption, found on Open or
// later by Read.
func (l *Log) Gaps() []Gap {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Gap(nil), l.gaps...)
}

// Recovery returns what Open found.
func (l *Log) Recovery() Recovery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// DiskUsage returns the number of segment files and the bytes of valid
// chunks they hold (what reclaiming would give back, headers included).
func (l *Log) DiskUsage() (segments int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		bytes += s.size
	}
	return len(l.segs), bytes
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// ChunkInfo describes one chunk for CountChunks.
type ChunkInfo struct {
	First uint64
	Count uint32
	// Transient counts the records without FlagPersistent; Known is false
	// for chunks of format version 1, which do not record it.
	Transient uint32
	Known     bool
}

// Chunks calls fn for every chunk written to the segment files with
// records at or above from, in order, from the chunk headers walked at Open
// and the chunks written since (no read).
func (l *Log) Chunks(from uint64, fn func(ChunkInfo)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		if s.end() <= from {
			continue
		}
		for _, c := range s.chunks {
			if c.first+uint64(c.count) <= from || c.bad {
				continue
			}
			fn(ChunkInfo{First: c.first, Count: c.count, Transient: c.transient, Known: !c.v1})
		}
	}
}

// ---- reading ----

// Read returns a copy of the record with sequence seq: ErrNotFound outside
// [FirstSeq, NextSeq), an error wrapping ErrLost inside a Gap (and also
// ErrCorrupt when the corruption is found by this read). Records not yet
// written are served from memory.
func (l *Log) Read(seq uint64) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v recordView
	if _, err := l.findLocked(seq, &v); err != nil {
		return Record{}, err
	}
	n := len(v.exchange) + len(v.key) + len(v.props) + len(v.body)
	buf := make([]byte, 0, n)
	buf = append(buf, v.exchange...)
	buf = append(buf, v.key...)
	buf = append(buf, v.props...)
	buf = append(buf, v.body...)
	r := Record{Seq: seq, Timestamp: v.ts, Flags: v.flags}
	o := 0
	r.Exchange = bytesString(buf[o : o+len(v.exchange)])
	o += len(v.exchange)
	r.RoutingKey = bytesString(buf[o : o+len(v.key)])
	o += len(v.key)
	r.Props = buf[o : o+len(v.props) : o+len(v.props)]
	o += len(v.props)
	r.Body = buf[o:n:n]
	return r, nil
}

// View calls fn with the record with sequence seq without copying it: the
// record's strings and slices alias internal buffers and are valid only
// during fn, which runs under the log's lock and must not call the log.
// Errors are those of Read; fn's error is returned as is.
func (l *Log) View(seq uint64, fn func(*Record) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v recordView
	p, err := l.findLocked(seq, &v)
	if err != nil {
		return err
	}
	r := &l.view
	*r = Record{Seq: seq, Timestamp: v.ts, Flags: v.flags,
		Exchange: bytesString(v.exchange), RoutingKey: bytesString(v.key),
		Props: v.props, Body: v.body, Stable: l.stableLocked(p)}
	err = fn(r)
	*r = Record{}
	return err
}

// ViewPinned is View that runs fn without the log's lock, so appends,
// syncs and reads of other records go on while fn encodes or copies the
// record (a delivery to a slow consumer must not hold up the syncer). The
// record's piece is pinned meanwhile: its buffers are not recycled, and
// appends to a pending piece write only past the records already in it.
// ViewPinned calls on one log run one at a time.
func (l *Log) ViewPinned(seq uint64, fn func(*Record) error) error {
	l.vmu.Lock()
	defer l.vmu.Unlock()
	l.mu.Lock()
	var v recordView
	p, err := l.findLocked(seq, &v)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	p.pins++
	if p.body != nil {
		l.lastOut = time.Now().UnixNano()
	}
	stable := l.stableLocked(p)
	l.mu.Unlock()
	r := &l.pview
	*r = Record{Seq: seq, Timestamp: v.ts, Flags: v.flags,
		Exchange: bytesString(v.exchange), RoutingKey: bytesString(v.key),
		Props: v.props, Body: v.body, Stable: stable}
	err = fn(r)
	*r = Record{}
	l.mu.Lock()
	p.pins--
	l.mu.Unlock()
	return err
}

// stableLocked reports whether the memory of p's records is never reused
// or written again: a large body in a buffer of its own (appended, or read
// back from disk), or a chunk too large for recycleLocked and
// dropCacheLocked to keep for reuse.
func (l *Log) stableLocked(p *piece) bool {
	return p.body != nil || p.stable || cap(p.raw) > 2*l.opts.ChunkSize
}

// bytesString views b as a string; b must never be modified afterwards
// (Read) or the string must not outlive b's contents (View).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// findPiece returns the piece of ps holding seq, or nil.
func findPiece(ps []*piece, seq uint64) *piece {
	for i := len(ps) - 1; i >= 0; i-- {
		if p := ps[i]; p.first <= seq {
			if seq < p.end() {
				return p
			}
			return nil
		}
	}
	return nil
}

func (l *Log) findLocked(seq uint64, v *recordView) (*piece, error) {
	if l.closed {
		return nil, ErrClosed
	}
	if seq < l.firstSeqLocked() || seq >= l.nextSeq {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	l.touched = true
	p := findPiece(l.pend, seq)
	if p == nil {
		p = findPiece(l.unsynced, seq)
	}
	if p == nil {
		for _, c := range l.cache {
			if c.first <= seq && seq < c.end() {
				l.tick++
				c.lru = l.tick
				p = c
				break
			}
		}
	}
	if p != nil {
		if !p.view(seq, v) {
			return nil, fmt.Errorf("%w: record %d in memory", ErrCorrupt, seq)
		}
		return p, nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > seq }) - 1
	if i < 0 {
		return nil, fmt.Errorf("%w: %d", ErrLost, seq)
	}
	s := l.segs[i]
	j := sort.Search(len(s.chunks), func(j int) bool {
		return s.chunks[j].first+uint64(s.chunks[j].count) > seq
	})
	if j == len(s.chunks) || s.chunks[j].first > seq {
		return nil, fmt.Errorf("%w: %d in %s", ErrLost, seq, s.name)
	}
	ref := &s.chunks[j]
	if ref.bad {
		return nil, fmt.Errorf("%w: %d in %s at %d", ErrLost, seq, s.name, ref.off)
	}
	c, err := l.loadChunkLocked(s, ref)
	if err != nil {
		return nil, err
	}
	if !c.view(seq, v) {
		return nil, fmt.Errorf("%w: record %d in %s at %d", ErrCorrupt, seq, s.name, ref.off)
	}
	return c, nil
}

// cachePutLocked adds a decoded (or just written) piece to the read cache,
// evicting the least recently used ones past CacheChunks or CacheBytes.
func (l *Log) cachePutLocked(p *piece) {
	l.tick++
	p.lru = l.tick
	l.cache = append(l.cache, p)
	l.cacheBytes += p.memSize()
	for len(l.cache) > 1 && (len(l.cache) > l.opts.CacheChunks || l.cacheBytes > l.opts.CacheBytes) {
		v := 0
		for i, c := range l.cache {
			if c.lru < l.cache[v].lru {
				v = i
			}
		}
		l.dropCacheLocked(v)
	}
}

func (l *Log) dropCacheLocked(i int) {
	p := l.cache[i]
	l.cacheBytes -= p.memSize()
	l.cache = append(l.cache[:i], l.cache[i+1:]...)
	if len(l.cache) == 0 {
		l.cache = nil
	}
	if p.body == nil && !p.stable && cap(p.raw) <= 2*l.opts.ChunkSize && len(l.free) < 1 && p.pins == 0 {
		l.free = append(l.free, p)
	}
}

func (l *Log) loadChunkLocked(s *seg, ref *chunkRef) (*piece, error) {
	f, err := l.files.acquire(s.h, false)
	if err != nil {
		return nil, err
	}
	defer l.files.release(s.h)
	var hb [chunkHeaderSize]byte
	if n, err := f.ReadAt(hb[:], ref.off); n != len(hb) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("segment: read %s at %d: %w", s.name, ref.off, err)
	}
	h, ok := parseChunkHeader(hb[:])
	ok = ok && h.first == ref.first && h.count == ref.count && chunkHeaderSize+h.storedLen == ref.size
	var p *piece
	if ok && h.count == 1 && h.rawLen >= LargeBody {
		// One large record: read into memory of its own that is never
		// reused, so a delivery can send the body from there.
		p = &piece{stable: true}
	} else if p = l.recycleLocked(); p == nil {
		p = &piece{}
	}
	if ok {
		var payload []byte
		var rbuf []byte
		if h.codec == CodecNone {
			// Read straight into the piece: no decode, no copy.
			if cap(p.raw) < int(h.storedLen) {
				p.raw = make([]byte, h.storedLen)
			}
			payload = p.raw[:h.storedLen]
		} else {
			rbuf = getBuf(int(h.storedLen))
			payload = rbuf
		}
		if n, err := f.ReadAt(payload, ref.off+chunkHeaderSize); n != len(payload) {
			putBuf(rbuf)
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("segment: read %s at %d: %w", s.name, ref.off, err)
		}
		ok = chunkCRC(hb[:], payload) == h.crc
		if ok && h.codec == CodecNone {
			p.raw = payload
		} else if ok {
			raw, err := decodePayload(p.raw, &h, payload)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				putBuf(rbuf)
				return nil, err
			}
			ok = err == nil
			if ok {
				p.raw = raw
			}
		}
		putBuf(rbuf)
	}
	if ok {
		p.offs = p.offs[:0]
		for o := 0; o < len(p.raw); {
			n := nextRecord(p.raw[o:])
			if n < 0 {
				ok = false
				break
			}
			p.offs = append(p.offs, uint32(o))
			o += n
		}
		ok = ok && len(p.offs) == int(h.count)
		if ok {
			var v recordView
			ok = parseRecord(p.raw, &v)
			p.ts0 = v.ts
		}
	}
	if !ok {
		ref.bad = true
		g := Gap{First: ref.first, Last: ref.first + uint64(ref.count) - 1, File: s.name, Offset: ref.off, Bytes: int64(ref.size)}
		l.addGap(g)
		l.lg().Error().Str("file", s.name).Int64("offset", ref.off).Uint64("first", g.First).
			Uint64("last", g.Last).Uint32("records", ref.count).Msg("segment: corrupt chunk found by read; records lost")
		return nil, fmt.Errorf("%w: %w: %s at %d", ErrLost, ErrCorrupt, s.name, ref.off)
	}
	p.first, p.count, p.transient, p.body, p.closed = h.first, h.count, h.transient, nil, true
	l.cachePutLocked(p)
	l.stats.Decodes++
	return p, nil
}

func (l *Log) addGap(g Gap) {
	l.gaps = append(l.gaps, g)
}

// ReleaseIdle drops the read cache and spare buffers of a log that was not
// appended to or read since the previous call. It returns how many bytes of
// buffers it let go, and whether the log was used since the previous call
// (then it keeps them). The store calls it periodically, so an idle queue
// holds almost no memory.
func (l *Log) ReleaseIdle() (released int, used bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.touched {
		l.touched = false
		return 0, true
	}
	if len(l.cache) == 0 && l.wbuf == nil && len(l.pend) == 0 && len(l.free) == 0 {
		return 0, false
	}
	n := l.cacheBytes
	for _, p := range l.free {
		n += p.memSize()
	}
	l.cache, l.cacheBytes, l.free = nil, 0, nil
	if l.wbuf != nil {
		n += cap(l.wbuf)
		putBuf(l.wbuf)
		l.wbuf = nil
	}
	if len(l.pend) == 1 && l.pend[0].count == 0 {
		l.pend = nil
	}
	return n, false
}

// Skip tells a log with Sync that the records seqs were acknowledged. A
// large record among them that is still pending (appended since the last
// flush) is then not written: the flush writes in its place a stub, a
// non-persistent record with no body, which recovery drops like any
// non-persistent record from before a restart. So a large message that
// its consumer acknowledges before the write costs no disk bandwidth,
// and it is confirmed by the same round as before. Skip costs one atomic
// load when no large record is pending.
func (l *Log) Skip(seqs ...uint64) {
	if l.held.Load() == 0 {
		return
	}
	l.mu.Lock()
	for _, seq := range seqs {
		if p := findPiece(l.pend, seq); p != nil && p.body != nil {
			p.skip = true
		}
	}
	if w := l.holdWake; w != nil {
		select {
		case w <- struct{}{}: // a round waits for acks: it looks again
		default:
		}
	}
	l.mu.Unlock()
}

// holdFor reports how long the Syncer's round should wait, at most hold,
// so that every large record pending now, handed out to a consumer and
// not yet acknowledged has been pending for hold before it is written; and
// the sequence its round is to stop at, records appended meanwhile being
// the next round's. Only records consumers take are waited for
// (awaitedLocked).
func (l *Log) holdFor(hold time.Duration) (time.Duration, uint64) {
	if l.held.Load() == 0 {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var last int64 // the latest end of a record's hold
	for _, p := range l.pend {
		if l.awaitedLocked(p, hold) {
			last = max(last, p.at+int64(pieceHold(p, hold)))
		}
	}
	wait := time.Duration(last - time.Now().UnixNano())
	if last == 0 || wait <= 0 {
		return 0, 0
	}
	return min(wait, maxHoldFactor*hold), l.nextSeq
}

// maxHoldFactor bounds a record's hold, in multiples of the Syncer's.
const maxHoldFactor = 64

// pieceHold is how long the large record p is held: hold for each MiB of
// its body begun (taking and acknowledging 16 MiB takes longer than 1),
// at most maxHoldFactor times hold.
func pieceHold(p *piece, hold time.Duration) time.Duration {
	return hold * time.Duration(min(max(1, (len(p.body)+1<<20-1)>>20), maxHoldFactor))
}

// awaitedLocked reports whether the hold waits for the pending piece p: a
// large record not acknowledged, appended while consumers were taking the
// log's large records (lastOut within its hold before it) or handed out
// since (which sets lastOut past it). A log nobody consumes is not held.
func (l *Log) awaitedLocked(p *piece, hold time.Duration) bool {
	return p.body != nil && !p.skip && l.lastOut >= p.at-int64(pieceHold(p, hold))
}

// holdsUnacked reports whether a large record below limit is pending and
// awaited (see awaitedLocked).
func (l *Log) holdsUnacked(limit uint64, hold time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.pend {
		if p.first >= limit {
			break
		}
		if l.awaitedLocked(p, hold) {
			return true
		}
	}
	return false
}

// setHoldWake sets (or clears, nil) the channel Skip signals while a
// Syncer's round waits for this log's acks.
func (l *Log) setHoldWake(w chan struct{}) {
	l.mu.Lock()
	l.holdWake = w
	l.mu.Unlock()
}

// setFlushLimit sets (seq > 0) or clears (0) the sequence flushes stop at.
func (l *Log) setFlushLimit(seq uint64) {
	l.mu.Lock()
	l.flushLimit = seq
	l.mu.Unlock()
}

// stubPiece returns the stub written in place of the large record p: the
// same sequence and timestamp, non-persistent, nothing else.
func stubPiece(p *piece) *piece {
	r := Record{Timestamp: p.ts0}
	n := recordBodySize(&r, r.Timestamp)
	return &piece{first: p.first, count: 1, transient: 1, ts0: p.ts0, closed: true,
		raw: appendRecord(make([]byte, 0, n+binary.MaxVarintLen64), &r, r.Timestamp, n), offs: []uint32{0}}
}

// Discard drops the records below seq that are still only in memory
// (never written), for a log with Sync false whose records below seq are
// all acknowledged: a transient queue whose consumers keep up never writes
// a file.
func (l *Log) Discard(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.Sync || l.failErr != nil {
		return
	}
	i := 0
	for ; i < len(l.pend) && l.pend[i].end() <= seq; i++ {
		l.pendBytes -= l.pend[i].rawLen()
		l.writtenNext = max(l.writtenNext, l.pend[i].end())
		l.durableNext = max(l.durableNext, l.writtenNext)
		l.pend[i] = nil
	}
	if i == len(l.pend) {
		l.pend = nil
	} else {
		l.pend = l.pend[i:]
	}
}

// ---- reclaiming ----

// RemoveBelow deletes every segment whose records are all below seq, the
// active one included: a fully acknowledged log holds no file (its
// directory goes too; the next append creates them again). It returns how
// many segment files were removed.
func (l *Log) RemoveBelow(seq uint64) (int, error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	var gone []*seg
	for len(l.segs) > 0 {
		s := l.segs[0]
		end := s.end()
		if len(l.segs) > 1 {
			end = l.segs[1].base
		} else if s.dirty || l.failErr != nil {
			break // a failing active segment is kept until recovered
		}
		if end > seq {
			break
		}
		gone = append(gone, s)
		l.segs[0] = nil
		l.segs = l.segs[1:]
	}
	if len(gone) == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	if len(l.segs) == 0 {
		l.segs, l.active = nil, nil
		// Everything written is acked and gone: nothing left to sync.
		end := gone[len(gone)-1].end()
		l.writtenNext = max(l.writtenNext, end)
		l.advanceDurableLocked(end)
		for len(l.unsynced) > 0 && l.unsynced[0].end() <= end {
			l.unsynced = l.unsynced[1:]
		}
	}
	floor := l.firstSeqLocked()
	for i := 0; i < len(l.cache); {
		if l.cache[i].end() <= floor {
			l.dropCacheLocked(i)
			continue
		}
		i++
	}
	kept := l.gaps[:0]
	for _, g := range l.gaps {
		if g.Last >= floor {
			kept = append(kept, g)
		}
	}
	l.gaps = kept
	var spare *seg
	removeDir := false
	if len(l.segs) == 0 && len(l.pend) == 0 && len(l.unsynced) == 0 && l.failErr == nil {
		spare, l.spare = l.spare, nil
		removeDir = l.dirExists
		l.dirExists, l.dirNew = false, false
	}
	l.mu.Unlock()

	if spare != nil {
		gone = append(gone, spare)
	}
	removed := 0
	var firstErr error
	for _, s := range gone {
		l.files.forget(s.h)
		path := s.name
		if s.tmp {
			path = s.h.path
		}
		// A file already gone (the whole log was removed meanwhile) counts
		// as removed; other failures are reported, and the rest still go.
		if err := l.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("segment: remove %s: %w", path, err)
			}
			continue
		}
		if s != spare {
			removed++
		}
	}
	if removeDir && firstErr == nil {
		if err := l.fs.Remove(l.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Not empty (a stray file) or failing: keep it.
			l.mu.Lock()
			l.dirExists = true
			l.mu.Unlock()
		}
		if l.opts.Sync {
			if err := syncDirPath(l.fs, l.fs.PathDir(l.dir)); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		return removed, firstErr
	}
	if firstErr != nil {
		return removed, firstErr
	}
	if l.opts.Sync {
		if err := l.syncDir(); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// ---- closing ----

// Close writes and (with Sync) fsyncs pending records, then closes the
// files.
func (l *Log) Close() error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.mu.Lock()
	if l.closed {
		defer l.mu.Unlock()
		return l.closeErr
	}
	failing := l.failErr != nil
	l.mu.Unlock()
	var err error
	if failing {
		if err = l.recover(); err == nil {
			l.mu.Lock()
			err = l.failErr
			l.mu.Unlock()
		}
	}
	if err == nil {
		err = l.flushLocked(true)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.closeErr = err
	l.closeFilesLocked()
	l.cache, l.pend, l.unsynced = nil, nil, nil
	if l.wbuf != nil {
		putBuf(l.wbuf)
		l.wbuf = nil
	}
	return err
}

// closeFilesLocked releases every file of the log from the cache.
func (l *Log) closeFilesLocked() {
	for _, s := range l.segs {
		l.files.forget(s.h)
	}
	if l.spare != nil {
		l.files.forget(l.spare.h)
	}
}

// DeletedSuffix marks a log directory being deleted: Remove renames the
// directory with it first, so that a crash in the middle leaves a name that
// says the data is to go.
const DeletedSuffix = ".deleted"

// Remove closes the log without writing what is pending and deletes its
// directory: renamed to <dir>.deleted (and the parent synced) first, then
// removed. An error that wraps ErrNotRemoved means the directory may still
// be found under its name; any other means only the removal of the renamed
// directory failed (Open removes those).
func (l *Log) Remove() error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.closeErr = ErrClosed
		l.closeFilesLocked()
		l.cache, l.pend, l.unsynced = nil, nil, nil
	}
	l.mu.Unlock()
	dir := l.dir
	if _, err := l.fs.Stat(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: stat %s: %w", ErrNotRemoved, dir, err)
	} else if err == nil {
		gone := dir + DeletedSuffix
		if err := l.fs.Rename(dir, gone); err != nil {
			return fmt.Errorf("%w: rename %s: %w", ErrNotRemoved, dir, err)
		}
		if l.opts.Sync {
			if err := syncDirPath(l.fs, l.fs.PathDir(dir)); err != nil {
				return fmt.Errorf("%w: %w", ErrNotRemoved, err)
			}
		}
		dir = gone
	}
	if err := l.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("segment: remove %s: %w", dir, err)
	}
	return nil
}

// SetIdentity sets the identity written into the segment files created
// from now on.
func (l *Log) SetIdentity(identity []byte) {
	l.mu.Lock()
	l.opts.Identity = identity
	l.mu.Unlock()
}

func (l *Log) syncDir() error { return syncDirPath(l.fs, l.dir) }

func syncDirPath(fs vfs.FS, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("segment: open dir %s: %w", dir, err)
	}
	err = d.Sync()
	cerr := d.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: sync dir %s: %w", dir, err)
	}
	return nil
}
