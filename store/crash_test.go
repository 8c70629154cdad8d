package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/warrenmq/warren/segment"
)

// TestCrashKeepsConfirmed runs random appends, deliveries, acks, requeues
// and reclaims on a crashable in-memory file system, takes a crash image at
// a random moment and checks after recovery that every persistent message
// whose onDurable fired and that was not acked is delivered again (so no
// ack state hides it), exactly once, and that no non-persistent one is.
func TestCrashKeepsConfirmed(t *testing.T) {
	iters := 30
	if testing.Short() {
		iters = 8
	}
	for iter := 0; iter < iters; iter++ {
		t.Run(fmt.Sprint(iter), func(t *testing.T) { crashOnce(t, uint64(iter), false) })
	}
}

// TestCrashWithWriteFaults is TestCrashKeepsConfirmed with write failures
// injected into the queue logs during the run (ENOSPC on writes and file
// creation, EIO on fdatasync, one operation in 40): appends refused while
// a log fails must never be delivered, before or after the crash, and
// confirmed ones must survive it.
func TestCrashWithWriteFaults(t *testing.T) {
	iters := 30
	if testing.Short() {
		iters = 8
	}
	for iter := 0; iter < iters; iter++ {
		t.Run(fmt.Sprint(iter), func(t *testing.T) { crashOnce(t, uint64(1000+iter), true) })
	}
}

// faultInjector fails queue-log writes at random while on.
func faultInjector(rng *rand.Rand, on *atomic.Bool) errorfs.Injector {
	var mu sync.Mutex
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !strings.Contains(op.Path, queuesDir+"/") {
			return nil
		}
		mu.Lock()
		hit := rng.IntN(40) == 0
		mu.Unlock()
		if !hit {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWriteAt, errorfs.OpCreate:
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		case errorfs.OpFileSyncData:
			return &os.PathError{Op: "fsync", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
}

func crashOnce(t *testing.T, seed uint64, faults bool) {
	rng := rand.New(rand.NewPCG(seed, 77))
	mem := vfs.NewCrashableMem()
	var fs vfs.FS = mem
	var faulting atomic.Bool
	if faults {
		fs = errorfs.Wrap(mem, faultInjector(rand.New(rand.NewPCG(seed, 3)), &faulting))
		faulting.Store(true)
	}
	refused := map[int]bool{}
	syncIndex := seed%2 == 1
	s := open(t, fs, "data", func(o *Options) {
		o.SegmentSize = 16 << 10
		o.ChunkSize = 4 << 10
		o.SyncIndex = syncIndex
	})
	names := []string{"a", "b"}
	qs := make([]*Queue, len(names))
	for i, n := range names {
		var err error
		if qs[i], err = s.Queue(n, true); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	confirmed := map[int]bool{}
	persistent := map[int]bool{}
	acked := map[int]bool{}
	queueOf := map[int]int{}
	nextID := 0
	held := make([][]Message, len(qs))
	ops := 100 + rng.IntN(400)
	for op := 0; op < ops; op++ {
		qi := rng.IntN(len(qs))
		q := qs[qi]
		switch k := rng.IntN(10); {
		case k < 4:
			n := 1 + rng.IntN(20)
			recs := make([]segment.Record, n)
			ids := make([]int, n)
			for i := range recs {
				p := rng.IntN(5) != 0
				recs[i] = rec(nextID, p)
				recs[i].Body = append(recs[i].Body, make([]byte, rng.IntN(600))...)
				ids[i] = nextID
				persistent[nextID] = p
				queueOf[nextID] = qi
				nextID++
			}
			if _, err := q.Append(recs, func(err error) {
				if err != nil {
					return
				}
				mu.Lock()
				for _, id := range ids {
					confirmed[id] = true
				}
				mu.Unlock()
			}); err != nil {
				if !faults || !IsWriteFailure(err) {
					t.Fatal(err)
				}
				mu.Lock()
				for _, id := range ids {
					refused[id] = true
				}
				mu.Unlock()
			}
		case k < 7:
			n := len(held[qi])
			held[qi] = q.NextReady(held[qi], 1+rng.IntN(10))
			mu.Lock()
			for _, m := range held[qi][n:] {
				if refused[idOf(t, m)] {
					mu.Unlock()
					t.Fatalf("refused message %d delivered", idOf(t, m))
				}
			}
			mu.Unlock()
		case k < 9:
			// Ack or requeue a random part of what this queue holds.
			var keep []Message
			var req []uint64
			for _, m := range held[qi] {
				switch rng.IntN(3) {
				case 0:
					if !q.Ack(m.Seq) {
						t.Fatalf("ack of held seq %d failed", m.Seq)
					}
					acked[idOf(t, m)] = true
				case 1:
					req = append(req, m.Seq)
				default:
					keep = append(keep, m)
				}
			}
			q.Requeue(req)
			held[qi] = keep
		default:
			if err := s.Reclaim(); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(3) == 0 {
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			}
		}
		if rng.IntN(8) == 0 {
			runtime.Gosched()
		}
	}
	mu.Lock()
	mustSurvive := map[int]bool{}
	for id := range confirmed {
		if persistent[id] && !acked[id] {
			mustSurvive[id] = true
		}
	}
	mu.Unlock()
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, 5))})
	faulting.Store(false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, crashed, "data")
	defer s2.Close()
	if len(s2.Recovered()) != len(names) {
		t.Fatalf("recovered %d queues, want %d", len(s2.Recovered()), len(names))
	}
	got := map[int]bool{}
	for qi, n := range names {
		q, err := s2.Queue(n, true)
		if err != nil {
			t.Fatal(err)
		}
		// Messages appended after recovery must not be hidden by ack state
		// recovered from before the crash.
		for i := 0; i < 3; i++ {
			id := nextID
			nextID++
			persistent[id], queueOf[id] = true, qi
			mustSurvive[id] = true
			appendWait(t, q, rec(id, true))
		}
		var ms []Message
		for {
			before := len(ms)
			ms = q.NextReady(ms, 64)
			if len(ms) == before {
				break
			}
		}
		if q.Ready() != 0 || q.Unacked() != len(ms) {
			t.Fatalf("queue %s: ready %d unacked %d after draining %d", n, q.Ready(), q.Unacked(), len(ms))
		}
		for _, m := range ms {
			id := idOf(t, m)
			if got[id] {
				t.Fatalf("message %d delivered twice after recovery", id)
			}
			got[id] = true
			if queueOf[id] != qi {
				t.Fatalf("message %d recovered in the wrong queue", id)
			}
			if !persistent[id] {
				t.Fatalf("non-persistent message %d survived a crash", id)
			}
			if refused[id] {
				t.Fatalf("refused message %d delivered after the crash", id)
			}
		}
	}
	for id := range mustSurvive {
		if !got[id] {
			t.Fatalf("confirmed, unacked message %d lost (syncIndex=%v, %d must survive, %d recovered)",
				id, syncIndex, len(mustSurvive), len(got))
		}
	}
	if len(mustSurvive) == 0 && nextID > 50 {
		t.Logf("seed %d: nothing confirmed-and-unacked to check", seed)
	}
	if faults {
		t.Logf("seed %d: %d appended, %d refused, %d confirmed and unacked survived", seed, nextID, len(refused), len(mustSurvive))
	}
}

// TestDeliveredFlagAfterCrash delivers messages (in batches small and
// larger than the delivery lease) and takes a crash image right after,
// before any commit can follow: after recovery every message that was
// delivered and not acked comes back flagged redelivered, and at most a
// lease's worth of messages never delivered carry the flag.
func TestDeliveredFlagAfterCrash(t *testing.T) {
	for seed := uint64(0); seed < 16; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			fs := vfs.NewCrashableMem()
			s := open(t, fs, "data", func(o *Options) { o.SyncIndex = true })
			q, _ := s.Queue("q", true)
			delivered := map[uint64]bool{}
			id := 0
			for op := 0; op < 12; op++ {
				n := 1 + rng.IntN(3*leaseAhead)
				recs := make([]segment.Record, n)
				for i := range recs {
					recs[i] = rec(id, true)
					id++
				}
				appendWait(t, q, recs...)
				for _, m := range q.NextReady(nil, rng.IntN(n+1)) {
					delivered[m.Seq] = true // an ack the crash loses returns it
					if rng.IntN(4) == 0 {
						q.Ack(m.Seq)
					}
				}
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, 5))})
			s.Close()

			s2 := open(t, crashed, "data")
			defer s2.Close()
			q2, _ := s2.Queue("q", true)
			unflagged, extra := 0, 0
			for _, m := range q2.NextReady(nil, 1<<30) {
				switch {
				case delivered[m.Seq] && !m.Redelivered:
					unflagged++
				case !delivered[m.Seq] && m.Redelivered:
					extra++
				}
			}
			if unflagged > 0 {
				t.Fatalf("%d messages delivered before the crash came back without the redelivered flag", unflagged)
			}
			if extra > leaseAhead {
				t.Fatalf("%d messages never delivered came back flagged (lease %d)", extra, leaseAhead)
			}
		})
	}
}
