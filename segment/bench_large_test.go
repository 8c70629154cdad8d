package segment

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkAppendLarge appends 1 MiB persistent bodies (random, so
// incompressible) through the Syncer, 8 in flight, and reports the bytes
// allocated per record: with owned bodies the log writes from the caller's
// buffer; copied ones go through the pending buffer.
func BenchmarkAppendLarge(b *testing.B) {
	for _, owned := range []bool{false, true} {
		b.Run(fmt.Sprintf("owned=%v", owned), func(b *testing.B) {
			pool := randomPool(16, 1<<20)
			l := openT(b, vfs.Default, b.TempDir(), Options{Sync: true})
			s := NewSyncer(SyncerOptions{})
			sem := make(chan struct{}, 8)
			var wg sync.WaitGroup
			b.SetBytes(1 << 20)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				wg.Add(1)
				rec := Record{Flags: FlagPersistent, Body: pool[i%len(pool)], Owned: owned}
				if _, err := s.AppendDurable(l, []Record{rec}, func(error) { <-sem; wg.Done() }); err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 {
					l.RemoveBelow(uint64(i - 32))
				}
			}
			wg.Wait()
			b.StopTimer()
			s.Close()
			l.Close()
		})
	}
}
