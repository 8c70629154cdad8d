package store

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// heapPeak samples the heap in use and keeps the largest value seen.
type heapPeak struct {
	ms   runtime.MemStats
	peak uint64
}

func (h *heapPeak) sample() {
	runtime.ReadMemStats(&h.ms)
	h.peak = max(h.peak, h.ms.HeapInuse)
}

const memRecords = 2_000_000

func memRecordsBatch(i int, level bool) []segment.Record {
	recs := make([]segment.Record, 1000)
	for k := range recs {
		body := make([]byte, 100)
		body[0] = byte((i + k) % 10)
		body[1] = byte(k)
		recs[k] = segment.Record{Flags: segment.FlagPersistent, Exchange: "x", RoutingKey: "k", Body: body}
	}
	return recs
}

// TestStreamReplayMemory appends two million records to a stream and
// replays them from the first offset: the heap stays bounded, whatever the
// stream's length (nothing per message is kept).
func TestStreamReplayMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("big test")
	}
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	st, err := s.Stream(index.Queue{ID: "big"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var h heapPeak
	for i := 0; i < memRecords; i += 1000 {
		done := make(chan error, 1)
		if _, err := st.Append(memRecordsBatch(i, false), func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if i%100_000 == 0 {
			h.sample()
		}
	}
	n := 0
	next, err := st.Read(st.First(), func(seq uint64, r *segment.Record) bool {
		n++
		if n%100_000 == 0 {
			h.sample()
		}
		return true
	})
	if err != nil || n != memRecords || next != st.Next() {
		t.Fatalf("replayed %d of %d (next %d, %v)", n, memRecords, next, err)
	}
	h.sample()
	t.Logf("heap in use peaked at %d MiB", h.peak>>20)
	if h.peak > 64<<20 {
		t.Fatalf("heap in use peaked at %d MiB replaying %d records", h.peak>>20, memRecords)
	}
}

// TestPriorityBacklogMemory fills a ten-level priority queue with two
// million messages and drains it highest level first: the heap stays
// bounded by what is in flight, not by the backlog.
func TestPriorityBacklogMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("big test")
	}
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	pq, err := s.PriorityQueue(index.Queue{ID: "prio", Durable: true}, 9, func(r *segment.Record) uint8 { return r.Body[0] })
	if err != nil {
		t.Fatal(err)
	}
	var h heapPeak
	for i := 0; i < memRecords; i += 1000 {
		done := make(chan error, 1)
		if _, err := pq.Append(memRecordsBatch(i, true), func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if i%100_000 == 0 {
			h.sample()
		}
	}
	if pq.Ready() != memRecords {
		t.Fatalf("ready %d", pq.Ready())
	}
	last := uint8(9)
	seqs := make([]uint64, 0, 1000)
	for drained := 0; drained < memRecords; {
		seqs = seqs[:0]
		pq.Deliver(1000, func(m *Message) Verdict {
			if m.Record.Body[0] > last {
				t.Fatalf("level %d after level %d", m.Record.Body[0], last)
			}
			last = m.Record.Body[0]
			seqs = append(seqs, m.Seq)
			return Take
		})
		if len(seqs) == 0 {
			t.Fatalf("stuck after %d", drained)
		}
		pq.AckMany(seqs)
		drained += len(seqs)
		if drained%100_000 == 0 {
			h.sample()
		}
	}
	h.sample()
	t.Logf("heap in use peaked at %d MiB", h.peak>>20)
	if h.peak > 64<<20 {
		t.Fatalf("heap in use peaked at %d MiB with a backlog of %d", h.peak>>20, memRecords)
	}
}

// TestQuietTrimCollectsGarbage: a broker going quiet with a heap full of
// garbage (its GOGC lets garbage pile up) has it collected and returned,
// even when its heap did not grow since the last trim.
func TestQuietTrimCollectsGarbage(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection meanwhile
	s.trimMu.Lock()
	s.heapAfterTrim = 1 << 40 // no growth to speak of
	s.trimMu.Unlock()
	for i := 0; i < 64; i++ {
		junk = make([]byte, 1<<20)
		junk[0] = byte(i)
	}
	junk = nil
	if g := heapObjectBytes() - heapLiveBytes(); g < trimBytes {
		t.Fatalf("only %d bytes of garbage after dropping 64 MiB", g)
	}
	s.trim(0, true)
	if g := heapObjectBytes() - heapLiveBytes(); g >= trimBytes {
		t.Fatalf("%d bytes of garbage after a quiet trim", g)
	}
	s.trimMu.Lock()
	trimmed := !s.lastTrim.IsZero()
	s.trimMu.Unlock()
	if !trimmed {
		t.Fatal("the quiet trim did not run")
	}
	// Still quiet, new garbage: not again within trimInterval, again after.
	garbage := func() int64 {
		for i := 0; i < 64; i++ {
			junk = make([]byte, 1<<20)
		}
		junk = nil
		return heapObjectBytes() - heapLiveBytes()
	}
	if g := garbage(); g < trimBytes {
		t.Fatalf("only %d bytes of garbage", g)
	}
	s.trim(0, true)
	if g := heapObjectBytes() - heapLiveBytes(); g < trimBytes {
		t.Fatalf("trimmed again %v after the last trim (garbage now %d bytes)", time.Since(s.lastTrim), g)
	}
	s.trimMu.Lock()
	s.lastTrim = s.lastTrim.Add(-trimInterval)
	s.trimMu.Unlock()
	s.trim(0, true)
	if g := heapObjectBytes() - heapLiveBytes(); g >= trimBytes {
		t.Fatalf("%d bytes of garbage after a quiet trim %v after the last", g, trimInterval)
	}
}

// junk is where TestQuietTrimCollectsGarbage makes its garbage, so that
// the compiler cannot drop the allocations.
var junk []byte
