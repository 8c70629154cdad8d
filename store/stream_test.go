package store

import (
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

func streamAppend(t *testing.T, st *Stream, from, n int, ts int64) {
	t.Helper()
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i] = rec(from+i, true)
		recs[i].Timestamp = ts
		recs[i].Body = append(recs[i].Body, make([]byte, 200)...)
	}
	done := make(chan error, 1)
	if _, err := st.Append(recs, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func streamIDs(t *testing.T, st *Stream, from uint64, max int) ([]int, uint64) {
	t.Helper()
	var ids []int
	next, err := st.Read(from, func(seq uint64, r *segment.Record) bool {
		if len(ids) == max {
			return false
		}
		ids = append(ids, idOf(t, Message{Record: segment.Record{Body: r.Body[:16]}}))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, next
}

// TestStream: reading does not consume; offsets, "last", timestamps;
// retention by size and by age drops whole segments, never the last, and
// the first retained offset survives a restart.
func TestStream(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	st, err := s.Stream(index.Queue{ID: "st"}, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	for b := 0; b < 10; b++ {
		streamAppend(t, st, b*10, 10, base+int64(b)*60_000)
	}
	if st.Len() != 100 || st.First() != 1 || st.Next() != 101 {
		t.Fatalf("len %d first %d next %d", st.Len(), st.First(), st.Next())
	}
	ids, next := streamIDs(t, st, 1, 5)
	if !slices.Equal(ids, []int{0, 1, 2, 3, 4}) || next != 6 {
		t.Fatalf("read %v next %d", ids, next)
	}
	// A second reader sees the same messages: nothing was consumed.
	if ids, _ := streamIDs(t, st, 3, 2); !slices.Equal(ids, []int{2, 3}) || st.Len() != 100 {
		t.Fatalf("second reader %v, len %d", ids, st.Len())
	}
	if l := st.LastChunk(); l != 91 {
		t.Fatalf("last chunk starts at %d, want 91", l)
	}
	if at := st.SeekTime(base + 3*60_000); at != 31 {
		t.Fatalf("seek to batch 3's time = %d, want 31", at)
	}
	if at := st.SeekTime(base - 1); at != 1 {
		t.Fatalf("seek before everything = %d", at)
	}
	if at := st.SeekTime(time.Now().UnixMilli()); at != 101 {
		t.Fatalf("seek after everything = %d", at)
	}
	segs := st.q.log.Segments()
	if len(segs) < 4 {
		t.Fatalf("only %d segments at a 4 KiB segment size", len(segs))
	}
	// By age: batches older than 4.5 minutes after base go, whole segments.
	now := time.UnixMilli(base + 9*60_000)
	gone, err := st.Retain(Retention{MaxAge: 4*time.Minute + 30*time.Second}, now)
	if err != nil {
		t.Fatal(err)
	}
	first := st.First()
	if gone == 0 || int(first-1) != gone || !slices.Contains(segs, first) {
		t.Fatalf("retention removed %d, first now %d (segments %v)", gone, first, segs)
	}
	if ids, _ := streamIDs(t, st, 1, 1); ids[0] != int(first-1) {
		t.Fatalf("reading from 1 after retention starts at id %d, first %d", ids[0], first)
	}
	// The oldest segment kept has a message younger than the limit; the
	// one before it (gone) had none.
	cutoff := now.Add(-4*time.Minute - 30*time.Second).UnixMilli()
	newest := func(seq uint64) int64 {
		var ts int64
		st.q.log.View(seq, func(r *segment.Record) error { ts = r.Timestamp; return nil })
		return ts
	}
	kept := st.q.log.Segments()
	if newest(kept[1]-1) < cutoff || newest(first-1) >= cutoff {
		t.Fatalf("age retention at the wrong segment: kept newest %d, dropped newest %d, cutoff %d",
			newest(kept[1]-1), newest(first-1), cutoff)
	}
	// By size: down to at most 2 segments' worth (at least the last).
	if _, err := st.Retain(Retention{MaxBytes: 1}, now); err != nil {
		t.Fatal(err)
	}
	if n := len(st.q.log.Segments()); n != 1 {
		t.Fatalf("%d segments left with a 1-byte limit; the last one must stay", n)
	}
	first, length := st.First(), st.Len()
	if length == 0 || int(st.Next()-first) != length {
		t.Fatalf("after size retention: first %d next %d len %d", first, st.Next(), length)
	}
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	st, _ = s.Stream(index.Queue{ID: "st"}, 4<<10)
	if st.First() != first || st.Len() != length || st.LastChunk() != st.Next()-1 {
		t.Fatalf("after restart: first %d len %d last %d; want %d %d %d", st.First(), st.Len(), st.LastChunk(), first, length, st.Next()-1)
	}
}
