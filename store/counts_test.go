package store

import (
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func takeOne(t *testing.T, q *Queue) Message {
	t.Helper()
	ms := q.NextReady(nil, 1)
	if len(ms) != 1 {
		t.Fatalf("nothing ready (ready %d)", q.Ready())
	}
	return ms[0]
}

// TestDeliveryCounts: returns count as acquired, failed ones also as
// failed; a message whose failed count passes the limit is handed back to
// the caller instead of requeued; counts survive a clean restart and a
// crash, and go with the ack.
func TestDeliveryCounts(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs, "data", func(o *Options) { o.SyncIndex = true })
	q, _ := s.Queue("q", true)
	if err := q.EnableCounts(); err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 0, 3, true)
	m := takeOne(t, q)
	if m.Acquired != 0 || m.Failed != 0 || m.Redelivered {
		t.Fatalf("first delivery %+v", m)
	}
	if dead := q.Return([]uint64{m.Seq}, false, 1); dead != nil {
		t.Fatalf("returned without failure, dead %v", dead)
	}
	m = takeOne(t, q)
	if m.Seq != 1 || m.Acquired != 1 || m.Failed != 0 || !m.Redelivered {
		t.Fatalf("after a return: %+v", m)
	}
	q.Return([]uint64{m.Seq}, true, 1)
	m = takeOne(t, q)
	if m.Acquired != 2 || m.Failed != 1 {
		t.Fatalf("after a failed return: %+v", m)
	}
	if dead := q.Return([]uint64{m.Seq}, true, 1); !slices.Equal(dead, []uint64{1}) {
		t.Fatalf("failed count 2 > limit 1: dead = %v", dead)
	}
	checkCounts(t, q, 2, 1) // still outstanding, for the caller to ack
	if !q.Ack(1) {
		t.Fatal("ack of the dead-lettered message")
	}
	m2 := takeOne(t, q)
	q.Return([]uint64{m2.Seq}, true, -1)
	q.Return(nil, false, -1)
	s.Close()

	s = open(t, fs, "data", func(o *Options) { o.SyncIndex = true })
	q, _ = s.Queue("q", true)
	if err := q.EnableCounts(); err != nil {
		t.Fatal(err)
	}
	m = takeOne(t, q)
	if m.Seq != 2 || m.Acquired != 1 || m.Failed != 1 {
		t.Fatalf("after a restart: %+v", m)
	}
	q.Return([]uint64{m.Seq}, true, -1)
	// Let the committer write the counts, then crash.
	for i := 0; i < 100; i++ {
		s.commitStates()
		cs, _ := s.db.DeliveryCounts("q")
		if len(cs) == 1 && cs[0].Failed == 2 {
			break
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()
	s = open(t, crashed, "data")
	defer s.Close()
	q, _ = s.Queue("q", true)
	if err := q.EnableCounts(); err != nil {
		t.Fatal(err)
	}
	m = takeOne(t, q)
	if m.Seq != 2 || m.Acquired != 2 || m.Failed != 2 {
		t.Fatalf("after a crash: %+v", m)
	}
	q.Ack(m.Seq)
	m = takeOne(t, q)
	if m.Seq != 3 || m.Acquired != 0 || m.Failed != 0 {
		t.Fatalf("never returned: %+v", m)
	}
	s.commitStates()
	if cs, _ := s.db.DeliveryCounts("q"); len(cs) != 0 {
		t.Fatalf("counts of acked messages left in the index: %+v", cs)
	}
}
