package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

// prioRec is a record whose level is its first body byte.
func prioRec(id, level int) segment.Record {
	r := rec(id, true)
	r.Body = append([]byte{byte(level)}, r.Body...)
	return r
}

func levelOfBody(r *segment.Record) uint8 { return min(r.Body[0], 5) }

func prioIDs(t *testing.T, ms []Message) []int {
	var ids []int
	for _, m := range ms {
		m.Record.Body = m.Record.Body[1:]
		ids = append(ids, idOf(t, m))
	}
	return ids
}

func drainPrio(pq *PriorityQueue, n int) []Message {
	var out []Message
	pq.Deliver(n, func(m *Message) Verdict {
		c := *m
		c.Record.Body = slices.Clone(m.Record.Body)
		out = append(out, c)
		return Take
	})
	return out
}

// TestPriorityQueue: highest level first, FIFO within a level, levels
// capped by levelOf; acks and requeues find their level; only used levels
// hold files and state, and they come back after a restart.
func TestPriorityQueue(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	pq, err := s.PriorityQueue(index.Queue{ID: "pq", Durable: true}, 5, levelOfBody)
	if err != nil {
		t.Fatal(err)
	}
	levels := []int{0, 3, 5, 9, 1, 0, 5, 200, 3}
	var recs []segment.Record
	for i, l := range levels {
		recs = append(recs, prioRec(i, l))
	}
	done := make(chan error, 1)
	if _, err := pq.Append(recs, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if pq.Ready() != len(levels) || !slices.Equal(pq.Levels(), []int{5, 3, 1, 0}) {
		t.Fatalf("ready %d, levels %v", pq.Ready(), pq.Levels())
	}
	if _, err := os.Stat(filepath.Join(dir, queuesDir, "pq.p4")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unused level has a log: %v", err)
	}
	got := drainPrio(pq, 4)
	if ids := prioIDs(t, got); !slices.Equal(ids, []int{2, 3, 6, 7}) {
		t.Fatalf("first four = %v, want the level-5 ones in order", ids)
	}
	// Requeue one of level 5 and ack the others: it comes back first.
	pq.Requeue([]uint64{got[1].Seq})
	if n := pq.AckMany([]uint64{got[0].Seq, got[2].Seq, got[3].Seq}); n != 3 {
		t.Fatalf("acked %d", n)
	}
	s.Close()

	s = open(t, vfs.Default, dir)
	defer s.Close()
	pq, err = s.PriorityQueue(index.Queue{ID: "pq", Durable: true}, 5, levelOfBody)
	if err != nil {
		t.Fatal(err)
	}
	rest := drainPrio(pq, 100)
	if ids := prioIDs(t, rest); !slices.Equal(ids, []int{3, 1, 8, 4, 0, 5}) {
		t.Fatalf("after restart = %v", ids)
	}
	if !rest[0].Redelivered || rest[1].Redelivered {
		t.Fatalf("redelivered flags %v %v", rest[0].Redelivered, rest[1].Redelivered)
	}
	if r, err := pq.Read(rest[2].Seq); err != nil || r.Body[0] != 3 {
		t.Fatalf("Read: %v %v", r.Body, err)
	}
	if err := pq.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := pq.Append(recs[:1], nil); !errors.Is(err, ErrDeleted) {
		t.Fatalf("append after delete: %v", err)
	}
	for _, l := range []int{0, 1, 3, 5} {
		if _, err := os.Stat(filepath.Join(dir, queuesDir, levelID("pq", l))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("level %d left after delete: %v", l, err)
		}
	}
}
