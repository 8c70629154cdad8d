package store

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStats: segments, bytes on disk, compression and sync rounds follow
// what was written, and the latency histogram counts every round.
func TestStats(t *testing.T) {
	s := open(t, vfs.NewMem(), "data")
	defer s.Close()
	st := s.Stats()
	if st.Queues != 0 || st.Segments != 0 || st.DiskBytes != 0 || st.Sync.Rounds != 0 {
		t.Fatalf("empty store: %+v", st)
	}
	q, err := s.Queue("q1", true)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		appendN(t, q, i*100, 100, true)
	}
	st = s.Stats()
	if st.Queues != 1 || st.Segments < 1 || st.DiskBytes <= 0 {
		t.Fatalf("after appends: %+v", st)
	}
	if st.RawBytes <= 0 || st.StoredBytes <= 0 || st.StoredBytes >= st.RawBytes {
		t.Fatalf("compressible records: raw %d stored %d", st.RawBytes, st.StoredBytes)
	}
	if st.Sync.Rounds < 10 {
		t.Fatalf("rounds %d, want >= 10 (one per durable append)", st.Sync.Rounds)
	}
	var n uint64
	for _, c := range st.Sync.Counts {
		n += c
	}
	if n < 10 || int64(n) > st.Sync.Rounds || st.Sync.Seconds <= 0 {
		t.Fatalf("histogram counts %d rounds over %fs, want %d", n, st.Sync.Seconds, st.Sync.Rounds)
	}
}
