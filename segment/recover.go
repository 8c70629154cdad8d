package segment

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Open opens the log in dir, recovering it as described in the package
// documentation. A directory that does not exist is an empty log: no file
// is created until records are written. Open fails only on I/O errors
// reading the log, never on corrupt data; a repair it cannot write (a full
// disk) is deferred and reported in Recovery.Deferred, the log then failing
// writes until a Syncer retry completes it.
func Open(fs vfs.FS, dir string, opts Options) (*Log, error) {
	opts.setDefaults()
	if opts.Codec > CodecZstd {
		return nil, fmt.Errorf("segment: unknown codec %d", opts.Codec)
	}
	files := opts.Files
	if files == nil {
		files = NewFiles(DefaultMaxOpenFiles)
	}
	l := &Log{fs: fs, dir: dir, opts: opts, files: files}
	l.target = opts.MinSegmentSize
	names, err := fs.List(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("segment: list %s: %w", dir, err)
		}
		names = nil
	} else {
		l.dirExists = true
	}
	var bases []uint64
	for _, name := range names {
		if strings.HasSuffix(name, ".tmp") {
			// A prepared file, or one written to but never renamed: its
			// records were never reported durable.
			path := fs.PathJoin(dir, name)
			if st, err := fs.Stat(path); err == nil && st.Size() > 0 {
				l.lg().Warn().Str("file", name).Int64("bytes", st.Size()).
					Msg("segment: removing a file whose records were never made durable")
			}
			if err := fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				l.deferLocked(fmt.Errorf("segment: remove %s: %w", name, err))
			}
			continue
		}
		if !strings.HasSuffix(name, segmentSuffix) || len(name) != seqDigits+len(segmentSuffix) {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil || base == 0 {
			l.lg().Warn().Str("file", name).Msg("segment: ignoring badly named file")
			continue
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	l.nextSeq = opts.NextSeq
	for i, base := range bases {
		var nextBase uint64
		if i+1 < len(bases) {
			nextBase = bases[i+1]
		}
		s, end, err := l.recoverSegment(base, nextBase)
		if err != nil {
			l.closeFilesLocked()
			return nil, err
		}
		if s == nil {
			continue // an empty last file was removed
		}
		l.segs = append(l.segs, s)
		l.nextSeq = end
	}
	if n := len(l.segs); n > 0 {
		l.active = l.segs[n-1]
		var live int64
		for _, s := range l.segs[:n-1] {
			live += s.size
		}
		l.target = min(max(2*live, opts.MinSegmentSize, l.active.size), opts.SegmentSize)
	}
	l.writtenNext, l.durableNext = l.nextSeq, l.nextSeq
	l.rec.Segments = len(l.segs)
	l.rec.Gaps = append([]Gap(nil), l.gaps...)
	if len(l.rec.Gaps) > 0 || len(l.rec.Truncated) > 0 {
		var lost uint64
		for _, g := range l.rec.Gaps {
			lost += g.Last - g.First + 1
		}
		var bytes int64
		var torn uint32
		for _, t := range l.rec.Truncated {
			bytes += t.Bytes
			torn += t.Records
		}
		l.lg().Error().Int("gaps", len(l.rec.Gaps)).Uint64("records_lost", lost).
			Int("truncated", len(l.rec.Truncated)).Int64("bytes_truncated", bytes).
			Uint32("torn_records", torn).Msg("segment: recovered with data loss")
	}
	return l, nil
}

// deferLocked records a repair that could not be written: the log fails
// writes until a retry completes it.
func (l *Log) deferLocked(err error) {
	if l.rec.Deferred == nil {
		l.rec.Deferred = err
	}
	l.failLocked(err, nil)
}

// recoverSegment walks one segment file and returns it with the sequence
// following its last valid record. nextBase is 0 for the last segment.
func (l *Log) recoverSegment(base, nextBase uint64) (*seg, uint64, error) {
	last := nextBase == 0
	name := l.fs.PathJoin(l.dir, segName(base))
	s := &seg{base: base, name: name, h: &handle{fs: l.fs, path: name}}
	// The last segment is opened for writing when it can be, so that a
	// repair can cut its tail; a read-only file system still reads it.
	f, err := l.files.acquire(s.h, last)
	if err != nil && last {
		f, err = l.files.acquire(s.h, false)
	}
	if err != nil {
		return nil, 0, err
	}
	pinned := true
	defer func() {
		if pinned {
			l.files.release(s.h)
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("segment: stat %s: %w", name, err)
	}
	fileSize := st.Size()
	fh, headerOK, err := readFileHeader(f, fileSize)
	if err != nil {
		return nil, 0, fmt.Errorf("segment: read %s: %w", name, err)
	}
	headerOK = headerOK && fh.base == base
	if !headerOK {
		l.lg().Error().Str("file", name).Int64("size", fileSize).Msg("segment: bad file header")
		fh.size = fileHeaderSize
	} else if fh.identity != nil {
		l.rec.Identity = fh.identity
	}
	s.hdr = fh.size
	off := fh.size
	expected := base
	var buf []byte
	for off < fileSize {
		h, ok, err := readChunk(f, off, fileSize, last, &buf)
		if err != nil {
			return nil, 0, fmt.Errorf("segment: read %s at %d: %w", name, off, err)
		}
		if ok && h.first >= expected {
			if h.first > expected {
				g := Gap{First: expected, Last: h.first - 1, File: name, Offset: off}
				l.lg().Error().Str("file", name).Int64("offset", off).Uint64("first", g.First).
					Uint64("last", g.Last).Msg("segment: records missing before chunk")
				l.addGap(g)
			}
			s.chunks = append(s.chunks, chunkRef{first: h.first, off: off, count: h.count,
				size: uint32(chunkHeaderSize + h.storedLen), transient: h.transient, v1: h.version < chunkVersion})
			l.rec.Chunks++
			expected = h.first + uint64(h.count)
			off += int64(chunkHeaderSize + h.storedLen)
			continue
		}
		next, nh, found, err := scanChunk(f, off+1, fileSize, expected)
		if err != nil {
			return nil, 0, fmt.Errorf("segment: scan %s at %d: %w", name, off, err)
		}
		if found {
			g := Gap{First: expected, Last: nh.first - 1, File: name, Offset: off, Bytes: next - off}
			l.lg().Error().Str("file", name).Int64("offset", off).Int64("bytes", next-off).
				Uint64("first", g.First).Uint64("last", g.Last).Msg("segment: skipped corrupt chunk")
			if nh.first > expected {
				l.addGap(g)
				expected = nh.first
			}
			off = next
			continue
		}
		if !last {
			g := Gap{First: expected, Last: nextBase - 1, File: name, Offset: off, Bytes: fileSize - off}
			l.lg().Error().Str("file", name).Int64("offset", off).Int64("bytes", fileSize-off).
				Msg("segment: corrupt segment tail")
			if nextBase > expected {
				l.addGap(g)
			}
		}
		break
	}
	if !last && nextBase > expected && (len(l.gaps) == 0 || l.gaps[len(l.gaps)-1].Last < nextBase-1) {
		g := Gap{First: expected, Last: nextBase - 1, File: name, Offset: off}
		l.lg().Error().Str("file", name).Uint64("first", g.First).Uint64("last", g.Last).
			Msg("segment: records missing between segments (a segment file deleted?)")
		l.addGap(g)
	}
	s.size, s.synced = off, off
	if last && !headerOK && len(s.chunks) == 0 {
		// Nothing readable in it (a file cut before its header was
		// written, or destroyed): keep a copy and remove it.
		t := Truncation{File: name, Bytes: fileSize}
		if fileSize > 0 {
			data := make([]byte, fileSize)
			if n, err := f.ReadAt(data, 0); err == nil || err == io.EOF {
				if err := writeFileSynced(l.fs, name+".broken", data[:n]); err == nil {
					t.Broken = name + ".broken"
				}
			}
		}
		l.rec.Truncated = append(l.rec.Truncated, t)
		l.lg().Error().Str("file", name).Str("broken", t.Broken).Int64("bytes", fileSize).
			Msg("segment: removed a last segment with no valid header or chunk")
		l.files.release(s.h)
		pinned = false
		l.files.forget(s.h)
		if err := l.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.deferLocked(fmt.Errorf("segment: remove %s: %w", name, err))
		}
		if l.nextSeq > base {
			return nil, l.nextSeq, nil
		}
		return nil, base, nil
	}
	if last && (!headerOK || off != fileSize) {
		l.repairLast(s, f, headerOK, fileSize)
	}
	return s, expected, nil
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

// repairLast cuts the invalid tail off the last segment, in place: the
// bytes cut are first saved to <name>.broken when they are not all zero
// (zeroes are space a crash left unwritten, or a previous cut on a file
// system without ftruncate), then the file is truncated to its valid prefix
// and fdatasynced. Nothing is copied, so a repair needs no free space
// beyond the saved tail; if even the cut fails it is deferred.
func (l *Log) repairLast(s *seg, f vfs.File, headerOK bool, fileSize int64) {
	if !headerOK {
		// The chunks found stay readable, but nothing more is written to
		// a file whose header is damaged: the next write starts a new one.
		s.readOnly = true
		l.wantSpare = true
		return
	}
	tail := make([]byte, fileSize-s.size)
	if n, err := f.ReadAt(tail, s.size); err != nil && err != io.EOF {
		l.deferLocked(fmt.Errorf("segment: read tail of %s: %w", s.name, err))
		return
	} else {
		tail = tail[:n]
	}
	if len(bytes.Trim(tail, "\x00")) == 0 {
		if err := l.cutTail(s); err != nil {
			l.deferLocked(err)
		}
		return
	}
	t := Truncation{File: s.name, Offset: s.size, Bytes: int64(len(tail))}
	if h, ok := parseChunkHeader(tail); ok {
		t.Records = h.count
	}
	broken := s.name + ".broken"
	if err := writeFileSynced(l.fs, broken, tail); err != nil {
		l.lg().Error().Err(err).Str("file", s.name).Int64("bytes", t.Bytes).
			Msg("segment: could not keep a copy of the torn tail")
	} else {
		t.Broken = broken
	}
	l.rec.Truncated = append(l.rec.Truncated, t)
	l.lg().Error().Str("file", s.name).Str("broken", t.Broken).Int64("offset", t.Offset).
		Int64("bytes", t.Bytes).Uint32("records", t.Records).Msg("segment: truncated torn tail")
	if err := l.cutTail(s); err != nil {
		l.deferLocked(err)
	}
}

// cutTail truncates s to its size and syncs the cut.
func (l *Log) cutTail(s *seg) error {
	f, err := l.files.acquire(s.h, true)
	if err != nil {
		s.dirty = true
		return err
	}
	defer l.files.release(s.h)
	if err := truncateFile(f, s.size); err != nil {
		s.dirty = true
		return fmt.Errorf("segment: truncate %s to %d: %w", s.name, s.size, err)
	}
	if l.opts.Sync {
		if err := f.SyncData(); err != nil {
			s.dirty = true
			return fmt.Errorf("segment: sync %s: %w", s.name, err)
		}
	}
	return nil
}

// writeFileSynced writes data to a new file and fsyncs it (file and
// directory).
func writeFileSynced(fs vfs.FS, name string, data []byte) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fs.Remove(name)
		return err
	}
	return syncDirPath(fs, fs.PathDir(name))
}
