package segment

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func randomPool(n, size int) [][]byte {
	r := rand.New(rand.NewSource(1))
	pool := make([][]byte, n)
	for i := range pool {
		pool[i] = make([]byte, size)
		r.Read(pool[i])
	}
	return pool
}

// BenchmarkAppendSyncer measures group-commit append throughput: several
// appenders, each on its own durable log, append batches of 256 records and
// wait for durability through one shared Syncer (at most 16 batches in flight
// per appender).
func BenchmarkAppendSyncer(b *testing.B) {
	for _, size := range []int{16, 1024, 16 << 10} {
		for _, payload := range []string{"json", "random"} {
			for _, codec := range allCodecs {
				b.Run(fmt.Sprintf("%s/%d/%s", payload, size, codec), func(b *testing.B) {
					benchAppend(b, codec, size, payload)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, codec Codec, size int, payload string) {
	const appenders, batch, window = 4, 256, 16
	var pool [][]byte
	if payload == "json" {
		pool = jsonPool(4096, size)
	} else {
		pool = randomPool(1024, size)
	}
	dir := b.TempDir()
	s := NewSyncer(SyncerOptions{})
	logs := make([]*Log, appenders)
	for i := range logs {
		logs[i] = openT(b, vfs.Default, fmt.Sprintf("%s/q%d", dir, i), Options{Codec: codec, Sync: true})
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			l := logs[a]
			sem := make(chan struct{}, window)
			done := func(err error) {
				if err != nil {
					b.Error(err)
				}
				<-sem
			}
			recs := make([]Record, batch)
			n := b.N / appenders
			if a == 0 {
				n += b.N % appenders
			}
			for i := 0; i < n; i += batch {
				k := min(batch, n-i)
				for j := 0; j < k; j++ {
					recs[j] = Record{Flags: FlagPersistent, Exchange: "ex", RoutingKey: "rk", Body: pool[(i+j)%len(pool)]}
				}
				sem <- struct{}{}
				if _, err := s.AppendDurable(l, recs[:k], done); err != nil {
					b.Error(err)
					return
				}
			}
			for i := 0; i < window; i++ {
				sem <- struct{}{}
			}
		}(a)
	}
	wg.Wait()
	b.StopTimer()
	s.Close()
	var raw, stored int64
	for _, l := range logs {
		st := l.Stats()
		raw += st.RawBytes
		stored += st.StoredBytes
		l.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
	if stored > 0 {
		b.ReportMetric(float64(raw)/float64(stored), "ratio")
	}
	b.ReportMetric(float64(s.Rounds()), "rounds")
}

// BenchmarkReadSequential reads a sealed log of 1 KiB JSON-like records in
// sequence order through the chunk cache.
func BenchmarkReadSequential(b *testing.B) {
	for _, codec := range allCodecs {
		b.Run(codec.String(), func(b *testing.B) {
			const n = 200_000
			fs := vfs.Default
			dir := b.TempDir()
			l := openT(b, fs, dir, Options{Codec: codec})
			pool := jsonPool(4096, 1024)
			for i := 0; i < n; i++ {
				if _, err := l.Append(Record{Body: pool[i%len(pool)]}); err != nil {
					b.Fatal(err)
				}
			}
			l.Close()
			l = openT(b, fs, dir, Options{Codec: codec})
			defer l.Close()
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			var sum int
			fn := func(r *Record) error { sum += len(r.Body); return nil }
			for i := 0; i < b.N; i++ {
				if err := l.View(uint64(i%n)+1, fn); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
		})
	}
}

// BenchmarkEncodeChunk measures sealing cost alone (one core): encoding a
// 1 MiB chunk of 1 KiB JSON-like records, per codec.
func BenchmarkEncodeChunk(b *testing.B) {
	pool := jsonPool(1024, 1024)
	var raw []byte
	for i := 0; len(raw) < 1<<20; i++ {
		r := Record{Exchange: "ex", RoutingKey: "rk", Body: pool[i%len(pool)]}
		n := recordBodySize(&r, 0)
		raw = appendRecord(raw, &r, 0, n)
	}
	for _, codec := range allCodecs {
		b.Run(codec.String(), func(b *testing.B) {
			var dst []byte
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out, err := encodeChunk(dst, raw, codec, 1, 1000)
				if err != nil {
					b.Fatal(err)
				}
				dst = out
			}
			b.ReportMetric(float64(len(raw))/float64(len(dst)), "ratio")
		})
	}
}
