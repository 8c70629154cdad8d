package segment

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSyncerConcurrent: several appenders on several logs; every waiter is
// called once, after its records are durable, and after the hook ran.
func TestSyncerConcurrent(t *testing.T) {
	fs := vfs.NewMem()
	var logs []*Log
	for i := 0; i < 3; i++ {
		logs = append(logs, openT(t, fs, fmt.Sprintf("q%d", i), Options{Sync: i != 2}))
	}
	var hooks atomic.Int64
	s := NewSyncer(SyncerOptions{Hook: func() error { hooks.Add(1); return nil }})
	const appenders, batches, per = 4, 200, 8
	var called atomic.Int64
	var wg sync.WaitGroup
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			l := logs[a%len(logs)]
			recs := make([]Record, per)
			for b := 0; b < batches; b++ {
				for i := range recs {
					recs[i] = Record{Body: []byte(fmt.Sprintf("a%d-b%d-%d", a, b, i))}
				}
				var first uint64
				hooksBefore := hooks.Load()
				done := func(err error) {
					if err != nil {
						t.Error(err)
					}
					if l.opts.Sync {
						if l.DurableNext() < first+per {
							t.Errorf("waiter ran before its records were durable")
						}
						if hooks.Load() <= hooksBefore {
							t.Errorf("waiter ran before the hook")
						}
					}
					called.Add(1)
				}
				var err error
				// first is set before done can run for durable logs (done runs on the
				// syncer after a round that starts after Add).
				l.mu.Lock()
				first = l.nextSeq
				l.mu.Unlock()
				got, err := s.AppendDurable(l, recs, done)
				if err != nil {
					t.Error(err)
					return
				}
				if got < first {
					t.Errorf("seq went backwards")
				}
			}
		}(a)
	}
	wg.Wait()
	s.Close()
	if got := called.Load(); got != appenders*batches {
		t.Fatalf("waiters called %d times, want %d", got, appenders*batches)
	}
	total := uint64(0)
	for _, l := range logs {
		total += l.NextSeq() - 1
		if l.opts.Sync && l.DurableNext() != l.NextSeq() {
			t.Fatalf("log %s: durable %d next %d after Close", l.Dir(), l.DurableNext(), l.NextSeq())
		}
		// A transient log keeps its last, partial chunk in memory until
		// it is full or the log closes.
		l.Close()
	}
	if total != appenders*batches*per {
		t.Fatalf("appended %d records", total)
	}
	t.Logf("%d rounds for %d batches", s.Rounds(), appenders*batches)
	// Add after Close flushes inline.
	l := openT(t, fs, "late", Options{Sync: true})
	defer l.Close()
	var lateErr error = fmt.Errorf("not called")
	if _, err := s.AppendDurable(l, []Record{{Body: []byte("x")}}, func(err error) { lateErr = err }); err != nil {
		t.Fatal(err)
	}
	if lateErr != nil || l.DurableNext() != 2 {
		t.Fatalf("late add: %v durable %d", lateErr, l.DurableNext())
	}
}

// TestSyncerGroupsCommits: under concurrent load, rounds are fewer than
// batches (waiters share fsyncs).
func TestSyncerGroupsCommits(t *testing.T) {
	l := openT(t, vfs.Default, t.TempDir(), Options{Sync: true})
	defer l.Close()
	s := NewSyncer(SyncerOptions{})
	var wg sync.WaitGroup
	const n = 2000
	wg.Add(n)
	rec := []Record{{Body: make([]byte, 100)}}
	for i := 0; i < n; i++ {
		if _, err := s.AppendDurable(l, rec, func(error) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	s.Close()
	if r := s.Rounds(); r >= n/2 {
		t.Fatalf("%d rounds for %d batches: no grouping", r, n)
	} else {
		t.Logf("%d rounds for %d batches", r, n)
	}
}
