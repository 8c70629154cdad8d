package store

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/segment"
)

// backlogBody returns a compressible body of 16 bytes to 1 KiB: most are
// short, one in a hundred is long, to keep a 10M-message backlog small on
// disk.
func backlogBody(buf []byte, i int) []byte {
	n := 16 + i%48
	if i%100 == 0 {
		n = 1024
	}
	buf = fmt.Appendf(buf[:0], "order=%d status=shipped;", i)
	for len(buf) < n {
		buf = append(buf, "lorem ipsum dolor sit amet "...)
	}
	return buf[:n]
}

// fillBacklog appends perQueue persistent messages to each of queues durable
// queues, delivers the first 1000 of each and acks every third of those (so
// ack state holds ranges), then closes the store.
func fillBacklog(t *testing.T, dir string, queues, perQueue int) {
	s := open(t, vfs.Default, dir)
	const batch = 10000
	recs := make([]segment.Record, batch)
	bodies := make([][]byte, batch)
	for qi := 0; qi < queues; qi++ {
		q, err := s.Queue(fmt.Sprintf("q%02d", qi), true)
		if err != nil {
			t.Fatal(err)
		}
		for done := 0; done < perQueue; done += batch {
			n := min(batch, perQueue-done)
			for i := 0; i < n; i++ {
				bodies[i] = backlogBody(bodies[i], done+i)
				recs[i] = segment.Record{Flags: segment.FlagPersistent, RoutingKey: "orders", Body: bodies[i]}
			}
			appendWait(t, q, recs[:n]...)
		}
		ms := q.NextReady(nil, 1000)
		for i, m := range ms {
			if i%3 == 0 {
				q.Ack(m.Seq)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// recoverBacklog reopens the store, checks the counts and returns how long
// Open took and the heap it left in use.
func recoverBacklog(t *testing.T, dir string, queues, perQueue int) (time.Duration, uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	s := open(t, vfs.Default, dir)
	took := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != queues {
		t.Fatalf("recovered %d queues, want %d", len(rc), queues)
	}
	acked := (min(1000, perQueue) + 2) / 3
	for _, r := range rc {
		if r.Ready != perQueue-acked {
			t.Fatalf("queue %s: ready %d, want %d", r.ID, r.Ready, perQueue-acked)
		}
	}
	// The first message and the tail read back.
	q, _ := s.Queue("q00", true)
	ms := q.NextReady(nil, 2)
	if len(ms) != 2 || ms[0].Seq != 2 || !ms[0].Redelivered {
		t.Fatalf("head after recovery: %+v", ms)
	}
	r, err := q.log.Read(uint64(perQueue))
	if err != nil || string(r.Body) != string(backlogBody(nil, perQueue-1)) {
		t.Fatalf("tail after recovery: %q, %v", r.Body, err)
	}
	heap := uint64(0)
	if after.HeapAlloc > before.HeapAlloc {
		heap = after.HeapAlloc - before.HeapAlloc
	}
	return took, heap
}

// TestRecoveryTime measures Open over backlogs of 10k, 1M and (without
// -short) 10M messages spread over 10 queues. Recovery reads log states and
// chunk headers, so its time must not follow the message count.
func TestRecoveryTime(t *testing.T) {
	totals := []int{10_000, 1_000_000}
	if !testing.Short() {
		totals = append(totals, 10_000_000)
	}
	const queues = 10
	var base time.Duration
	for _, total := range totals {
		dir := t.TempDir()
		start := time.Now()
		fillBacklog(t, dir, queues, total/queues)
		fill := time.Since(start)
		size, files := dirSize(t, dir)
		took, heap := recoverBacklog(t, dir, queues, total/queues)
		t.Logf("backlog %d msgs in %d queues (%d MB on disk, %d files, filled in %v): recovery %v, heap +%d KB",
			total, queues, size>>20, files, fill.Round(time.Millisecond), took.Round(time.Microsecond), heap>>10)
		if base == 0 {
			base = took
		}
		// Generous bound: 1000x the messages must not cost anything like
		// 1000x the time (it walks ~1 chunk header per 10k messages).
		if took > 2*time.Second+20*base {
			t.Fatalf("recovery of %d messages took %v (10k: %v)", total, took, base)
		}
	}
}
