package segment

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func TestAppendReadReopen(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Codec: codec, Sync: true, ChunkSize: 16 << 10, SegmentSize: 64 << 10}
			l := openT(t, vfs.Default, dir, opts)
			if l.NextSeq() != 1 || l.FirstSeq() != 1 {
				t.Fatalf("empty log: next %d first %d", l.NextSeq(), l.FirstSeq())
			}
			appendN(t, l, 1, 500, 700)
			// Unsealed (pending) records are readable.
			checkRead(t, l, 500, 700)
			checkRead(t, l, 1, 700)
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			if l.DurableNext() != 501 {
				t.Fatalf("DurableNext %d", l.DurableNext())
			}
			for seq := uint64(1); seq <= 500; seq++ {
				checkRead(t, l, seq, 700)
			}
			if _, err := l.Read(501); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Read past end: %v", err)
			}
			if _, err := l.Read(0); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Read(0): %v", err)
			}
			if n := len(l.Segments()); n < 2 {
				t.Fatalf("expected rolls, got %d segments", n)
			}
			st := l.Stats()
			if codec != CodecNone && st.StoredBytes >= st.RawBytes {
				t.Fatalf("%s did not compress: %+v", codec, st)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, vfs.Default, dir, opts)
			defer l.Close()
			rec := l.Recovery()
			if len(rec.Gaps) != 0 || len(rec.Truncated) != 0 || rec.Chunks == 0 {
				t.Fatalf("clean reopen reported %+v", rec)
			}
			if l.NextSeq() != 501 {
				t.Fatalf("NextSeq after reopen %d", l.NextSeq())
			}
			for seq := uint64(1); seq <= 500; seq++ {
				checkRead(t, l, seq, 700)
			}
			appendN(t, l, 501, 10, 100)
			checkRead(t, l, 505, 100)
			err := l.View(505, func(r *Record) error {
				if !sameRecord(*r, mkRec(505, 100)) {
					t.Fatal("View returned wrong record")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	l := openT(t, vfs.NewMem(), "q", Options{})
	defer l.Close()
	if _, err := l.Append(Record{Body: make([]byte, MaxChunkSize)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if l.NextSeq() != 1 {
		t.Fatalf("failed append consumed a sequence")
	}
	big := Record{Body: make([]byte, 5<<20)}
	if _, err := l.Append(big, big); err != nil {
		t.Fatal(err)
	}
	r, err := l.Read(2)
	if err != nil || len(r.Body) != 5<<20 {
		t.Fatalf("big record: %v", err)
	}
}

// TestChunkCacheDecodesOnce reads a sealed log in order and counts decodes.
func TestChunkCacheDecodesOnce(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{ChunkSize: 8 << 10}
	l := openT(t, fs, "q", opts)
	appendN(t, l, 1, 2000, 300)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, fs, "q", opts)
	defer l.Close()
	chunks := l.Recovery().Chunks
	if chunks < 50 {
		t.Fatalf("only %d chunks", chunks)
	}
	for seq := uint64(1); seq <= 2000; seq++ {
		checkRead(t, l, seq, 300)
	}
	if d := l.Stats().Decodes; d != int64(chunks) {
		t.Fatalf("sequential read decoded %d times for %d chunks", d, chunks)
	}
	// Re-reading a recent chunk hits the cache; an old one decodes again.
	checkRead(t, l, 1999, 300)
	checkRead(t, l, 1, 300)
	if d := l.Stats().Decodes; d != int64(chunks)+1 {
		t.Fatalf("decodes %d, want %d", d, chunks+1)
	}
}

func TestRemoveBelowReclaims(t *testing.T) {
	total := int64(1 << 30)
	if testing.Short() {
		total = 64 << 20
	}
	dir := t.TempDir()
	opts := Options{Codec: CodecNone, SegmentSize: 16 << 20}
	l := openT(t, vfs.Default, dir, opts)
	defer l.Close()
	body := make([]byte, 64<<10)
	var seq uint64
	for written := int64(0); written < total; written += int64(len(body)) {
		body[0], body[1] = byte(seq), byte(seq>>8)
		s, err := l.Append(Record{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		seq = s
		if seq%64 == 0 {
			// Ack everything up to half of what was appended so far.
			if _, err := l.RemoveBelow(seq / 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Seal(); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Segments()); n < 2 {
		t.Fatalf("expected several segments, have %d", n)
	}
	if _, err := l.RemoveBelow(l.NextSeq()); err != nil {
		t.Fatal(err)
	}
	var size int64
	var files int
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, _ := e.Info()
		size += fi.Size()
		files++
	}
	t.Logf("appended %d MiB in %d records; after RemoveBelow: %d files, %d bytes", total>>20, seq, files, size)
	if files != 0 || size != 0 {
		t.Fatalf("space not reclaimed: %d files, %d bytes", files, size)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory of a drained log still there: %v", err)
	}
	if l.FirstSeq() != l.NextSeq() {
		t.Fatalf("FirstSeq %d NextSeq %d", l.FirstSeq(), l.NextSeq())
	}
	// The log stays usable.
	s, err := l.Append(Record{Body: []byte("after")})
	if err != nil || s != seq+1 {
		t.Fatalf("append after drain: %d %v", s, err)
	}
	if r, err := l.Read(s); err != nil || string(r.Body) != "after" {
		t.Fatalf("read after drain: %v", err)
	}
}

func TestRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	l := openT(t, vfs.Default, dir, Options{})
	appendN(t, l, 1, 10, 10)
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir still there: %v", err)
	}
	if _, err := l.Append(mkRec(1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Remove: %v", err)
	}
}

// TestOpenIOError: I/O errors (not corruption) make Open fail.
func TestOpenIOError(t *testing.T) {
	mem := vfs.NewMem()
	l := openT(t, mem, "q", Options{})
	appendN(t, l, 1, 10, 10)
	l.Close()
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileReadAt {
			return errorfs.ErrInjected
		}
		return nil
	})
	if _, err := Open(errorfs.Wrap(mem, inj), "q", Options{}); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Open with failing reads: %v", err)
	}
}

// TestSyncErrorRetried: a failed fdatasync puts the log in the failing
// state: its waiter is not called (neither acked nor failed), new appends
// are refused with ErrFailing, and once the disk works again a retry
// writes the records again and calls the waiter with success; the log
// accepts appends again and everything reads back after a reopen.
func TestSyncErrorRetried(t *testing.T) {
	mem, fs, fail := syncFailFS()
	l := openT(t, fs, "q", Options{Sync: true})
	s := NewSyncer(SyncerOptions{RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	errc := make(chan error, 1)
	if _, err := s.AppendDurable(l, []Record{mkRec(1, 10)}, func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("healthy sync: %v", err)
	}
	fail.On()
	if _, err := s.AppendDurable(l, []Record{mkRec(2, 10)}, func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		t.Fatalf("waiter called while the disk fails: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The failed round may not have run yet on a busy machine: wait for it.
	for deadline := time.Now().Add(10 * time.Second); l.Failing() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the log never entered the failing state")
		}
	}
	if _, err := l.Append(mkRec(3, 10)); !errors.Is(err, ErrFailing) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("append to a failing log: %v", err)
	}
	checkRead(t, l, 2, 10) // accepted records stay readable
	fail.Off()
	if err := <-errc; err != nil {
		t.Fatalf("waiter after the disk healed: %v", err)
	}
	if got, err := s.AppendDurable(l, []Record{mkRec(3, 10)}, func(err error) { errc <- err }); err != nil || got != 3 {
		t.Fatalf("append after heal: %d %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, mem, "q", Options{Sync: true})
	defer l.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		checkRead(t, l, seq, 10)
	}
	if l.NextSeq() != 4 {
		t.Fatalf("NextSeq %d after reopen", l.NextSeq())
	}
}

// TestLargeOwnedRecords: owned bodies of LargeBody bytes and more are
// written as chunks of their own from the caller's buffer: incompressible
// ones stored raw after a sample, compressible ones compressed; all read
// back before and after a reopen, between small records.
func TestLargeOwnedRecords(t *testing.T) {
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			fs := vfs.NewMem()
			opts := Options{Sync: true, Codec: codec}
			l := openT(t, fs, "q", opts)
			random := randomPool(1, 1<<20)[0]
			json := jsonBody(7, 256<<10)
			recs := []Record{
				mkRec(1, 100),
				{Flags: FlagPersistent, Body: random, Owned: true},
				mkRec(3, 100),
				{Body: json, Owned: true},
				{Body: random[:LargeBody-1], Owned: true}, // below the bound: copied
			}
			if _, err := l.Append(recs...); err != nil {
				t.Fatal(err)
			}
			check := func(l *Log) {
				t.Helper()
				checkRead(t, l, 1, 100)
				checkRead(t, l, 3, 100)
				for seq, want := range map[uint64][]byte{2: random, 4: json, 5: random[:LargeBody-1]} {
					r, err := l.Read(seq)
					if err != nil || !bytes.Equal(r.Body, want) {
						t.Fatalf("record %d: %v", seq, err)
					}
				}
			}
			check(l) // from memory
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			if codec != CodecNone && st.StoredBytes > st.RawBytes-(1<<20)/2 {
				// the JSON body compresses, the random one is stored raw
				t.Logf("stats %+v", st)
			}
			check(l)
			l.Close()
			l = openT(t, fs, "q", opts)
			defer l.Close()
			check(l)
		})
	}
}

// TestViewPinnedOutsideLock holds a ViewPinned call open (a delivery to a
// slow consumer) on a pending record and on a cached one, and checks that
// appends, seals, syncs and reads of other records still complete, that
// the cache churn they cause does not recycle the pinned buffers, and that
// the record the viewer holds is intact when it finally reads it.
func TestViewPinnedOutsideLock(t *testing.T) {
	for _, pending := range []bool{true, false} {
		t.Run(fmt.Sprintf("pending=%v", pending), func(t *testing.T) {
			opts := Options{Codec: CodecS2, Sync: true, ChunkSize: 8 << 10, SegmentSize: 64 << 10, CacheChunks: 2}
			l := openT(t, vfs.NewMem(), "q", opts)
			defer l.Close()
			appendN(t, l, 1, 100, 300)
			if !pending {
				if err := l.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			const seq = 3
			entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
			go func() {
				done <- l.ViewPinned(seq, func(r *Record) error {
					close(entered)
					<-release
					if r.Seq != seq || !sameRecord(*r, mkRec(seq, 300)) {
						return fmt.Errorf("pinned record %d changed under the viewer", seq)
					}
					return nil
				})
			}()
			<-entered
			worked := make(chan error, 1)
			go func() {
				// Enough appends to seal, roll and evict many chunks, then
				// reads of old records, which decode into recycled pieces.
				for i := 0; i < 20; i++ {
					first := uint64(101 + i*100)
					for j := 0; j < 100; j++ {
						if _, err := l.Append(mkRec(first+uint64(j), 300)); err != nil {
							worked <- err
							return
						}
					}
					if err := l.Flush(); err != nil {
						worked <- err
						return
					}
				}
				for s := uint64(50); s < 2100; s += 37 {
					r, err := l.Read(s)
					if err != nil {
						worked <- err
						return
					}
					if !sameRecord(r, mkRec(s, 300)) {
						worked <- fmt.Errorf("read %d: wrong record", s)
						return
					}
				}
				worked <- nil
			}()
			select {
			case err := <-worked:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("appends, flushes and reads blocked while a ViewPinned call was open")
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStableBodies: a large owned body and a chunk too large to recycle are
// handed out Stable (their memory is never reused), records of ordinary
// chunks are not.
func TestStableBodies(t *testing.T) {
	opts := Options{Sync: true, ChunkSize: 64 << 10}
	l := openT(t, vfs.NewMem(), "q", opts)
	defer l.Close()
	large := bytes.Repeat([]byte("L"), LargeBody)
	huge := bytes.Repeat([]byte("H"), 3*opts.ChunkSize) // not owned: a chunk of its own, too large to recycle
	if _, err := l.Append(Record{Body: []byte("small")}, Record{Body: large, Owned: true}, Record{Body: huge}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		for seq, want := range map[uint64]bool{1: false, 2: true, 3: true} {
			err := l.ViewPinned(seq, func(r *Record) error {
				if r.Stable != want {
					t.Errorf("%s: record %d (%d bytes) stable %v, want %v", when, seq, len(r.Body), r.Stable, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	check("pending")
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	check("written")
	// Read back from disk after a reopen: the large record's chunk is
	// read into memory of its own.
	fs := vfs.NewMem()
	l2 := openT(t, fs, "q", opts)
	if _, err := l2.Append(Record{Body: []byte("small")}, Record{Body: large, Owned: true}, Record{Body: huge}); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, fs, "q", opts)
	defer l.Close()
	check("read from disk")
}

// TestGuardRefusesAppends: while the guard fails (the store's full disk),
// appends are refused at once with ErrFailing, not taken to be held until
// there is room; the log does not enter the failing state, and takes
// appends again once the guard passes.
func TestGuardRefusesAppends(t *testing.T) {
	var full atomic.Bool
	errFull := errors.New("disk full")
	l := openT(t, vfs.NewMem(), "q", Options{Sync: true, Guard: func() error {
		if full.Load() {
			return errFull
		}
		return nil
	}})
	defer l.Close()
	if _, err := l.Append(mkRec(1, 10)); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	if _, err := l.Append(mkRec(2, 10)); !errors.Is(err, ErrFailing) || !errors.Is(err, errFull) {
		t.Fatalf("append while the guard fails: %v", err)
	}
	if err := l.Failing(); err != nil {
		t.Fatalf("a refused append put the log in the failing state: %v", err)
	}
	full.Store(false)
	if got, err := l.Append(mkRec(2, 10)); err != nil || got != 2 {
		t.Fatalf("append after the guard passed: %d %v", got, err)
	}
	checkRead(t, l, 2, 10)
}
