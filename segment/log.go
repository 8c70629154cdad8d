package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// chunkRef is one entry of the in-memory sparse index: a chunk's first
// sequence and where it lives in its segment.
type chunkRef struct {
	first uint64
	off   int64
	count uint32
	size  uint32 // header + stored payload
	bad   bool   // failed its CRC when read
}

// seg is one segment file.
type seg struct {
	base   uint64
	name   string
	f      vfs.File // nil until opened for reading; read-write for the active one
	size   int64    // end of the last valid chunk
	chunks []chunkRef
}

// cachedChunk is a decoded chunk; raw is reused once the entry is evicted.
type cachedChunk struct {
	first uint64
	count uint32
	ts0   int64
	raw   []byte
	offs  []uint32
	lru   uint64
	valid bool
}

// Stats are a log's cumulative counters.
type Stats struct {
	// Chunks written since Open; RawBytes and StoredBytes are their raw
	// payload and on-disk (header + payload) sizes.
	Chunks, RawBytes, StoredBytes int64
	// Decodes counts chunks decoded for reads.
	Decodes int64
}

// Log is the append-only log of one queue directory. All methods are safe
// for concurrent use; one mutex serialises them (fdatasync runs outside it).
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options
	log  zerolog.Logger

	mu          sync.Mutex
	closed      bool
	closeErr    error
	err         error // sticky write or sync error
	segs        []*seg
	active      *seg
	nextSeq     uint64
	writtenNext uint64 // records below are written to files
	durableNext uint64 // records below are fsynced (written, when !Sync)

	pending      []byte // raw chunk encoding of unsealed records
	pendingOffs  []uint32
	pendingFirst uint64
	pendingTs0   int64

	wbuf []byte
	// rawStreak counts consecutive chunks that did not compress;
	// skipCompress is how many chunks to store raw without trying.
	rawStreak, skipCompress int
	rbuf                    []byte
	cache                   []*cachedChunk
	tick                    uint64
	gaps                    []Gap
	rec                     Recovery
	stats                   Stats
	view                    Record // scratch for View, so it does not allocate

	// Syncer bookkeeping, guarded by the Syncer's mutex or owned by its loop.
	syncDirty bool
	roundErr  error
}

func (o *Options) setDefaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize > MaxChunkSize {
		o.ChunkSize = MaxChunkSize
	}
	if o.CacheChunks <= 0 {
		o.CacheChunks = DefaultCacheChunks
	}
}

func segName(base uint64) string {
	s := strconv.FormatUint(base, 10)
	return strings.Repeat("0", seqDigits-len(s)) + s + segmentSuffix
}

// Open opens or creates the log in dir, recovering it as described in the
// package documentation. It fails only on I/O errors, never on corrupt data.
func Open(fs vfs.FS, dir string, opts Options) (*Log, error) {
	opts.setDefaults()
	if opts.Codec > CodecZstd {
		return nil, fmt.Errorf("segment: unknown codec %d", opts.Codec)
	}
	l := &Log{fs: fs, dir: dir, opts: opts, log: opts.Logger.With().Str("dir", dir).Logger()}
	_, statErr := fs.Stat(dir)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("segment: mkdir %s: %w", dir, err)
	}
	if statErr != nil && opts.Sync {
		// A new directory: make its entry durable before anything in it.
		if err := syncDirPath(fs, fs.PathDir(dir)); err != nil {
			return nil, err
		}
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("segment: list %s: %w", dir, err)
	}
	var bases []uint64
	for _, name := range names {
		if strings.HasSuffix(name, ".tmp") {
			if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("segment: remove %s: %w", name, err)
			}
			continue
		}
		if !strings.HasSuffix(name, segmentSuffix) || len(name) != seqDigits+len(segmentSuffix) {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil || base == 0 {
			l.log.Warn().Str("file", name).Msg("segment: ignoring badly named file")
			continue
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) == 0 {
		s, err := l.createSegment(1)
		if err != nil {
			return nil, err
		}
		l.segs = []*seg{s}
		l.nextSeq = 1
	}
	for i, base := range bases {
		var nextBase uint64
		if i+1 < len(bases) {
			nextBase = bases[i+1]
		}
		s, end, err := l.recoverSegment(base, nextBase)
		if err != nil {
			l.closeFiles()
			return nil, err
		}
		l.segs = append(l.segs, s)
		l.nextSeq = end
	}
	l.active = l.segs[len(l.segs)-1]
	l.writtenNext, l.durableNext, l.pendingFirst = l.nextSeq, l.nextSeq, l.nextSeq
	l.rec.Segments = len(l.segs)
	l.rec.Gaps = append([]Gap(nil), l.gaps...)
	if len(l.rec.Gaps) > 0 || len(l.rec.Truncated) > 0 {
		l.log.Warn().Int("gaps", len(l.rec.Gaps)).Int("truncated", len(l.rec.Truncated)).
			Msg("segment: recovered with data loss")
	}
	return l, nil
}

// recoverSegment walks one segment file and returns it with the sequence
// following its last valid record. nextBase is 0 for the last segment.
func (l *Log) recoverSegment(base, nextBase uint64) (*seg, uint64, error) {
	last := nextBase == 0
	name := l.fs.PathJoin(l.dir, segName(base))
	var f vfs.File
	var err error
	if last {
		f, err = l.fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	} else {
		f, err = l.fs.Open(name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("segment: open %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("segment: stat %s: %w", name, err)
	}
	fileSize := st.Size()
	s := &seg{base: base, name: name, f: f}
	hdr := make([]byte, fileHeaderSize)
	headerOK := false
	if n, _ := f.ReadAt(hdr, 0); n == fileHeaderSize {
		hb, ok := parseFileHeader(hdr)
		headerOK = ok && hb == base
	}
	if !headerOK {
		l.log.Error().Str("file", name).Int64("size", fileSize).Msg("segment: bad file header")
	}
	off := int64(fileHeaderSize)
	expected := base
	var buf []byte
	for off < fileSize {
		h, ok, err := readChunk(f, off, fileSize, last, &buf)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("segment: read %s at %d: %w", name, off, err)
		}
		if ok && h.first >= expected {
			if h.first > expected {
				l.addGap(Gap{First: expected, Last: h.first - 1, File: name, Offset: off})
			}
			s.chunks = append(s.chunks, chunkRef{first: h.first, off: off, count: h.count,
				size: uint32(chunkHeaderSize + h.storedLen)})
			l.rec.Chunks++
			expected = h.first + uint64(h.count)
			off += int64(chunkHeaderSize + h.storedLen)
			continue
		}
		next, nh, found, err := scanChunk(f, off+1, fileSize, expected)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("segment: scan %s at %d: %w", name, off, err)
		}
		if found {
			g := Gap{First: expected, Last: nh.first - 1, File: name, Offset: off, Bytes: next - off}
			l.log.Error().Str("file", name).Int64("offset", off).Int64("bytes", next-off).
				Uint64("first", g.First).Uint64("last", g.Last).Msg("segment: skipped corrupt chunk")
			if nh.first > expected {
				l.addGap(g)
			}
			off = next
			continue
		}
		if !last {
			g := Gap{First: expected, Last: nextBase - 1, File: name, Offset: off, Bytes: fileSize - off}
			l.log.Error().Str("file", name).Int64("offset", off).Int64("bytes", fileSize-off).
				Msg("segment: corrupt segment tail")
			if nextBase > expected {
				l.addGap(g)
			}
		}
		break
	}
	if !last && nextBase > expected && (len(l.gaps) == 0 || l.gaps[len(l.gaps)-1].Last < nextBase-1) {
		l.addGap(Gap{First: expected, Last: nextBase - 1, File: name, Offset: off})
	}
	s.size = off
	if last && (!headerOK || off != fileSize) {
		if err := l.repairLast(s, fileSize); err != nil {
			return nil, 0, err
		}
	}
	return s, expected, nil
}

func (l *Log) addGap(g Gap) {
	l.gaps = append(l.gaps, g)
}

// readChunk reads and validates the chunk at off. With full, the payload CRC
// is checked too. ok is false for invalid data; err is for I/O errors only.
func readChunk(f vfs.File, off, fileSize int64, full bool, buf *[]byte) (chunkHeader, bool, error) {
	var hb [chunkHeaderSize]byte
	if off+chunkHeaderSize > fileSize {
		return chunkHeader{}, false, nil
	}
	if _, err := f.ReadAt(hb[:], off); err != nil && err != io.EOF {
		return chunkHeader{}, false, err
	}
	h, ok := parseChunkHeader(hb[:])
	if !ok || off+chunkHeaderSize+int64(h.storedLen) > fileSize {
		return h, false, nil
	}
	if !full {
		return h, true, nil
	}
	if cap(*buf) < int(h.storedLen) {
		*buf = make([]byte, h.storedLen)
	}
	p := (*buf)[:h.storedLen]
	if _, err := f.ReadAt(p, off+chunkHeaderSize); err != nil && err != io.EOF {
		return h, false, err
	}
	return h, chunkCRC(hb[:], p) == h.crc, nil
}

// scanChunk looks for the next fully valid chunk at or after from.
func scanChunk(f vfs.File, from, fileSize int64, expected uint64) (int64, chunkHeader, bool, error) {
	if from >= fileSize {
		return 0, chunkHeader{}, false, nil
	}
	data := make([]byte, fileSize-from)
	if n, err := f.ReadAt(data, from); err != nil && err != io.EOF {
		return 0, chunkHeader{}, false, err
	} else {
		data = data[:n]
	}
	magic := []byte(chunkMagic)
	for i := 0; ; {
		j := bytes.Index(data[i:], magic)
		if j < 0 {
			return 0, chunkHeader{}, false, nil
		}
		p := i + j
		h, ok := parseChunkHeader(data[p:])
		if ok && h.first >= expected && p+chunkHeaderSize+int(h.storedLen) <= len(data) {
			payload := data[p+chunkHeaderSize : p+chunkHeaderSize+int(h.storedLen)]
			if chunkCRC(data[p:], payload) == h.crc {
				return from + int64(p), h, true, nil
			}
		}
		i = p + 1
	}
}

// repairLast keeps a .broken copy of the last segment and rewrites it with
// its valid prefix (and a fresh header).
func (l *Log) repairLast(s *seg, fileSize int64) error {
	broken := s.name + ".broken"
	if err := vfs.Copy(l.fs, s.name, broken); err != nil {
		return fmt.Errorf("segment: copy %s: %w", s.name, err)
	}
	tmp := s.name + ".tmp"
	nf, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("segment: create %s: %w", tmp, err)
	}
	buf := make([]byte, 1<<20)
	putFileHeader(buf, s.base)
	if _, err := nf.Write(buf[:fileHeaderSize]); err != nil {
		nf.Close()
		return fmt.Errorf("segment: write %s: %w", tmp, err)
	}
	for off := int64(fileHeaderSize); off < s.size; {
		n := int64(len(buf))
		if s.size-off < n {
			n = s.size - off
		}
		if _, err := s.f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			nf.Close()
			return fmt.Errorf("segment: read %s at %d: %w", s.name, off, err)
		}
		if _, err := nf.Write(buf[:n]); err != nil {
			nf.Close()
			return fmt.Errorf("segment: write %s: %w", tmp, err)
		}
		off += n
	}
	if err := nf.Sync(); err != nil {
		nf.Close()
		return fmt.Errorf("segment: sync %s: %w", tmp, err)
	}
	s.f.Close()
	s.f = nil
	if err := l.fs.Rename(tmp, s.name); err != nil {
		nf.Close()
		return fmt.Errorf("segment: rename %s: %w", tmp, err)
	}
	if err := l.syncDir(); err != nil {
		nf.Close()
		return err
	}
	s.f = nf
	dropped := fileSize - s.size
	if dropped < 0 {
		dropped = 0
	}
	t := Truncation{File: s.name, Broken: broken, Offset: min(s.size, fileSize), Bytes: dropped}
	l.rec.Truncated = append(l.rec.Truncated, t)
	l.log.Warn().Str("file", s.name).Str("broken", broken).Int64("offset", t.Offset).
		Int64("bytes", t.Bytes).Msg("segment: truncated torn tail")
	return nil
}

func (l *Log) syncDir() error { return syncDirPath(l.fs, l.dir) }

func syncDirPath(fs vfs.FS, dir string) error {
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

// createSegment makes a new segment file: write header to a .tmp, fsync,
// rename, fsync the directory.
func (l *Log) createSegment(base uint64) (*seg, error) {
	name := l.fs.PathJoin(l.dir, segName(base))
	tmp := name + ".tmp"
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("segment: create %s: %w", tmp, err)
	}
	var hdr [fileHeaderSize]byte
	putFileHeader(hdr[:], base)
	if _, err := f.Write(hdr[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("segment: write %s: %w", tmp, err)
	}
	if l.opts.Sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("segment: sync %s: %w", tmp, err)
		}
	}
	if err := l.fs.Rename(tmp, name); err != nil {
		f.Close()
		return nil, fmt.Errorf("segment: rename %s: %w", tmp, err)
	}
	if l.opts.Sync {
		if err := l.syncDir(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &seg{base: base, name: name, f: f, size: fileHeaderSize}, nil
}

// Append adds records with consecutive sequences to the pending buffer and
// returns the first one. Records' Seq fields are ignored. Append seals on
// its own when the pending buffer reaches Options.ChunkSize; otherwise
// records reach the file on Seal (usually a Syncer round). The batch is
// checked for size before any record is added.
func (l *Log) Append(recs ...Record) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(recs)
}

func (l *Log) appendLocked(recs []Record) (uint64, error) {
	if l.closed {
		return 0, ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	for i := range recs {
		if recordBodySize(&recs[i], 0)+2*binary.MaxVarintLen64 > MaxChunkSize {
			return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(recs[i].Body))
		}
	}
	first := l.nextSeq
	for i := range recs {
		r := &recs[i]
		delta := r.Timestamp
		if len(l.pendingOffs) > 0 {
			delta = r.Timestamp - l.pendingTs0
		}
		n := recordBodySize(r, delta)
		if len(l.pendingOffs) > 0 && len(l.pending)+uvarintLen(uint64(n))+n > l.opts.ChunkSize {
			if err := l.sealLocked(); err != nil {
				return 0, err
			}
			delta = r.Timestamp
			n = recordBodySize(r, delta)
		}
		if len(l.pendingOffs) == 0 {
			l.pendingFirst = l.nextSeq
			l.pendingTs0 = r.Timestamp
		}
		l.pendingOffs = append(l.pendingOffs, uint32(len(l.pending)))
		l.pending = appendRecord(l.pending, r, delta, n)
		l.nextSeq++
	}
	return first, nil
}

// Seal writes the pending records as one chunk (write(2), no fsync),
// rolling to a new segment first when the active one is full.
func (l *Log) Seal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.sealLocked()
}

func (l *Log) sealLocked() error {
	if l.err != nil {
		return l.err
	}
	if len(l.pendingOffs) == 0 {
		return nil
	}
	first, count := l.pendingFirst, uint32(len(l.pendingOffs))
	codec := l.opts.Codec
	if l.skipCompress > 0 {
		// Recent chunks did not compress: store raw without trying, and
		// try again after a while in case the data changed.
		codec = CodecNone
		l.skipCompress--
	}
	hdr, payload, err := encodeChunkParts(l.wbuf, l.pending, codec, first, count)
	if err != nil {
		return err
	}
	raw := storedRaw(payload, l.pending)
	switch {
	case codec == CodecNone:
	case raw:
		l.rawStreak = min(l.rawStreak+1, 6)
		l.skipCompress = 1 << l.rawStreak
	default:
		l.rawStreak = 0
	}
	// A compressed payload follows the header in wbuf; a raw one is the
	// pending buffer itself and is written after the header, not copied.
	l.wbuf = hdr[:cap(hdr)]
	size := len(hdr) + len(payload)
	if s := l.active; s.size > fileHeaderSize && s.size+int64(size) > l.opts.SegmentSize {
		if err := l.rollLocked(first); err != nil {
			return err
		}
	}
	s := l.active
	write := func(b []byte, off int64) error {
		if n, err := s.f.WriteAt(b, off); err != nil || n != len(b) {
			if err == nil {
				err = io.ErrShortWrite
			}
			l.err = fmt.Errorf("segment: write %s at %d: %w", s.name, off, err)
			return l.err
		}
		return nil
	}
	if raw {
		if err := write(hdr, s.size); err != nil {
			return err
		}
		if err := write(payload, s.size+int64(len(hdr))); err != nil {
			return err
		}
	} else if err := write(hdr[:size], s.size); err != nil {
		return err
	}
	s.chunks = append(s.chunks, chunkRef{first: first, off: s.size, count: count, size: uint32(size)})
	s.size += int64(size)
	l.stats.Chunks++
	l.stats.RawBytes += int64(len(l.pending))
	l.stats.StoredBytes += int64(size)
	l.writtenNext = first + uint64(count)
	if !l.opts.Sync {
		l.durableNext = l.writtenNext
	}
	if cap(l.pending) > 2*l.opts.ChunkSize {
		l.pending = nil
	}
	if cap(l.wbuf) > 4*l.opts.ChunkSize {
		l.wbuf = nil
	}
	l.pending = l.pending[:0]
	l.pendingOffs = l.pendingOffs[:0]
	l.pendingFirst = l.nextSeq
	return nil
}

// rollLocked makes a new active segment starting at base, fsyncing the old
// one first so that every segment but the last is durable.
func (l *Log) rollLocked(base uint64) error {
	old := l.active
	if l.opts.Sync && l.durableNext < l.writtenNext {
		if err := old.f.SyncData(); err != nil {
			l.err = fmt.Errorf("segment: sync %s: %w", old.name, err)
			return l.err
		}
		l.durableNext = l.writtenNext
	}
	s, err := l.createSegment(base)
	if err != nil {
		return err
	}
	l.segs = append(l.segs, s)
	l.active = s
	return nil
}

// Roll seals pending records and starts a new segment file, unless the
// active segment is empty.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.sealLocked(); err != nil {
		return err
	}
	if len(l.active.chunks) == 0 {
		return nil
	}
	return l.rollLocked(l.nextSeq)
}

// Sync fdatasyncs the records written so far (it does not seal). It is a
// no-op for a log opened with Sync false.
func (l *Log) Sync() error {
	l.mu.Lock()
	if l.err != nil {
		defer l.mu.Unlock()
		return l.err
	}
	if l.closed {
		defer l.mu.Unlock()
		return ErrClosed
	}
	target := l.writtenNext
	if !l.opts.Sync || l.durableNext >= target {
		l.mu.Unlock()
		return nil
	}
	f, name := l.active.f, l.active.name
	l.mu.Unlock()
	err := f.SyncData()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.durableNext >= target {
		return nil // a roll synced it meanwhile (and may have closed f)
	}
	if err != nil {
		if l.closed {
			return ErrClosed
		}
		l.err = fmt.Errorf("segment: sync %s: %w", name, err)
		return l.err
	}
	l.durableNext = target
	return nil
}

// Flush seals and syncs: everything appended so far is durable on return.
func (l *Log) Flush() error {
	if err := l.Seal(); err != nil {
		return err
	}
	return l.Sync()
}

// NextSeq returns the sequence the next appended record will get.
func (l *Log) NextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextSeq
}

// FirstSeq returns the lowest sequence still held (the base of the oldest
// segment); it equals NextSeq for an empty log.
func (l *Log) FirstSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].base
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

// Read returns a copy of the record with sequence seq: ErrNotFound outside
// [FirstSeq, NextSeq), an error wrapping ErrLost inside a Gap (and also
// ErrCorrupt when the corruption is found by this read). Unsealed records are
// served from the pending buffer.
func (l *Log) Read(seq uint64) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v recordView
	if err := l.findLocked(seq, &v); err != nil {
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
	if err := l.findLocked(seq, &v); err != nil {
		return err
	}
	r := &l.view
	*r = Record{Seq: seq, Timestamp: v.ts, Flags: v.flags,
		Exchange: bytesString(v.exchange), RoutingKey: bytesString(v.key),
		Props: v.props, Body: v.body}
	err := fn(r)
	*r = Record{}
	return err
}

// bytesString views b as a string; b must never be modified afterwards
// (Read) or the string must not outlive b's contents (View).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (l *Log) findLocked(seq uint64, v *recordView) error {
	if l.closed {
		return ErrClosed
	}
	if seq < l.segs[0].base || seq >= l.nextSeq {
		return fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	if len(l.pendingOffs) > 0 && seq >= l.pendingFirst {
		idx := seq - l.pendingFirst
		if !parseRecord(l.pending[l.pendingOffs[idx]:], v) {
			return fmt.Errorf("%w: pending record %d", ErrCorrupt, seq)
		}
		if idx > 0 {
			v.ts += l.pendingTs0
		}
		return nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > seq }) - 1
	s := l.segs[i]
	j := sort.Search(len(s.chunks), func(j int) bool {
		return s.chunks[j].first+uint64(s.chunks[j].count) > seq
	})
	if j == len(s.chunks) || s.chunks[j].first > seq {
		return fmt.Errorf("%w: %d in %s", ErrLost, seq, s.name)
	}
	ref := &s.chunks[j]
	if ref.bad {
		return fmt.Errorf("%w: %d in %s at %d", ErrLost, seq, s.name, ref.off)
	}
	c, err := l.loadChunkLocked(s, ref)
	if err != nil {
		return err
	}
	idx := seq - c.first
	if !parseRecord(c.raw[c.offs[idx]:], v) {
		return fmt.Errorf("%w: record %d in %s at %d", ErrCorrupt, seq, s.name, ref.off)
	}
	if idx > 0 {
		v.ts += c.ts0
	}
	return nil
}

func (l *Log) loadChunkLocked(s *seg, ref *chunkRef) (*cachedChunk, error) {
	l.tick++
	var victim *cachedChunk
	for _, c := range l.cache {
		if c.valid && c.first == ref.first {
			c.lru = l.tick
			return c, nil
		}
		if victim == nil || !c.valid || (victim.valid && c.lru < victim.lru) {
			victim = c
		}
	}
	if len(l.cache) < l.opts.CacheChunks {
		victim = &cachedChunk{}
		l.cache = append(l.cache, victim)
	}
	victim.valid = false
	if s.f == nil {
		f, err := l.fs.Open(s.name)
		if err != nil {
			return nil, fmt.Errorf("segment: open %s: %w", s.name, err)
		}
		s.f = f
	}
	if cap(l.rbuf) < int(ref.size) {
		l.rbuf = make([]byte, ref.size)
	}
	b := l.rbuf[:ref.size]
	if n, err := s.f.ReadAt(b, ref.off); n != len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("segment: read %s at %d: %w", s.name, ref.off, err)
	}
	h, ok := parseChunkHeader(b)
	if ok {
		ok = h.first == ref.first && h.count == ref.count &&
			chunkHeaderSize+h.storedLen == ref.size && chunkCRC(b, b[chunkHeaderSize:]) == h.crc
	}
	var raw []byte
	var err error
	if ok {
		raw, err = decodePayload(victim.raw, &h, b[chunkHeaderSize:])
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		ok = err == nil
	}
	if ok {
		victim.raw = raw
		victim.offs = victim.offs[:0]
		for p := 0; p < len(raw); {
			n := nextRecord(raw[p:])
			if n < 0 {
				ok = false
				break
			}
			victim.offs = append(victim.offs, uint32(p))
			p += n
		}
		ok = ok && len(victim.offs) == int(h.count)
		if ok {
			var v recordView
			ok = parseRecord(raw, &v)
			victim.ts0 = v.ts
		}
	}
	if !ok {
		ref.bad = true
		g := Gap{First: ref.first, Last: ref.first + uint64(ref.count) - 1, File: s.name, Offset: ref.off, Bytes: int64(ref.size)}
		l.addGap(g)
		l.log.Error().Str("file", s.name).Int64("offset", ref.off).Uint64("first", g.First).
			Uint64("last", g.Last).Msg("segment: corrupt chunk found by read")
		return nil, fmt.Errorf("%w: %w: %s at %d", ErrLost, ErrCorrupt, s.name, ref.off)
	}
	victim.first, victim.count, victim.lru, victim.valid = h.first, h.count, l.tick, true
	l.stats.Decodes++
	return victim, nil
}

// RemoveBelow deletes every segment whose records are all below seq, first
// sealing and rolling the active segment if it is entirely below seq, so a
// fully acknowledged log gets its disk back. It returns how many segment
// files were removed.
func (l *Log) RemoveBelow(seq uint64) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if seq >= l.nextSeq && (len(l.active.chunks) > 0 || len(l.pendingOffs) > 0) {
		if err := l.sealLocked(); err != nil {
			l.mu.Unlock()
			return 0, err
		}
		if err := l.rollLocked(l.nextSeq); err != nil {
			l.mu.Unlock()
			return 0, err
		}
	}
	// Detach the segments under the lock; delete their files after
	// releasing it, so appends and reads do not wait for the filesystem
	// (unlinking a 64 MiB file takes milliseconds).
	var gone []*seg
	for len(l.segs) > 1 && l.segs[1].base <= seq {
		gone = append(gone, l.segs[0])
		l.segs[0] = nil
		l.segs = l.segs[1:]
	}
	if len(gone) == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	floor := l.segs[0].base
	for _, c := range l.cache {
		if c.first < floor {
			c.valid = false
		}
	}
	kept := l.gaps[:0]
	for _, g := range l.gaps {
		if g.Last >= floor {
			kept = append(kept, g)
		}
	}
	l.gaps = kept
	l.mu.Unlock()

	for _, s := range gone {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
	removed := 0
	var firstErr error
	for _, s := range gone {
		// A file already gone (the whole log was removed meanwhile) counts
		// as removed; other failures are reported, and the rest still go.
		if err := l.fs.Remove(s.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("segment: remove %s: %w", s.name, err)
			}
			continue
		}
		removed++
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

// Close seals and (with Sync) fsyncs pending records, then closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	err := l.sealLocked()
	if err == nil && l.opts.Sync && l.durableNext < l.writtenNext {
		if err = l.active.f.SyncData(); err == nil {
			l.durableNext = l.writtenNext
		} else {
			err = fmt.Errorf("segment: sync %s: %w", l.active.name, err)
		}
	}
	l.closed = true
	l.closeErr = err
	l.closeFiles()
	l.cache = nil
	return err
}

func (l *Log) closeFiles() {
	for _, s := range l.segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
}

// Remove closes the log and deletes its directory.
func (l *Log) Remove() error {
	l.Close()
	if err := l.fs.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("segment: remove %s: %w", l.dir, err)
	}
	return nil
}
