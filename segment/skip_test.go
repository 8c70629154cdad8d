package segment

import (
	"bytes"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// largeBody returns n random (incompressible) bytes.
func largeBody(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestSkipWritesStub: a large record acknowledged (Skip) before the flush
// is written as a stub, a non-persistent record with no body, at its own
// sequence; the others, large or small, are written in full; and a Skip
// after the write changes nothing.
func TestSkipWritesStub(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, vfs.Default, dir, Options{Sync: true})
	big := largeBody(1, 256<<10)
	big2 := largeBody(2, LargeBody)
	first, err := l.Append(
		Record{Timestamp: 11, Flags: FlagPersistent, RoutingKey: "a", Body: big, Owned: true},
		Record{Timestamp: 12, Flags: FlagPersistent, RoutingKey: "b", Body: []byte("small")},
		Record{Timestamp: 13, Flags: FlagPersistent, RoutingKey: "c", Body: big2, Owned: true},
		Record{Timestamp: 14, Flags: FlagPersistent, RoutingKey: "d", Body: big, Owned: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := l.held.Load(); n != 3 {
		t.Fatalf("held = %d after appending 3 large records, want 3 (written by Append?)", n)
	}
	if _, size := l.DiskUsage(); size > 0 {
		t.Fatalf("%d bytes on disk before the flush: the large records were written by Append", size)
	}
	l.Skip(first, first+1, first+3) // first+1 is small: written anyway
	if err := l.flush(true); err != nil {
		t.Fatal(err)
	}
	if n := l.held.Load(); n != 0 {
		t.Fatalf("held = %d after the flush", n)
	}
	l.Skip(first + 2) // written already: no effect
	st := l.Stats()
	if st.Skipped != 2 || st.SkippedBytes < int64(2*len(big)) {
		t.Fatalf("Stats: skipped %d records, %d bytes; want 2, >= %d", st.Skipped, st.SkippedBytes, 2*len(big))
	}
	if _, size := l.DiskUsage(); size > int64(len(big2))+64<<10 {
		t.Fatalf("%d bytes on disk: the skipped bodies were written", size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openT(t, vfs.Default, dir, Options{Sync: true})
	defer l.Close()
	for _, c := range []struct {
		seq   uint64
		flags uint8
		key   string
		body  []byte
	}{
		{first, 0, "", nil},
		{first + 1, FlagPersistent, "b", []byte("small")},
		{first + 2, FlagPersistent, "c", big2},
		{first + 3, 0, "", nil},
	} {
		r, err := l.Read(c.seq)
		if err != nil {
			t.Fatalf("Read(%d): %v", c.seq, err)
		}
		if r.Flags != c.flags || r.RoutingKey != c.key || !bytes.Equal(r.Body, c.body) || r.Timestamp != int64(11+c.seq-first) {
			t.Fatalf("Read(%d) = flags %d key %q %d bytes ts %d; want flags %d key %q %d bytes ts %d",
				c.seq, r.Flags, r.RoutingKey, len(r.Body), r.Timestamp, c.flags, c.key, len(c.body), 11+c.seq-first)
		}
	}
	var transient uint32
	l.Chunks(first, func(c ChunkInfo) { transient += c.Transient })
	if transient != 2 {
		t.Fatalf("chunk headers count %d non-persistent records, want the 2 stubs", transient)
	}
}

// TestHoldWaitsForAck: with a Hold, a round waits for a large record a
// consumer was handed until it is acknowledged (and then writes a stub),
// but no longer; a record of a log nobody consumes is not held; and one
// never acknowledged is written in full after the hold.
func TestHoldWaitsForAck(t *testing.T) {
	const hold = 2 * time.Second
	s := NewSyncer(SyncerOptions{Hold: hold})
	defer s.Close()
	body := largeBody(3, 128<<10)
	durable := func(l *Log) (uint64, chan time.Time) {
		done := make(chan time.Time, 1)
		seq, err := s.AppendDurable(l, []Record{{Flags: FlagPersistent, Body: body, Owned: true}}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			done <- time.Now()
		})
		if err != nil {
			t.Fatal(err)
		}
		return seq, done
	}
	deliver := func(l *Log, seq uint64) {
		if err := l.ViewPinned(seq, func(r *Record) error {
			if !bytes.Equal(r.Body, body) {
				t.Errorf("delivered %d bytes, want the body", len(r.Body))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Nobody consumes this log: synced at once.
	idle := openT(t, vfs.Default, t.TempDir(), Options{Sync: true})
	defer idle.Close()
	start := time.Now()
	_, done := durable(idle)
	if d := (<-done).Sub(start); d > hold/2 {
		t.Fatalf("a log without consumers was held %v", d)
	}
	if st := idle.Stats(); st.Skipped != 0 || st.RawBytes < int64(len(body)) {
		t.Fatalf("idle log: %+v, want its record written in full", st)
	}

	// A first record taken and acknowledged: from now on the log is one
	// whose large records consumers take (whether the round began before
	// the delivery or not).
	l := openT(t, vfs.Default, t.TempDir(), Options{Sync: true})
	defer l.Close()
	seq, done := durable(l)
	deliver(l, seq)
	l.Skip(seq)
	<-done
	base := l.Stats().Skipped // 1, or 0 if its round came first

	// Handed out, acknowledged after 100 ms: the round waits for the ack.
	var wg sync.WaitGroup
	seq, done = durable(l)
	deliver(l, seq)
	start = time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(100 * time.Millisecond)
		l.Skip(seq)
	}()
	at := <-done
	wg.Wait()
	if d := at.Sub(start); d < 90*time.Millisecond || d > hold/2 {
		t.Fatalf("acknowledged after 100 ms, synced after %v: want the round to wait for the ack and no longer", d)
	}
	if st := l.Stats(); st.Skipped != base+1 {
		t.Fatalf("Stats %+v: want the acknowledged record skipped", st)
	}

	// Handed out, never acknowledged: written in full after the hold.
	seq, done = durable(l)
	deliver(l, seq)
	start = time.Now()
	if d := (<-done).Sub(start); d < hold*9/10 {
		t.Fatalf("an unacknowledged record was synced after %v, before the hold of %v", d, hold)
	}
	if st := l.Stats(); st.Skipped != base+1 {
		t.Fatalf("Stats %+v: the unacknowledged record was skipped", st)
	}
	if r, err := l.Read(seq); err != nil || !bytes.Equal(r.Body, body) || r.Flags != FlagPersistent {
		t.Fatalf("Read(%d) = %d bytes flags %d, %v", seq, len(r.Body), r.Flags, err)
	}
}

// TestPieceHold: a large record is held for the Syncer's hold per MiB of
// its body begun, within [1, maxHoldFactor] times it.
func TestPieceHold(t *testing.T) {
	const h = 10 * time.Millisecond
	for _, c := range []struct {
		size int
		want time.Duration
	}{
		{LargeBody, h},
		{1 << 20, h},
		{1<<20 + 1, 2 * h},
		{16 << 20, 16 * h},
		{1 << 30, maxHoldFactor * h},
	} {
		p := &piece{body: make([]byte, c.size), count: 1}
		if got := pieceHold(p, h); got != c.want {
			t.Errorf("pieceHold(%d bytes) = %v, want %v", c.size, got, c.want)
		}
	}
}

// TestHeldCountAfterSyncFailure: a large record written, then written
// again after its fdatasync failed, is counted out of the pending large
// records once, so that Skip still works afterwards.
func TestHeldCountAfterSyncFailure(t *testing.T) {
	_, fs, fail := syncFailFS()
	l := openT(t, fs, "q", Options{Sync: true})
	defer l.Close()
	s := NewSyncer(SyncerOptions{RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	defer s.Close()
	body := largeBody(4, LargeBody)
	errc := make(chan error, 1)
	fail.On()
	if _, err := s.AppendDurable(l, []Record{{Flags: FlagPersistent, Body: body, Owned: true}}, func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); l.Failing() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the log never entered the failing state")
		}
	}
	fail.Off()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := l.held.Load(); n != 0 {
		t.Fatalf("held = %d with nothing pending", n)
	}
	// Skip still takes effect on the next large record.
	seq, err := l.Append(Record{Flags: FlagPersistent, Body: body, Owned: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Skip(seq)
	if err := l.flush(true); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Skipped != 1 {
		t.Fatalf("Stats %+v: the acknowledged record was written", st)
	}
}
