package store

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/segment"
)

// diskFull wraps fs so that, while on, every operation that needs space
// fails with ENOSPC, as a full file system answers (removing, renaming and
// truncating still work). The store's ballast file (in dir) stands for the
// space it reserves: once it is deleted, the index's writes find room.
func diskFull(fs vfs.FS, dir string) (vfs.FS, *errorfs.Toggle) {
	var on errorfs.Toggle
	ballast := dir + "/" + ballastFile
	on.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			// Delayed allocation fails at fdatasync; a directory's fsync
			// needs no space.
			if !strings.Contains(op.Path, "/"+queuesDir+"/") {
				return nil
			}
			return &os.PathError{Op: "fsync", Path: op.Path, Err: syscall.ENOSPC}
		case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpMkdirAll, errorfs.OpLink,
			errorfs.OpFilePreallocate, errorfs.OpReuseForWrite:
			if strings.Contains(op.Path+"/", "/"+indexDir+"/") {
				if _, err := fs.Stat(ballast); err != nil {
					return nil // the ballast's space
				}
			}
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	})
	return errorfs.Wrap(fs, &on), &on
}

// lineCounter counts log lines and keeps the error ones.
type lineCounter struct {
	mu     sync.Mutex
	lines  int
	errors []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bytes.Contains(p, []byte(`"level":"debug"`)) {
		c.lines += bytes.Count(p, []byte{'\n'})
	}
	if bytes.Contains(p, []byte(`"level":"error"`)) {
		c.errors = append(c.errors, string(p))
	}
	return len(p), nil
}

func (c *lineCounter) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.errors, "")
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines
}

// TestDiskFullNackedNeverDelivered publishes persistent messages to a
// durable queue while a consumer takes and acks them, and fills the disk
// for a while in the middle: publishes made while the store fails writes
// are refused (nacked); none of them is ever delivered, every accepted one
// is confirmed (none is nacked after being accepted) and delivered exactly
// once, the queue works again by itself once space returns, and after a
// restart nothing refused appears.
func TestDiskFullNackedNeverDelivered(t *testing.T) {
	dir := t.TempDir()
	fs, full := diskFull(vfs.Default, dir)
	s := open(t, fs, dir, func(o *Options) {
		o.SegmentSize, o.MinSegmentSize, o.ChunkSize = 64<<10, 16<<10, 4<<10
		o.SyncIndex = true
		o.ReclaimInterval = 10 * time.Millisecond
	})
	q, err := s.Queue("q", true)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	confirmed, nacked, delivered := map[int]bool{}, map[int]bool{}, map[int]int{}
	var pending sync.WaitGroup
	stop := make(chan struct{})
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		var buf []Message
		for {
			buf = q.NextReady(buf[:0], 64)
			for _, m := range buf {
				mu.Lock()
				delivered[idOf(t, m)]++
				mu.Unlock()
				q.Ack(m.Seq)
			}
			if len(buf) == 0 {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Microsecond):
				}
			}
		}
	}()
	const total = 3000
	for i := 0; i < total; i++ {
		switch i {
		case 1000:
			full.On()
		case 2000:
			full.Off()
			for s.Failing() != nil {
				time.Sleep(time.Millisecond) // writes resume by themselves
			}
		}
		id := i
		pending.Add(1)
		q.Append([]segment.Record{rec(id, true)}, func(err error) {
			mu.Lock()
			if err != nil {
				nacked[id] = true
			} else {
				confirmed[id] = true
			}
			mu.Unlock()
			pending.Done()
		})
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	waitDone(t, &pending, 20*time.Second, "confirms after space returned")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n >= len(confirmed) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	<-consumerDone
	mu.Lock()
	defer mu.Unlock()
	if len(nacked) == 0 {
		t.Fatal("the full disk refused no publish")
	}
	for id, n := range delivered {
		if nacked[id] {
			t.Fatalf("message %d was nacked and delivered", id)
		}
		if n != 1 {
			t.Fatalf("message %d delivered %d times", id, n)
		}
	}
	for id := range confirmed {
		if delivered[id] != 1 {
			t.Fatalf("confirmed message %d not delivered", id)
		}
	}
	if len(confirmed)+len(nacked) != total {
		t.Fatalf("%d confirmed + %d nacked of %d", len(confirmed), len(nacked), total)
	}
	if err := s.Failing(); err != nil {
		t.Fatalf("store still failing after space returned: %v", err)
	}
	t.Logf("%d confirmed and delivered, %d nacked (disk full), 0 nacked delivered", len(confirmed), len(nacked))
	s.Close()
	s2 := open(t, vfs.Default, dir)
	defer s2.Close()
	q2, _ := s2.Queue("q", true)
	for _, m := range q2.NextReady(nil, total) {
		if id := idOf(t, m); nacked[id] {
			t.Fatalf("nacked message %d delivered after restart", id)
		}
	}
}

func waitDone(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestOpenOnFullDisk: a store reopened while the disk is full comes up
// read-only (it does not refuse to start, nor loop): queues are counted and
// drained, appends and declarations fail with a write failure, the log
// holds a handful of lines; once space returns the store writes again by
// itself.
func TestOpenOnFullDisk(t *testing.T) {
	t.Run("ballast", func(t *testing.T) { openOnFullDisk(t, 0) })
	// Without a ballast the index opens read-only and is reopened for
	// writing once space returns.
	t.Run("read-only", func(t *testing.T) { openOnFullDisk(t, -1) })
}

func openOnFullDisk(t *testing.T, ballast int64) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 100, true)
	for _, m := range q.NextReady(nil, 10) {
		q.Ack(m.Seq)
	}
	// A torn tail too, to be repaired on the full disk.
	s.Close()
	segs, _ := os.ReadDir(dir + "/queues/q")
	f, _ := os.OpenFile(dir+"/queues/q/"+segs[len(segs)-1].Name(), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("WCHK a torn write"))
	f.Close()

	fs, full := diskFull(vfs.Default, dir)
	full.On()
	var lines lineCounter
	s, err := Open(Options{Dir: dir, FS: fs, Logger: zerolog.New(&lines), ReclaimInterval: 10 * time.Millisecond,
		SyncIndex: true, BallastSize: ballast})
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if err := s.Failing(); err != nil {
		// Nothing was written yet: the ballast is still there.
		t.Logf("Failing at open: %v", err)
	}
	if rc := s.Recovered(); len(rc) != 1 || rc[0].Ready != 90 {
		t.Fatalf("Recovered = %+v", rc)
	}
	q, _ = s.Queue("q", true)
	if _, err := q.Append([]segment.Record{rec(1000, true)}, nil); err == nil || !IsWriteFailure(err) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if _, err := s.Queue("new", true); err == nil || !IsWriteFailure(err) {
		t.Fatalf("new queue on a full disk: %v", err)
	}
	if err := s.Failing(); err == nil || !IsWriteFailure(err) {
		t.Fatalf("Failing on a full disk: %v", err)
	}
	ms := q.NextReady(nil, 100)
	if len(ms) != 90 {
		t.Fatalf("drained %d of 90 on a full disk", len(ms))
	}
	for _, m := range ms {
		q.Ack(m.Seq)
	}
	time.Sleep(500 * time.Millisecond) // 50 reclaim passes, many sync rounds
	if n := lines.count(); n > 30 {
		t.Fatalf("%d log lines in half a second on a full disk:\n%s", n, lines.all())
	}
	full.Off()
	deadline := time.Now().Add(10 * time.Second)
	for s.Failing() != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Failing(); err != nil {
		t.Fatalf("still failing after space returned: %v", err)
	}
	appendWait(t, q, rec(2000, true))
	if _, err := s.Queue("new", true); err != nil {
		t.Fatal(err)
	}
	if got := q.NextReady(nil, 5); len(got) != 1 || idOf(t, got[0]) != 2000 {
		t.Fatalf("after space returned: %v", got)
	}
}

// TestIndexLossRefusedThenRepaired: with its index deleted, or its MANIFEST
// damaged, the store refuses to open a data directory holding queue logs
// (nothing is deleted), and with Repair rebuilds the queue from its
// segments: every message not provably acked comes back, redelivered.
func TestIndexLossRefusedThenRepaired(t *testing.T) {
	for _, damage := range []string{"deleted", "manifest"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, vfs.Default, dir)
			q, _ := s.Queue("q", true)
			appendN(t, q, 0, 50, true)
			appendN(t, q, 50, 10, false)
			s.Close()
			idir := dir + "/" + indexDir
			switch damage {
			case "deleted":
				os.RemoveAll(idir)
			case "manifest":
				names, _ := os.ReadDir(idir)
				for _, n := range names {
					if strings.HasPrefix(n.Name(), "MANIFEST") {
						os.WriteFile(idir+"/"+n.Name(), []byte("garbage"), 0o644)
					}
				}
			}
			before, files := dirSize(t, dir+"/"+queuesDir)
			_, err := Open(Options{Dir: dir, FS: vfs.Default, Logger: zerolog.Nop(), ReclaimInterval: -1})
			if !errors.Is(err, ErrNeedsRepair) || !strings.Contains(err.Error(), "--repair") {
				t.Fatalf("open without an index: %v", err)
			}
			if after, n := dirSize(t, dir+"/"+queuesDir); after != before || n != files {
				t.Fatalf("a refused open changed the logs: %d -> %d bytes", before, after)
			}
			s = open(t, vfs.Default, dir, func(o *Options) { o.Repair = true })
			defer s.Close()
			rc := s.Recovered()
			if len(rc) != 1 || rc[0].ID != "q" || rc[0].Ready != 50 {
				t.Fatalf("Recovered after repair = %+v", rc)
			}
			if _, err := s.Index().GetQueue("", "q"); err != nil && damage == "deleted" {
				// Queues made by Queue(id) have no vhost: the definition
				// comes from the segments' identity.
				if qs, _ := s.Index().Queues("/"); len(qs) == 0 {
					t.Fatalf("no queue definition after repair: %v", err)
				}
			}
			q, _ = s.Queue("q", true)
			ms := q.NextReady(nil, 100)
			if len(ms) != 50 {
				t.Fatalf("repaired queue delivered %d, want 50", len(ms))
			}
			for _, m := range ms {
				if !m.Redelivered {
					t.Fatal("a repaired message is not flagged redelivered")
				}
			}
		})
	}
}

// TestCorruptChunkNotCounted: after a chunk of the last segment is
// damaged, the ready count excludes its messages, the loss is reported,
// and the others are delivered.
func TestCorruptChunkNotCounted(t *testing.T) {
	dir := t.TempDir()
	var lines lineCounter
	s := open(t, vfs.Default, dir, func(o *Options) { o.ChunkSize = 1 << 10 })
	q, _ := s.Queue("q", true)
	for i := 0; i < 10; i++ {
		appendN(t, q, i*10, 10, true)
	}
	s.Close()
	segs, _ := os.ReadDir(dir + "/queues/q")
	path := dir + "/queues/q/" + segs[len(segs)-1].Name()
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	os.WriteFile(path, b, 0o644)
	s, err := Open(Options{Dir: dir, FS: vfs.Default, Logger: zerolog.New(&lines), ReclaimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != 1 || rc[0].Lost == 0 || rc[0].Ready != 100-int(rc[0].Lost) {
		t.Fatalf("Recovered = %+v", rc)
	}
	if len(lines.errors) == 0 {
		t.Fatal("the loss was not logged at error level")
	}
	q, _ = s.Queue("q", true)
	if got := len(q.NextReady(nil, 200)); got != rc[0].Ready {
		t.Fatalf("delivered %d, ready said %d", got, rc[0].Ready)
	}
	checkCounts(t, q, 0, rc[0].Ready)
}

// TestMissingSegmentReported: a segment file deleted behind the store's
// back is reported at error level with the number of messages lost.
func TestMissingSegmentReported(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) {
		o.SegmentSize, o.MinSegmentSize, o.ChunkSize = 8<<10, 8<<10, 1<<10
		o.Codec = segment.CodecNone
	})
	q, _ := s.Queue("q", true)
	for i := 0; i < 100; i++ {
		appendN(t, q, i*20, 20, true)
	}
	s.Close()
	segs, _ := os.ReadDir(dir + "/queues/q")
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	os.Remove(dir + "/queues/q/" + segs[0].Name())
	os.Remove(dir + "/queues/q/" + segs[2].Name())
	var lines lineCounter
	s, err := Open(Options{Dir: dir, FS: vfs.Default, Logger: zerolog.New(&lines), ReclaimInterval: -1, SyncIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != 1 || rc[0].Lost == 0 || rc[0].Ready != 2000-int(rc[0].Lost) {
		t.Fatalf("Recovered = %+v", rc)
	}
	var head, mid bool
	for _, l := range lines.errors {
		head = head || strings.Contains(l, "missing at the head")
		mid = mid || strings.Contains(l, "missing between segments")
	}
	if !head || !mid {
		t.Fatalf("losses not reported (head %v, middle %v): %v", head, mid, lines.errors)
	}
	t.Logf("%d messages lost, %d ready", rc[0].Lost, rc[0].Ready)
}

var _ = atomic.Int64{}
