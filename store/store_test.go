package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/segment"
)

func open(t testing.TB, fs vfs.FS, dir string, mod ...func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: dir, FS: fs, Logger: testLogger, ReclaimInterval: -1}
	for _, m := range mod {
		m(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(id int, persistent bool) segment.Record {
	r := segment.Record{
		Timestamp:  int64(id),
		Exchange:   "ex",
		RoutingKey: "rk",
		Props:      []byte{0x10, 0x00, 2},
		Body:       []byte(fmt.Sprintf("message-%08d", id)),
	}
	if persistent {
		r.Flags = segment.FlagPersistent
	}
	return r
}

func idOf(t testing.TB, m Message) int {
	t.Helper()
	var id int
	if _, err := fmt.Sscanf(string(m.Record.Body), "message-%08d", &id); err != nil {
		t.Fatalf("bad body %q: %v", m.Record.Body, err)
	}
	return id
}

// appendWait appends recs and waits for onDurable.
func appendWait(t testing.TB, q *Queue, recs ...segment.Record) uint64 {
	t.Helper()
	done := make(chan error, 1)
	first, err := q.Append(recs, func(err error) { done <- err })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return first
}

func appendN(t testing.TB, q *Queue, from, n int, persistent bool) {
	t.Helper()
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i] = rec(from+i, persistent)
	}
	appendWait(t, q, recs...)
}

func seqs(ms []Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func checkCounts(t testing.TB, q *Queue, ready, unacked int) {
	t.Helper()
	if r, u := q.Ready(), q.Unacked(); r != ready || u != unacked {
		t.Fatalf("ready/unacked = %d/%d, want %d/%d", r, u, ready, unacked)
	}
}

func TestAppendDeliverAck(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	q, err := s.Queue("q1", true)
	if err != nil {
		t.Fatal(err)
	}
	if first := appendWait(t, q, rec(0, true), rec(1, true)); first != 1 {
		t.Fatalf("first seq = %d, want 1", first)
	}
	appendN(t, q, 2, 98, true)
	checkCounts(t, q, 100, 0)
	ms := q.NextReady(nil, 10)
	if !slices.Equal(seqs(ms), []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("NextReady = %v", seqs(ms))
	}
	for i, m := range ms {
		if idOf(t, m) != i || m.Redelivered || m.Record.Exchange != "ex" || m.Record.Flags != segment.FlagPersistent {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	checkCounts(t, q, 90, 10)
	if !q.Ack(3) || q.Ack(3) {
		t.Fatal("Ack(3) twice should succeed once")
	}
	if q.Ack(50) || q.Ack(0) || q.Ack(1000) {
		t.Fatal("ack of an undelivered sequence accepted")
	}
	if n := q.AckMany([]uint64{1, 2, 3, 4}); n != 3 {
		t.Fatalf("AckMany = %d, want 3", n)
	}
	checkCounts(t, q, 90, 6)
	if q.acks.watermark != 5 {
		t.Fatalf("watermark = %d, want 5", q.acks.watermark)
	}
	if got := q.NextReady(nil, 0); len(got) != 0 {
		t.Fatalf("NextReady(0) returned %d", len(got))
	}
	rest := q.NextReady(nil, 1000)
	if len(rest) != 90 || rest[0].Seq != 11 || rest[89].Seq != 100 {
		t.Fatalf("rest: %d messages", len(rest))
	}
	checkCounts(t, q, 0, 96)
}

func TestOutOfOrderAcks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	const n = 2000
	appendN(t, q, 0, n, true)
	ms := q.NextReady(nil, n)
	if len(ms) != n {
		t.Fatalf("delivered %d", len(ms))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	order := rng.Perm(n)
	acked := map[uint64]bool{}
	for i, k := range order[:n/2] {
		seq := ms[k].Seq
		if !q.Ack(seq) {
			t.Fatalf("Ack(%d) failed", seq)
		}
		acked[seq] = true
		if i%97 == 0 {
			checkAckModel(t, &q.acks, acked, uint64(n+1))
		}
	}
	checkAckModel(t, &q.acks, acked, uint64(n+1))
	checkCounts(t, q, 0, n/2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart exactly the unacked half comes back, redelivered.
	s = open(t, vfs.Default, dir)
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != 1 || rc[0].ID != "q" || rc[0].Ready != n/2 || rc[0].Unacked != 0 {
		t.Fatalf("Recovered = %+v", rc)
	}
	q, _ = s.Queue("q", true)
	back := q.NextReady(nil, n)
	if len(back) != n/2 {
		t.Fatalf("after reopen %d messages, want %d", len(back), n/2)
	}
	for _, m := range back {
		if acked[m.Seq] || !m.Redelivered || idOf(t, m) != int(m.Seq-1) {
			t.Fatalf("after reopen: seq %d acked=%v redelivered=%v", m.Seq, acked[m.Seq], m.Redelivered)
		}
	}
	// Ack the rest in reverse order: everything collapses into the watermark.
	for i := len(back) - 1; i >= 0; i-- {
		q.Ack(back[i].Seq)
	}
	if q.acks.watermark != n+1 || len(q.acks.ranges) != 0 {
		t.Fatalf("watermark %d, %d ranges", q.acks.watermark, len(q.acks.ranges))
	}
	checkCounts(t, q, 0, 0)
}

func checkAckModel(t *testing.T, a *ackSet, acked map[uint64]bool, end uint64) {
	t.Helper()
	for seq := uint64(1); seq < end; seq++ {
		if a.contains(seq) != acked[seq] {
			t.Fatalf("contains(%d) = %v, want %v", seq, a.contains(seq), acked[seq])
		}
	}
	for i, r := range a.ranges {
		if r.Lo >= r.Hi || r.Lo <= a.watermark || (i > 0 && r.Lo <= a.ranges[i-1].Hi) {
			t.Fatalf("bad ranges %v (watermark %d)", a.ranges, a.watermark)
		}
	}
	if a.watermark > 1 && !acked[a.watermark-1] || acked[a.watermark] {
		t.Fatalf("watermark %d not maximal", a.watermark)
	}
}

func TestAckSetRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := 0; round < 50; round++ {
		a := ackSet{watermark: 1}
		model := map[uint64]bool{}
		const end = 300
		for i := 0; i < 200; i++ {
			lo := 1 + uint64(rng.IntN(end-1))
			hi := lo + 1
			if rng.IntN(4) == 0 {
				hi = min(lo+uint64(rng.IntN(20)), end)
			}
			a.add(lo, hi)
			for s := lo; s < hi; s++ {
				model[s] = true
			}
			lo2, hi2 := 1+uint64(rng.IntN(end-1)), uint64(end)
			var want uint64
			for s := lo2; s < hi2; s++ {
				if model[s] {
					want++
				}
			}
			if got := a.countIn(lo2, hi2); got != want {
				t.Fatalf("countIn(%d,%d) = %d, want %d", lo2, hi2, got, want)
			}
		}
		checkAckModel(t, &a, model, 320)
		lim := uint64(rng.IntN(end))
		w, rs := a.snapshot(lim)
		b := ackSet{watermark: w}
		for _, r := range rs {
			b.add(r.Lo, r.Hi)
		}
		for s := uint64(1); s < 320; s++ {
			if want := model[s] && s < lim; b.contains(s) != want {
				t.Fatalf("snapshot(%d): contains(%d) = %v", lim, s, b.contains(s))
			}
		}
	}
}

func TestRequeue(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 10, true)
	ms := q.NextReady(nil, 6)
	if n := q.Requeue([]uint64{5, 2, 5, 99, 7}); n != 2 {
		t.Fatalf("Requeue = %d, want 2", n)
	}
	checkCounts(t, q, 6, 4)
	if q.Ack(2) {
		t.Fatal("acked a requeued message")
	}
	got := q.NextReady(nil, 3)
	if !slices.Equal(seqs(got), []uint64{2, 5, 7}) || !got[0].Redelivered || !got[1].Redelivered || got[2].Redelivered {
		t.Fatalf("after requeue: %v %+v", seqs(got), got)
	}
	if idOf(t, got[1]) != 4 || idOf(t, ms[4]) != 4 {
		t.Fatal("requeued message has the wrong body")
	}
	// A requeue below the cursor interleaves in sequence order.
	q.Requeue([]uint64{6, 1})
	got = q.NextReady(nil, 10)
	if !slices.Equal(seqs(got), []uint64{1, 6, 8, 9, 10}) {
		t.Fatalf("second round: %v", seqs(got))
	}
	checkCounts(t, q, 0, 10)
	if n := q.AckMany([]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}); n != 10 {
		t.Fatalf("AckMany = %d", n)
	}
	checkCounts(t, q, 0, 0)
}

func TestPurge(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 10, true)
	q.NextReady(nil, 3) // 1,2,3 unacked
	q.Requeue([]uint64{2})
	if n := q.Purge(); n != 8 {
		t.Fatalf("Purge = %d, want 8", n)
	}
	checkCounts(t, q, 0, 2)
	if got := q.NextReady(nil, 10); len(got) != 0 {
		t.Fatalf("purged messages delivered: %v", seqs(got))
	}
	if !q.Ack(3) || q.Ack(2) {
		t.Fatal("ack after purge")
	}
	appendN(t, q, 10, 2, true)
	if got := q.NextReady(nil, 10); !slices.Equal(seqs(got), []uint64{11, 12}) {
		t.Fatalf("after purge: %v", seqs(got))
	}
	if n := q.Purge(); n != 0 {
		t.Fatalf("empty purge = %d", n)
	}
	s.Close()
	// Only seq 1 (unacked, delivered) comes back.
	s = open(t, vfs.Default, dir)
	defer s.Close()
	q, _ = s.Queue("q", true)
	got := q.NextReady(nil, 10)
	if !slices.Equal(seqs(got), []uint64{1, 11, 12}) || !got[0].Redelivered {
		t.Fatalf("after reopen: %v", seqs(got))
	}
}

func TestRedeliveredAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 10, true)
	q.NextReady(nil, 5)
	q.Ack(2)
	q.Ack(4)
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	if rc := s.Recovered(); len(rc) != 1 || rc[0].Ready != 8 {
		t.Fatalf("Recovered = %+v", rc)
	}
	q, _ = s.Queue("q", true)
	checkCounts(t, q, 8, 0)
	got := q.NextReady(nil, 100)
	if !slices.Equal(seqs(got), []uint64{1, 3, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("after reopen: %v", seqs(got))
	}
	for _, m := range got {
		if want := m.Seq <= 5; m.Redelivered != want {
			t.Fatalf("seq %d redelivered = %v, want %v", m.Seq, m.Redelivered, want)
		}
	}
}

func TestTransientQueueRemoved(t *testing.T) {
	dir := t.TempDir()
	// A log left under transient/ by a crash goes at the next Open.
	stale := filepath.Join(dir, transientDir, "old")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "00000000000000000001.seg"), []byte("x"), 0o644)
	s := open(t, vfs.Default, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale transient log survived Open: %v", err)
	}
	tq, _ := s.Queue("tq", false)
	dq, _ := s.Queue("dq", true)
	var fired bool
	if _, err := tq.Append([]segment.Record{rec(1, true)}, func(err error) { fired = err == nil }); err != nil {
		t.Fatal(err)
	}
	if !fired {
		t.Fatal("onDurable of a transient queue did not fire at once")
	}
	appendN(t, dq, 0, 3, true)
	if got := tq.NextReady(nil, 5); len(got) != 1 {
		t.Fatalf("transient queue delivered %d", len(got))
	}
	if _, err := s.Queue("tq", true); !errors.Is(err, ErrDurability) {
		t.Fatalf("durability change: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b", "x.deleted"} {
		if _, err := s.Queue(bad, true); !errors.Is(err, ErrInvalidID) {
			t.Fatalf("Queue(%q): %v", bad, err)
		}
	}
	// A small transient queue lives in memory: no file at all.
	if _, err := os.Stat(filepath.Join(dir, transientDir, "tq")); !os.IsNotExist(err) {
		t.Fatalf("transient queue wrote a file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, queuesDir, "tq")); !os.IsNotExist(err) {
		t.Fatalf("transient queue in the durable tree: %v", err)
	}
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != 1 || rc[0].ID != "dq" || rc[0].Ready != 3 {
		t.Fatalf("Recovered = %+v", rc)
	}
	tq, _ = s.Queue("tq", false)
	checkCounts(t, tq, 0, 0)
}

// TestTransientQueueSpills: a transient queue with a backlog writes it to
// disk in chunks instead of holding it in RAM, and drops its files once
// drained.
func TestTransientQueueSpills(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) { o.ChunkSize = 16 << 10; o.Codec = segment.CodecNone })
	defer s.Close()
	q, _ := s.Queue("t", false)
	body := make([]byte, 1000)
	for i := 0; i < 500; i++ {
		r := rec(i, false)
		r.Body = append(r.Body, body...)
		if _, err := q.Append([]segment.Record{r}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tdir := filepath.Join(dir, transientDir, "t")
	var size int64
	for i := 0; i < 200; i++ {
		if size, _ = dirSize(t, tdir); size > 400<<10 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if size < 400<<10 {
		t.Fatalf("transient backlog of 500 KB not spilled: %d bytes on disk", size)
	}
	ms := q.NextReady(nil, 500)
	if len(ms) != 500 {
		t.Fatalf("delivered %d", len(ms))
	}
	for _, m := range ms {
		q.Ack(m.Seq)
	}
	if err := s.Reclaim(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tdir); !os.IsNotExist(err) {
		t.Fatalf("drained transient queue kept its directory: %v", err)
	}
}

func TestTransientMessagesInDurableQueue(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	var recs []segment.Record
	for i := 0; i < 20; i++ {
		recs = append(recs, rec(i, i%3 == 0))
	}
	// A batch with no persistent record is confirmed at once.
	fired := false
	if _, err := q.Append([]segment.Record{rec(100, false)}, func(err error) { fired = true }); err != nil || !fired {
		t.Fatalf("transient append: fired=%v err=%v", fired, err)
	}
	appendWait(t, q, recs...)
	checkCounts(t, q, 21, 0)
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	// Non-persistent records do not survive, and are not counted.
	if rc := s.Recovered(); len(rc) != 1 || rc[0].Ready != 7 || rc[0].Dropped != 14 {
		t.Fatalf("Recovered = %+v", rc)
	}
	q, _ = s.Queue("q", true)
	checkCounts(t, q, 7, 0)
	got := q.NextReady(nil, 100)
	if len(got) != 7 {
		t.Fatalf("after reopen %d messages, want the 7 persistent ones", len(got))
	}
	for _, m := range got {
		if m.Record.Flags&segment.FlagPersistent == 0 || idOf(t, m)%3 != 0 {
			t.Fatalf("non-persistent message survived a restart: %q", m.Record.Body)
		}
	}
	checkCounts(t, q, 0, 7)
	// New transient messages after the restart are delivered normally.
	q.Append([]segment.Record{rec(200, false)}, nil)
	if got := q.NextReady(nil, 5); len(got) != 1 || idOf(t, got[0]) != 200 {
		t.Fatalf("new transient message: %v", got)
	}
}

func TestDeleteQueue(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	other, _ := s.Queue("q2", true)
	appendN(t, q, 0, 5, true)
	appendN(t, other, 0, 5, true)
	q.NextReady(nil, 2)
	if err := s.DeleteQueue("q"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteQueue("q"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := q.Append([]segment.Record{rec(9, true)}, nil); !errors.Is(err, ErrDeleted) {
		t.Fatalf("append after delete: %v", err)
	}
	if q.Ack(1) || len(q.NextReady(nil, 5)) != 0 {
		t.Fatal("deleted queue still serves")
	}
	if _, err := os.Stat(filepath.Join(dir, queuesDir, "q")); !os.IsNotExist(err) {
		t.Fatalf("log dir survived delete: %v", err)
	}
	if _, err := s.Index().LogState("q"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("log state survived delete: %v", err)
	}
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	if rc := s.Recovered(); len(rc) != 1 || rc[0].ID != "q2" || rc[0].Ready != 5 {
		t.Fatalf("Recovered = %+v", rc)
	}
	// A new queue with the deleted ID starts empty.
	q, _ = s.Queue("q", true)
	checkCounts(t, q, 0, 0)
}

// waitCommitted runs a sync round for every queue and commits the index
// state it covers, so that Reclaim sees the acks committed.
func waitCommitted(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	var qs []*Queue
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	for _, q := range qs {
		if !q.durable {
			continue
		}
		done := make(chan error, 1)
		s.syncer.Add(q.log, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.commitStates(); err != nil {
		t.Fatal(err)
	}
}

func dirSize(t testing.TB, dir string) (size int64, files int) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			size += info.Size()
			files++
		}
		return nil
	})
	return size, files
}

func TestSpaceComesBack(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) { o.SegmentSize = 64 << 10; o.Codec = segment.CodecNone })
	defer s.Close()
	q, _ := s.Queue("q", true)
	body := make([]byte, 1024)
	for i := 0; i < 2000; i += 100 {
		recs := make([]segment.Record, 100)
		for j := range recs {
			recs[j] = segment.Record{Flags: segment.FlagPersistent, Body: body}
		}
		appendWait(t, q, recs...)
	}
	qdir := filepath.Join(dir, queuesDir, "q")
	full, files := dirSize(t, qdir)
	if full < 2000*1024 || files < 20 {
		t.Fatalf("log holds %d bytes in %d files", full, files)
	}
	// Ack the first half: the segments wholly below the watermark go.
	ms := q.NextReady(nil, 1000)
	for _, m := range ms {
		q.Ack(m.Seq)
	}
	waitCommitted(t, s)
	if err := s.Reclaim(); err != nil {
		t.Fatal(err)
	}
	half, _ := dirSize(t, qdir)
	if half > full*6/10 || half < full*4/10 {
		t.Fatalf("after acking half: %d of %d bytes", half, full)
	}
	// Ack the rest: the active segment goes too.
	for _, m := range q.NextReady(nil, 2000) {
		q.Ack(m.Seq)
	}
	waitCommitted(t, s)
	if err := s.Reclaim(); err != nil {
		t.Fatal(err)
	}
	empty, files := dirSize(t, qdir)
	if empty > 4096 || files > 1 {
		t.Fatalf("after acking all: %d bytes in %d files", empty, files)
	}
	// The queue keeps working.
	appendN(t, q, 0, 3, true)
	if got := q.NextReady(nil, 5); !slices.Equal(seqs(got), []uint64{2001, 2002, 2003}) {
		t.Fatalf("after reclaim: %v", seqs(got))
	}
}

func TestBackgroundReclaim(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) { o.ReclaimInterval = 5 * time.Millisecond })
	defer s.Close()
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 100, true)
	for _, m := range q.NextReady(nil, 100) {
		q.Ack(m.Seq)
	}
	qdir := filepath.Join(dir, queuesDir, "q")
	for i := 0; i < 400; i++ {
		if _, err := os.Stat(qdir); len(q.log.Segments()) == 0 && os.IsNotExist(err) {
			return // no file, no directory
		}
		time.Sleep(5 * time.Millisecond)
	}
	size, files := dirSize(t, qdir)
	t.Fatalf("drained queue not reclaimed: %v, %d bytes in %d files", q.log.Segments(), size, files)
}

func TestConcurrentProducersConsumers(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir(), func(o *Options) { o.SegmentSize = 256 << 10; o.ReclaimInterval = time.Millisecond })
	defer s.Close()
	q, _ := s.Queue("q", true)
	const producers, per = 4, 2000
	var wg sync.WaitGroup
	var confirmed sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				confirmed.Add(1)
				q.Append([]segment.Record{rec(p*per+i, i%2 == 0)}, func(err error) {
					if err != nil {
						t.Error(err)
					}
					confirmed.Done()
				})
			}
		}(p)
	}
	seen := make([]bool, producers*per)
	var mu sync.Mutex
	var consumers sync.WaitGroup
	total := 0
	for c := 0; c < 3; c++ {
		consumers.Add(1)
		go func(c int) {
			defer consumers.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 9))
			var buf []Message
			for {
				mu.Lock()
				if total == producers*per {
					mu.Unlock()
					return
				}
				mu.Unlock()
				buf = q.NextReady(buf[:0], 16)
				var acks, requeue []uint64
				for _, m := range buf {
					if !m.Redelivered && rng.IntN(10) == 0 {
						requeue = append(requeue, m.Seq)
						continue
					}
					acks = append(acks, m.Seq)
				}
				q.Requeue(requeue)
				mu.Lock()
				for _, m := range buf {
					if slices.Contains(acks, m.Seq) {
						id := idOf(t, m)
						if seen[id] {
							t.Errorf("message %d acked twice", id)
						}
						seen[id] = true
						total++
					}
				}
				mu.Unlock()
				if n := q.AckMany(acks); n != len(acks) {
					t.Errorf("AckMany = %d of %d", n, len(acks))
				}
				if len(buf) == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}(c)
	}
	wg.Wait()
	confirmed.Wait()
	consumers.Wait()
	checkCounts(t, q, 0, 0)
	if q.acks.watermark != producers*per+1 || len(q.acks.ranges) != 0 {
		t.Fatalf("watermark %d, ranges %v", q.acks.watermark, q.acks.ranges)
	}
}

// TestStateNeverClaimsUndurable checks the commit side of the durability
// order: acks of records not yet fsynced are not written to the index.
func TestStateNeverClaimsUndurable(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 3, true)
	// Bypass the Syncer: records 4..8 stay unsynced in the log.
	q.mu.Lock()
	recs := []segment.Record{rec(3, true), rec(4, true), rec(5, true), rec(6, true), rec(7, true)}
	first, err := q.log.Append(recs...)
	q.next, q.ready = first+5, q.ready+5
	q.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	for _, m := range q.NextReadyLockedForTesting(8) {
		q.acks.add(m, m+1)
	}
	q.mu.Unlock()
	st, ok := q.stateForCommit()
	if !ok {
		t.Fatal("no state for a durable queue")
	}
	// Delivered may pass it: it is a lease on deliveries (index/lease.go).
	if d := q.log.DurableNext(); st.Watermark > d || st.NextSeq > d || len(st.Acked) != 0 {
		t.Fatalf("state %+v claims beyond durable %d", st, d)
	}
	if st.Watermark != 4 {
		t.Fatalf("watermark %d, want the durable 4", st.Watermark)
	}
	q.mu.Lock()
	dirty := q.dirty
	q.mu.Unlock()
	if !dirty {
		t.Fatal("clipped state not scheduled for the next commit")
	}
}

// NextReadyLockedForTesting marks up to n ready sequences delivered and
// returns them; q.mu must be held.
func (q *Queue) NextReadyLockedForTesting(n int) []uint64 {
	var out []uint64
	for len(out) < n && q.cursor < q.next {
		out = append(out, q.cursor)
		q.cursor++
		q.ready--
	}
	return out
}

// TestRecoveryClampsIndexToLog checks the recovery side: index state that
// claims more than the log holds (acks of records lost in a crash) is cut
// to the log, so new messages are not hidden.
func TestRecoveryClampsIndexToLog(t *testing.T) {
	cases := []struct {
		st         index.LogState
		ready      int
		want       []uint64
		redelivers []bool
	}{
		{index.LogState{NextSeq: 100, Watermark: 3, Acked: []index.Range{{Lo: 5, Hi: 50}}, Delivered: 90}, 2,
			[]uint64{3, 4, 6, 7}, []bool{true, true, false, false}},
		{index.LogState{NextSeq: 300, Watermark: 200, Acked: []index.Range{{Lo: 201, Hi: 250}}, Delivered: 300}, 0,
			[]uint64{6, 7}, []bool{false, false}},
		{index.LogState{NextSeq: 1, Watermark: 0}, 5, // older than segment removal: raised to the log's first
			[]uint64{1, 2, 3, 4, 5, 6, 7}, []bool{false, false, false, false, false, false, false}},
	}
	for i, c := range cases {
		dir := t.TempDir()
		s := open(t, vfs.Default, dir)
		q, _ := s.Queue("q", true)
		appendN(t, q, 0, 5, true)
		s.Close()
		db, err := index.Open(filepath.Join(dir, indexDir), index.Options{Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		b := db.NewBatch()
		b.SetLogState("q", c.st)
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		db.Close()
		s = open(t, vfs.Default, dir)
		q, _ = s.Queue("q", true)
		checkCounts(t, q, c.ready, 0)
		appendN(t, q, 100, 2, true)
		got := q.NextReady(nil, 10)
		if !slices.Equal(seqs(got), c.want) {
			t.Fatalf("case %d: after clamped recovery: %v, want %v", i, seqs(got), c.want)
		}
		for j, m := range got {
			if m.Redelivered != c.redelivers[j] {
				t.Fatalf("case %d: seq %d redelivered = %v", i, m.Seq, m.Redelivered)
			}
		}
		s.Close()
	}
}

// TestDeliverVerdicts checks the queue state after each verdict of a
// Deliver callback, for messages from the cursor and requeued ones.
func TestDeliverVerdicts(t *testing.T) {
	s := open(t, vfs.Default, t.TempDir())
	defer s.Close()
	q, err := s.Queue("verdicts", true)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 0, 6, true)
	// Take 1 and 2, drop 3, stop at 4.
	var seen []uint64
	taken := q.Deliver(10, func(m *Message) Verdict {
		seen = append(seen, m.Seq)
		switch m.Seq {
		case 3:
			return Drop
		case 4:
			return Stop
		}
		return Take
	})
	if taken != 2 || !slices.Equal(seen, []uint64{1, 2, 3, 4}) {
		t.Fatalf("taken %d, seen %v", taken, seen)
	}
	checkCounts(t, q, 3, 2) // 4, 5, 6 ready; 1, 2 unacked; 3 gone
	if q.Ack(3) {
		t.Fatal("a dropped message could be acked")
	}
	// A requeued message comes first, flagged; dropping it removes it.
	q.Requeue([]uint64{2})
	checkCounts(t, q, 4, 1)
	seen = seen[:0]
	q.Deliver(1, func(m *Message) Verdict {
		seen = append(seen, m.Seq)
		if m.Seq == 2 {
			if !m.Redelivered {
				t.Errorf("requeued message %d not flagged redelivered", m.Seq)
			}
			return Drop
		}
		return Take
	})
	// Drops do not count against max: the cursor message 4 is taken next.
	if !slices.Equal(seen, []uint64{2, 4}) {
		t.Fatalf("offered %v, want the requeued 2 first, then 4", seen)
	}
	checkCounts(t, q, 2, 2)
	if ms := q.NextReady(nil, 10); !slices.Equal(seqs(ms), []uint64{5, 6}) {
		t.Fatalf("left: %v", seqs(ms))
	}
	if n := q.AckMany([]uint64{1, 4, 5, 6}); n != 4 {
		t.Fatalf("AckMany = %d", n)
	}
	checkCounts(t, q, 0, 0)
	if q.acks.watermark != 7 {
		t.Fatalf("watermark %d, want 7: dropped messages must count as acked", q.acks.watermark)
	}
}

// testLogger is silent unless WARREN_TEST_LOG is set.
var testLogger = func() zerolog.Logger {
	if os.Getenv("WARREN_TEST_LOG") != "" {
		return zerolog.New(os.Stderr)
	}
	return zerolog.Nop()
}()

// TestBallastFollowsSetting: the ballast is made at the configured size,
// grown in place or replaced by a smaller one when a later start asks for
// another size (a replacement that fails keeps it), and removed when a
// later start asks for none.
func TestBallastFollowsSetting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ballastFile)
	var ino uint64
	allocated := func() int64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return -1
			}
			t.Fatal(err)
		}
		ino = st.Ino
		return st.Blocks * 512
	}
	check := func(fs vfs.FS, size, want int64) {
		t.Helper()
		s := open(t, fs, dir, func(o *Options) { o.BallastSize = size })
		got := allocated()
		s.Close()
		if want < 0 && got != -1 {
			t.Fatalf("BallastSize %d: a ballast of %d bytes is left", size, got)
		}
		if want >= 0 && (got < want || got >= want+1<<20) {
			t.Fatalf("BallastSize %d: ballast holds %d bytes, want %d", size, got, want)
		}
	}
	check(vfs.Default, 1<<20, 1<<20)
	before := ino
	check(vfs.Default, 1<<20, 1<<20)
	check(vfs.Default, 3<<20, 3<<20)
	if ino != before {
		t.Fatal("the ballast was remade, not kept and grown in place")
	}
	check(vfs.Default, 2<<20, 2<<20)
	check(vfs.Default, -1, -1)
	check(vfs.Default, 2<<20, 2<<20)
	// A replacement that cannot be made leaves the earlier ballast.
	var on errorfs.Toggle
	on.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ballastFile+".tmp") {
			return &os.PathError{Op: "create", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	on.On()
	check(errorfs.Wrap(vfs.Default, &on), 1<<20, 2<<20)
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary ballast left: %v", err)
	}
}

// TestDeleteQueueRenameFails: when the rename that starts a log's removal
// fails, DeleteQueue reports it and keeps the log's state, so that the
// next Open still accounts for the log (it shows up in Unclaimed, for the
// broker to finish the delete) instead of finding messages without state.
func TestDeleteQueueRenameFails(t *testing.T) {
	dir := t.TempDir()
	var on errorfs.Toggle
	on.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRename && strings.Contains(op.Path, "/"+queuesDir+"/") {
			return &os.PathError{Op: "rename", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	s := open(t, errorfs.Wrap(vfs.Default, &on), dir)
	q, _ := s.Queue("q", true)
	appendN(t, q, 0, 5, true)
	waitCommitted(t, s)
	on.On()
	err := s.DeleteQueue("q")
	on.Off()
	if !errors.Is(err, segment.ErrNotRemoved) {
		t.Fatalf("DeleteQueue with the rename failing: %v, want ErrNotRemoved", err)
	}
	if _, err := s.Index().LogState("q"); err != nil {
		t.Fatalf("the log's state went with a log still in place: %v", err)
	}
	s.Close()
	s = open(t, vfs.Default, dir)
	defer s.Close()
	un := s.Unclaimed()
	if len(un) != 1 || un[0].ID != "q" || un[0].Ready != 5 {
		t.Fatalf("Unclaimed after the reopen = %+v, want q with its 5 messages", un)
	}
	if err := s.DeleteQueue("q"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, queuesDir, "q")); !os.IsNotExist(err) {
		t.Fatalf("log dir survived the second delete: %v", err)
	}
}
