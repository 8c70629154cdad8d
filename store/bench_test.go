package store

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/segment"
)

// BenchmarkCycle measures the store's hot path for 1 KiB persistent
// messages on a durable queue on real files: inflight messages are appended
// one Append call each (the group-commit Syncer gathers them into rounds),
// their onDurable confirms awaited, then they are fetched with NextReady
// and acked with AckMany. One op is one message.
func BenchmarkCycle(b *testing.B) {
	for _, inflight := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			s := open(b, vfs.Default, b.TempDir())
			defer s.Close()
			q, err := s.Queue("bench", true)
			if err != nil {
				b.Fatal(err)
			}
			body := backlogBody(nil, 1)
			for len(body) < 1024 {
				body = fmt.Appendf(body, `{"sku":"A-%d","qty":%d},`, len(body), len(body)%7)
			}
			body = body[:1024]
			recs := []segment.Record{{Flags: segment.FlagPersistent, Exchange: "orders",
				RoutingKey: "orders.eu", Props: []byte{0x90, 0x00, 0x02}, Body: body}}
			var wg sync.WaitGroup
			var failed error
			var mu sync.Mutex
			done := func(err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				wg.Done()
			}
			msgs := make([]Message, 0, inflight)
			acks := make([]uint64, 0, inflight)
			rounds0 := s.syncer.Rounds()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += inflight {
				n := min(inflight, b.N-i)
				wg.Add(n)
				for j := 0; j < n; j++ {
					if _, err := q.Append(recs, done); err != nil {
						b.Fatal(err)
					}
				}
				wg.Wait()
				msgs = q.NextReady(msgs[:0], n)
				if len(msgs) != n {
					b.Fatalf("NextReady returned %d of %d", len(msgs), n)
				}
				acks = acks[:0]
				for _, m := range msgs {
					acks = append(acks, m.Seq)
				}
				if q.AckMany(acks) != n {
					b.Fatal("ack failed")
				}
			}
			b.StopTimer()
			if failed != nil {
				b.Fatal(failed)
			}
			b.ReportMetric(float64(s.syncer.Rounds()-rounds0)/float64(b.N), "rounds/msg")
		})
	}
}
