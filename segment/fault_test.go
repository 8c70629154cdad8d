package segment

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// enospc returns a disk-full error for op, as the kernel reports it.
func enospc(op errorfs.Op) error {
	return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
}

// faultFS wraps fs so that, while on, the operations in kinds fail with
// the error made by mk.
func faultFS(fs vfs.FS, mk func(errorfs.Op) error, kinds ...errorfs.OpKind) (vfs.FS, *errorfs.Toggle) {
	var on errorfs.Toggle
	on.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		for _, k := range kinds {
			if op.Kind == k {
				return mk(op)
			}
		}
		return nil
	})
	return errorfs.Wrap(fs, &on), &on
}

// TestWriteFailuresRetried injects each kind of failure (a full disk on
// write, on file creation, an I/O error on fdatasync) under a stream of
// durable appends: no waiter is ever told its records failed, appends made
// while the log fails are refused (never written), and once the failure
// stops every accepted record is durable, in order, across a reopen.
func TestWriteFailuresRetried(t *testing.T) {
	eio := func(op errorfs.Op) error { return &os.PathError{Op: "fsync", Path: op.Path, Err: syscall.EIO} }
	cases := []struct {
		name string
		mk   func(errorfs.Op) error
		kind errorfs.OpKind
	}{
		{"enospc-write", enospc, errorfs.OpFileWriteAt},
		{"enospc-create", enospc, errorfs.OpCreate},
		{"eio-fdatasync", eio, errorfs.OpFileSyncData},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fs, fail := faultFS(vfs.Default, c.mk, c.kind)
			// Small segments, so creations happen during the run.
			opts := Options{Sync: true, SegmentSize: 16 << 10, MinSegmentSize: 4 << 10, ChunkSize: 2 << 10}
			l := openT(t, fs, dir, opts)
			s := NewSyncer(SyncerOptions{RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
			var mu sync.Mutex
			accepted := map[uint64]bool{}
			refused := 0
			failed := 0
			var wg sync.WaitGroup
			for i := 0; i < 600; i++ {
				if i == 200 {
					fail.On()
				}
				if i == 400 {
					fail.Off()
				}
				wg.Add(1) // before the append: its waiter may run before it returns
				seq, err := s.AppendDurable(l, []Record{mkRec(uint64(i+1), 200)}, func(err error) {
					if err != nil {
						mu.Lock()
						failed++
						mu.Unlock()
					}
					wg.Done()
				})
				if err != nil {
					wg.Done() // a refused append never calls its waiter
					if !errors.Is(err, ErrFailing) {
						t.Fatalf("append %d: %v", i, err)
					}
					refused++
					continue
				}
				mu.Lock()
				accepted[seq] = true
				mu.Unlock()
				if i%7 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("waiters not called after the failure stopped")
			}
			s.Close()
			if failed != 0 {
				t.Fatalf("%d waiters told their records failed", failed)
			}
			if refused == 0 {
				t.Fatalf("no append refused: the fault was not hit")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openT(t, vfs.Default, dir, opts)
			defer l.Close()
			if n := uint64(len(accepted)); l.NextSeq() != n+1 {
				t.Fatalf("reopened log ends at %d, want %d accepted records", l.NextSeq()-1, n)
			}
			for seq := uint64(1); seq <= uint64(len(accepted)); seq++ {
				if _, err := l.Read(seq); err != nil {
					t.Fatalf("accepted record %d: %v", seq, err)
				}
			}
			names, _ := os.ReadDir(dir)
			for _, e := range names {
				if strings.HasSuffix(e.Name(), ".tmp") {
					t.Fatalf("left a prepared file behind: %s", e.Name())
				}
			}
			t.Logf("%d accepted, %d refused while failing", len(accepted), refused)
		})
	}
}

// TestRepairOnFullDisk: a torn tail is cut in place when the disk is
// full: nothing is copied (no .tmp, no full .broken copy), Open succeeds,
// and the log appends again once the disk has room.
func TestRepairOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Sync: true, ChunkSize: 4 << 10}
	l := openT(t, vfs.Default, dir, opts)
	appendN(t, l, 1, 200, 300)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segName(1))
	fi, _ := os.Stat(path)
	valid := fi.Size()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("WCHK torn write torn write torn write torn write"))
	f.Close()
	fs, full := faultFS(vfs.Default, enospc, errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt)
	full.On()
	l = openT(t, fs, dir, opts)
	rec := l.Recovery()
	if len(rec.Truncated) != 1 || rec.Truncated[0].Broken != "" || rec.Deferred != nil {
		t.Fatalf("recovery on a full disk: %+v", rec)
	}
	if fi, _ := os.Stat(path); fi.Size() != valid {
		t.Fatalf("file is %d bytes after repair, want %d", fi.Size(), valid)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 {
		t.Fatalf("repair left files behind: %v", names)
	}
	for seq := uint64(1); seq <= 200; seq++ {
		checkRead(t, l, seq, 300)
	}
	if _, err := l.Append(mkRec(201, 300)); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(); err == nil {
		t.Fatal("flush succeeded on a full disk")
	}
	full.Off()
	s := NewSyncer(SyncerOptions{RetryMin: time.Millisecond})
	errc := make(chan error, 1)
	s.Add(l, func(err error) { errc <- err })
	if err := <-errc; err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	s.Close()
	l.Close()
	l = openT(t, vfs.Default, dir, opts)
	defer l.Close()
	checkRead(t, l, 201, 300)
	if r := l.Recovery(); len(r.Truncated) != 0 {
		t.Fatalf("second open truncated again: %+v", r.Truncated)
	}
}
