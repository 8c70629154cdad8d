package store

import (
	"bytes"
	"math/rand"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/warrenmq/warren/segment"
)

func largeRec(seed int64) segment.Record {
	b := make([]byte, 2*segment.LargeBody)
	rand.New(rand.NewSource(seed)).Read(b)
	return segment.Record{Flags: segment.FlagPersistent, Exchange: "ex", RoutingKey: "big", Body: b, Owned: true}
}

// TestAckedLargeMessagesNotWritten: large persistent messages acknowledged
// before their round writes them are never written (stubs are), and are
// confirmed without waiting out the hold; after a restart, a stub whose
// ack state was not committed (a crash between the two) is neither
// counted nor delivered nor reported lost, and the unacked message is
// delivered again.
func TestAckedLargeMessagesNotWritten(t *testing.T) {
	const hold = 5 * time.Second
	dir := t.TempDir()
	s := open(t, vfs.Default, dir, func(o *Options) { o.LargeHold = hold })
	q, err := s.Queue("q", true)
	if err != nil {
		t.Fatal(err)
	}
	// A first large message, consumed: the log is now one whose large
	// records consumers take, so the next ones are held.
	appendWait(t, q, largeRec(0))
	if got := q.NextReady(nil, 1); len(got) != 1 || !q.Ack(got[0].Seq) {
		t.Fatalf("warm-up delivery: %d messages", len(got))
	}

	durable := make(chan error, 2)
	start := time.Now()
	small := rec(3, true)
	if _, err := q.Append([]segment.Record{largeRec(1), largeRec(2), small}, func(err error) { durable <- err }); err != nil {
		t.Fatal(err)
	}
	got := q.NextReady(nil, 3)
	if len(got) != 3 {
		t.Fatalf("delivered %d messages, want 3", len(got))
	}
	if !bytes.Equal(got[1].Record.Body, largeRec(2).Body) {
		t.Fatal("the large message was delivered with another body")
	}
	if !q.Ack(got[0].Seq) || q.AckMany([]uint64{got[1].Seq}) != 1 {
		t.Fatal("acks refused")
	}
	// The crash window: the stub is written but the ack is not recorded.
	lost, err := q.Append([]segment.Record{largeRec(4)}, func(err error) { durable <- err })
	if err != nil {
		t.Fatal(err)
	}
	q.log.Skip(lost)
	for range 2 {
		if err := <-durable; err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > hold/2 {
		t.Fatalf("confirmed after %v: the acknowledged messages waited out the hold", d)
	}
	if st := s.Stats(); st.Skipped != 3 || st.SkippedBytes < 3*2*segment.LargeBody {
		t.Fatalf("Stats: %d skipped (%d bytes), want 3", st.Skipped, st.SkippedBytes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, vfs.Default, dir)
	defer s.Close()
	rc := s.Recovered()
	if len(rc) != 1 || rc[0].Ready != 1 || rc[0].Lost != 0 {
		t.Fatalf("Recovered = %+v, want 1 ready (the unacked small message), none lost", rc)
	}
	q, _ = s.Queue("q", true)
	again := q.NextReady(nil, 10)
	if len(again) != 1 || !bytes.Equal(again[0].Record.Body, small.Body) {
		t.Fatalf("after the restart %d messages delivered, want the unacked small one", len(again))
	}
	checkCounts(t, q, 0, 1)
}
