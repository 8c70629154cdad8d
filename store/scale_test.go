package store

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/segment"
)

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// scaleQueues is the queue count of the scale tests: WARREN_SCALE_QUEUES,
// else 20,000 (2,000 with -short).
func scaleQueues(t testing.TB) int {
	if v := os.Getenv("WARREN_SCALE_QUEUES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return 2000
	}
	return 20000
}

// fillQueues creates n durable queues and appends msgs persistent records
// of size bytes to each, waiting for every confirm.
func fillQueues(t testing.TB, s *Store, n, msgs, size int) []*Queue {
	t.Helper()
	qs := make([]*Queue, n)
	for i := range qs {
		q, err := s.Queue(fmt.Sprintf("q%06d", i), true)
		if err != nil {
			t.Fatal(err)
		}
		qs[i] = q
	}
	body := make([]byte, size)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for _, q := range qs {
		for m := 0; m < msgs; m++ {
			wg.Add(1)
			if _, err := q.Append([]segment.Record{{Flags: segment.FlagPersistent, Body: body}}, func(err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				wg.Done()
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	return qs
}

// TestManyQueuesBoundedFiles: 20,000 durable queues, each with a message
// on disk, hold at most MaxOpenFiles segment files open (plus the index's
// own bound), while appending and after a restart, and recover with their
// counts.
func TestManyQueuesBoundedFiles(t *testing.T) {
	n := scaleQueues(t)
	const maxFiles = 64
	dir := t.TempDir()
	base := openFDs(t)
	s := open(t, vfs.Default, dir, func(o *Options) { o.MaxOpenFiles = maxFiles })
	start := time.Now()
	fillQueues(t, s, n, 1, 100)
	filled := time.Since(start)
	// the index keeps max(64, MaxOpenFiles/4) tables, plus its WAL,
	// manifest, lock and journal; the process a few more (test binary).
	bound := base + maxFiles + 64 + 16
	if got := openFDs(t); got > bound {
		t.Fatalf("%d queues: %d descriptors open, bound %d", n, got, bound)
	}
	if st := s.Files().Stats(); st.Open > maxFiles+8 {
		t.Fatalf("file cache holds %d files", st.Open)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s = open(t, vfs.Default, dir, func(o *Options) { o.MaxOpenFiles = maxFiles })
	recovered := time.Since(start)
	defer s.Close()
	if got := openFDs(t); got > bound {
		t.Fatalf("after recovering %d queues: %d descriptors open, bound %d", n, got, bound)
	}
	rc := s.Recovered()
	if len(rc) != n {
		t.Fatalf("recovered %d queues of %d", len(rc), n)
	}
	for _, r := range rc {
		if r.Ready != 1 {
			t.Fatalf("queue %s: ready %d", r.ID, r.Ready)
		}
	}
	// Every queue is readable through the bounded cache.
	for i := 0; i < n; i += max(1, n/500) {
		q, _ := s.Queue(fmt.Sprintf("q%06d", i), true)
		if got := q.NextReady(nil, 1); len(got) != 1 {
			t.Fatalf("queue %d: %d messages", i, len(got))
		}
	}
	st := s.Files().Stats()
	t.Logf("%d durable queues, 1 message each: filled in %v, recovered in %v; %d descriptors open (bound %d); file cache: %d opens, %d evictions",
		n, filled.Round(time.Millisecond), recovered.Round(time.Millisecond), openFDs(t), bound, st.Opens, st.Evictions)
}

// TestIdleQueueMemory measures the heap an idle durable queue holds after
// it took and delivered a message: goal 16 KiB. It also checks that a
// drained queue holds no file.
func TestIdleQueueMemory(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	defer s.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	qs := fillQueues(t, s, n, 4, 16<<10)
	var full runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&full)
	for _, q := range qs {
		for _, m := range q.NextReady(nil, 10) {
			q.Ack(m.Seq)
		}
	}
	waitCommitted(t, s)
	if err := s.Reclaim(); err != nil {
		t.Fatal(err)
	}
	s.releaseIdle() // first pass marks them idle
	s.releaseIdle()
	var after runtime.MemStats
	runtime.GC()
	runtime.GC() // twice: buffer pools keep a generation
	runtime.ReadMemStats(&after)
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	busy := float64(int64(full.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	size, files := dirSize(t, dir+"/"+queuesDir)
	t.Logf("%d durable queues: %.0f B of heap each while holding 4 x 16 KiB, %.0f B each once drained and idle (goal 16 KiB); %d files, %d bytes under queues/",
		n, busy, per, files, size)
	if per > 16<<10 {
		t.Fatalf("%.0f B per idle queue", per)
	}
	if files != 0 {
		t.Fatalf("drained queues hold %d files", files)
	}
	runtime.KeepAlive(qs)
}

// TestNearEmptyQueuesDisk: busy queues whose consumers keep up hold a few
// small segments each, not a 64 MiB one.
func TestNearEmptyQueuesDisk(t *testing.T) {
	const queues = 100
	d := 3 * time.Second
	if testing.Short() {
		d = time.Second
	}
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) { o.ReclaimInterval = 100 * time.Millisecond; o.SyncIndex = true })
	defer s.Close()
	qs := make([]*Queue, queues)
	for i := range qs {
		qs[i], _ = s.Queue(fmt.Sprintf("busy%03d", i), true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var moved, peak int64
	var mu sync.Mutex
	body := jsonLike(1024)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			recs := make([]segment.Record, 32)
			for i := range recs {
				recs[i] = segment.Record{Flags: segment.FlagPersistent, Body: body}
			}
			var buf []Message
			prev := map[*Queue][]uint64{}
			for k := w; ; k += 4 {
				select {
				case <-stop:
					return
				default:
				}
				q := qs[k%queues]
				done := make(chan struct{})
				q.Append(recs, func(error) { close(done) })
				<-done
				// Acks lag a batch behind, so the queue is never empty.
				q.AckMany(prev[q])
				buf = q.NextReady(buf[:0], 64)
				seqs := make([]uint64, len(buf))
				for i, m := range buf {
					seqs[i] = m.Seq
				}
				prev[q] = seqs
				mu.Lock()
				moved += int64(len(buf))
				mu.Unlock()
			}
		}(w)
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		size, _ := dirSize(t, dir+"/"+queuesDir)
		if size > peak {
			peak = size
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d busy near-empty queues, %d KiB messages moved in %v: peak %.1f MiB on disk (%.0f KiB per queue)",
		queues, moved, d, float64(peak)/(1<<20), float64(peak)/queues/1024)
	if peak > queues*4<<20 {
		t.Fatalf("peak %d MiB for %d near-empty queues", peak>>20, queues)
	}
}

// jsonLike returns a compressible body of n bytes.
func jsonLike(n int) []byte {
	b := make([]byte, 0, n+64)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"sku":"A-%d","qty":%d},`, i, i%7)
	}
	return b[:n]
}
