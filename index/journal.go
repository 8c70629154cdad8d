package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The definitions journal is a second, independent record of every
// definition the index holds (vhosts, users, permissions, exchanges,
// queues, bindings; not the log states, which the segments rebuild): each
// change is appended as the same key/value operation applied to Pebble,
// and fsynced before Pebble is written. It lives outside the index
// directory, so that an index lost or damaged can be rebuilt from it
// (Rebuild). When it has grown to twice the size of its last snapshot it
// is rewritten as a snapshot of the current definitions (write to .tmp,
// fsync, rename, fsync the directory).
//
//	file    := header record*
//	header  := "WDEFJRNL" version:u8 (= 1) reserved:u8[7]
//	record  := length:u32 crc32c(payload):u32 payload
//	payload := op:u8 uvarint(len) key uvarint(len) value
//
// op is 'S' (set key to value), 'D' (delete key) or 'R' (delete the keys
// in [key, value)). Integers are little endian. Replay stops at the first
// record whose length or CRC is invalid (a torn append).
const (
	journalMagic   = "WDEFJRNL"
	journalVersion = 1
	journalHeader  = 16
	// maxJournalRecord bounds one record's length before it is trusted.
	maxJournalRecord = 64 << 20
	// minCompact is the journal size below which it is never rewritten.
	minCompact = 1 << 20
)

type jop struct {
	op         byte
	key, value []byte
}

// isDefinition reports whether key belongs to the journaled kinds.
func isDefinition(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	switch key[0] {
	case kindVHost, kindUser, kindPermission, kindExchange, kindQueue, kindBinding,
		kindPolicy, kindParameter, kindGlobal:
		return true
	}
	return false
}

// journal is the open definitions journal. Its mutex is held across a
// journal append and the matching Pebble commit, so that a compaction
// sees Pebble and the journal agree.
type journal struct {
	fs       vfs.FS
	path     string
	f        vfs.File
	size     int64
	snapSize int64
}

func appendJournalRecords(dst []byte, ops []jop) []byte {
	for _, o := range ops {
		if !isDefinition(o.key) {
			continue
		}
		start := len(dst)
		dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
		dst = append(dst, o.op)
		dst = binary.AppendUvarint(dst, uint64(len(o.key)))
		dst = append(dst, o.key...)
		dst = binary.AppendUvarint(dst, uint64(len(o.value)))
		dst = append(dst, o.value...)
		payload := dst[start+8:]
		binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	}
	return dst
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func journalHeaderBytes() []byte {
	h := make([]byte, journalHeader)
	copy(h, journalMagic)
	h[8] = journalVersion
	return h
}

// readJournal calls fn for every valid record of the journal at path and
// returns the offset where the valid records end and whether a damaged or
// torn record was found there.
func readJournal(fs vfs.FS, path string, fn func(jop) error) (end int64, torn bool, err error) {
	f, err := fs.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	size := st.Size()
	data := make([]byte, size)
	if n, err := f.ReadAt(data, 0); err != nil && err != io.EOF {
		return 0, false, fmt.Errorf("index: read journal %s: %w", path, err)
	} else {
		data = data[:n]
	}
	if len(data) < journalHeader || string(data[:8]) != journalMagic || data[8] != journalVersion {
		return 0, true, fmt.Errorf("%w: journal %s has no valid header", ErrCorrupt, path)
	}
	off := int64(journalHeader)
	for off < int64(len(data)) {
		b := data[off:]
		if len(b) < 8 {
			return off, true, nil
		}
		n := binary.LittleEndian.Uint32(b)
		if n > maxJournalRecord || int64(n) > int64(len(b)-8) {
			return off, true, nil
		}
		payload := b[8 : 8+n]
		if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
			return off, true, nil
		}
		o, ok := decodeJop(payload)
		if !ok {
			return off, true, nil
		}
		if err := fn(o); err != nil {
			return off, false, err
		}
		off += 8 + int64(n)
	}
	return off, false, nil
}

func decodeJop(p []byte) (jop, bool) {
	if len(p) < 1 {
		return jop{}, false
	}
	o := jop{op: p[0]}
	p = p[1:]
	kl, k := binary.Uvarint(p)
	if k <= 0 || kl > uint64(len(p)-k) {
		return jop{}, false
	}
	o.key = p[k : k+int(kl)]
	p = p[k+int(kl):]
	vl, k := binary.Uvarint(p)
	if k <= 0 || vl != uint64(len(p)-k) {
		return jop{}, false
	}
	o.value = p[k:]
	switch o.op {
	case 'S', 'D', 'R':
		return o, true
	}
	return jop{}, false
}

// openJournal opens the journal for appending, cutting a torn tail. If it
// does not exist, ok is false and nothing is created.
func openJournal(fs vfs.FS, path string) (*journal, bool, error) {
	end, torn, err := readJournal(fs, path, func(jop) error { return nil })
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, true, fmt.Errorf("index: open journal %s: %w", path, err)
	}
	if torn {
		if err := truncate(f, end); err != nil {
			f.Close()
			return nil, true, fmt.Errorf("index: cut torn tail of journal %s: %w", path, err)
		}
	}
	return &journal{fs: fs, path: path, f: f, size: end, snapSize: end}, true, nil
}

// append writes records at the end of the journal and fsyncs them. On
// failure the journal is cut back, so a later append does not follow
// garbage.
func (j *journal) append(ops []jop) error {
	buf := appendJournalRecords(nil, ops)
	if len(buf) == 0 {
		return nil
	}
	if _, err := j.f.WriteAt(buf, j.size); err != nil {
		truncate(j.f, j.size)
		return fmt.Errorf("index: write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		truncate(j.f, j.size)
		return fmt.Errorf("index: sync journal: %w", err)
	}
	j.size += int64(len(buf))
	return nil
}

// writeSnapshot writes a journal holding ops as its records to path
// (through path.tmp, fsynced, renamed, directory fsynced) and returns its
// size.
func writeSnapshot(fs vfs.FS, path string, ops []jop) (int64, error) {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, fmt.Errorf("index: create %s: %w", tmp, err)
	}
	buf := appendJournalRecords(journalHeaderBytes(), ops)
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(fs, fs.PathDir(path))
	}
	if err != nil {
		fs.Remove(tmp)
		return 0, fmt.Errorf("index: write journal snapshot %s: %w", path, err)
	}
	return int64(len(buf)), nil
}

func syncDir(fs vfs.FS, dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// truncate cuts f to size (ftruncate where the file has a descriptor,
// zero-filling otherwise; readJournal stops at zeroes).
func truncate(f vfs.File, size int64) error {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		return t.Truncate(size)
	}
	if fd := f.Fd(); fd != vfs.InvalidFd {
		return syscall.Ftruncate(int(fd), size)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if n := st.Size() - size; n > 0 {
		_, err = f.WriteAt(make([]byte, n), size)
	}
	return err
}
