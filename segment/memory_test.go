package segment

import (
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// jsonPool returns n distinct JSON-like bodies of size bytes.
func jsonPool(n, size int) [][]byte {
	pool := make([][]byte, n)
	for i := range pool {
		pool[i] = jsonBody(uint64(i), size)
	}
	return pool
}

// TestMemoryBounded appends and reads 5 million 1 KiB records through the
// Syncer and checks that the live heap stays under 64 MiB.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("big test")
	}
	const total, batch = 5_000_000, 256
	dir := t.TempDir()
	l := openT(t, vfs.Default, dir, Options{Sync: true})
	defer l.Close()
	s := NewSyncer(SyncerOptions{})
	pool := jsonPool(4096, 1024)
	recs := make([]Record, batch)
	var peak uint64
	var ms runtime.MemStats
	// Live heap at each sample (after a collection): what the log
	// retains, not how far the collector lets garbage grow on a busy
	// machine.
	sample := func() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak {
			peak = ms.HeapInuse
		}
	}
	inflight := make(chan struct{}, 64)
	done := func(err error) {
		if err != nil {
			t.Error(err)
		}
		<-inflight
	}
	for i := 0; i < total; i += batch {
		for k := range recs {
			recs[k] = Record{Flags: FlagPersistent, Exchange: "orders", RoutingKey: "order.created", Body: pool[(i+k)%len(pool)]}
		}
		inflight <- struct{}{}
		if _, err := s.AppendDurable(l, recs, done); err != nil {
			t.Fatal(err)
		}
		if i%(batch*400) == 0 {
			sample()
		}
	}
	s.Close()
	sample()
	st := l.Stats()
	for seq := uint64(1); seq <= total; seq++ {
		err := l.View(seq, func(r *Record) error {
			if len(r.Body) != 1024 || r.Body[0] != '{' {
				t.Fatalf("seq %d: bad body", seq)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seq%400_000 == 0 {
			sample()
		}
	}
	sample()
	t.Logf("5M x 1 KiB: peak HeapInuse %.1f MiB, %d chunks, raw %d MiB, on disk %d MiB, %d decodes",
		float64(peak)/(1<<20), st.Chunks, st.RawBytes>>20, st.StoredBytes>>20, l.Stats().Decodes)
	if peak > 64<<20 {
		t.Fatalf("peak live heap %d MiB > 64 MiB", peak>>20)
	}
}
