package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/warrenmq/warren/segment"
)

func sized(id, n int) segment.Record {
	r := rec(id, true)
	r.Body = append(r.Body, make([]byte, n)...)
	return r
}

func checkBytes(t testing.TB, q *Queue, ready, unacked int64) {
	t.Helper()
	if r, u := q.ReadyBytes(), q.UnackedBytes(); r != ready || u != unacked {
		t.Fatalf("ready/unacked bytes = %d/%d, want %d/%d", r, u, ready, unacked)
	}
}

func bodyLen(ms []Message) int64 {
	var n int64
	for _, m := range ms {
		n += int64(len(m.Record.Body))
	}
	return n
}

// TestReadyBytes follows the body bytes through append, delivery, ack,
// requeue, drop and purge, and across a clean restart.
func TestReadyBytes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, vfs.Default, dir)
	q, _ := s.Queue("q", true)
	var recs []segment.Record
	var total int64
	for i := 0; i < 10; i++ {
		recs = append(recs, sized(i, i*100))
		total += int64(len(recs[i].Body))
	}
	appendWait(t, q, recs...)
	checkBytes(t, q, total, 0)
	got := q.NextReady(nil, 4) // ids 0..3
	taken := bodyLen(got)
	checkBytes(t, q, total-taken, taken)
	q.Ack(got[1].Seq)
	checkBytes(t, q, total-taken, taken-int64(len(got[1].Record.Body)))
	q.Requeue([]uint64{got[2].Seq})
	checkBytes(t, q, total-taken+int64(len(got[2].Record.Body)), int64(len(got[0].Record.Body)+len(got[3].Record.Body)))
	// Dropped from ready (expired, dead-lettered): gone from the count.
	var dropped int64
	q.Deliver(1, func(m *Message) Verdict {
		if dropped > 0 {
			return Stop
		}
		dropped = int64(len(m.Record.Body))
		return Drop
	})
	if dropped != int64(len(got[2].Record.Body)) {
		t.Fatalf("dropped %d bytes, want the requeued message's %d", dropped, len(got[2].Record.Body))
	}
	wantReady := total - taken
	wantUnacked := int64(len(got[0].Record.Body) + len(got[3].Record.Body))
	checkBytes(t, q, wantReady, wantUnacked)
	s.Close()

	// Unacked messages are ready again after a restart, bytes included.
	s = open(t, vfs.Default, dir)
	q, _ = s.Queue("q", true)
	checkBytes(t, q, wantReady+wantUnacked, 0)
	all := q.NextReady(nil, 100)
	checkBytes(t, q, 0, wantReady+wantUnacked)
	if bodyLen(all) != wantReady+wantUnacked {
		t.Fatalf("recovered %d bytes, delivered %d", wantReady+wantUnacked, bodyLen(all))
	}
	q.Requeue(seqs(all))
	if n := q.Purge(); n != len(all) {
		t.Fatalf("purged %d, want %d", n, len(all))
	}
	checkBytes(t, q, 0, 0)
	s.Close()
}

// TestReadyBytesAfterCrash crashes a store (persistent messages only) at a
// random moment, with or without index commits after the last appends, and
// checks that the ready bytes recovered are exactly those of the messages
// then delivered: from the committed state plus, for records appended after
// the last commit, one read of just those.
func TestReadyBytesAfterCrash(t *testing.T) {
	for seed := uint64(0); seed < 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 9))
			fs := vfs.NewCrashableMem()
			s := open(t, fs, "data", func(o *Options) {
				o.SegmentSize = 32 << 10
				o.ChunkSize = 4 << 10
				o.SyncIndex = seed%2 == 0
			})
			q, _ := s.Queue("q", true)
			var held []Message
			id := 0
			for op := 0; op < 200; op++ {
				switch k := rng.IntN(10); {
				case k < 5:
					n := 1 + rng.IntN(30)
					recs := make([]segment.Record, n)
					for i := range recs {
						recs[i] = sized(id, rng.IntN(300))
						id++
					}
					appendWait(t, q, recs...)
				case k < 7:
					held = q.NextReady(held, 1+rng.IntN(20))
				default:
					var keep []Message
					var req []uint64
					for _, m := range held {
						switch rng.IntN(3) {
						case 0:
							q.Ack(m.Seq)
						case 1:
							req = append(req, m.Seq)
						default:
							keep = append(keep, m)
						}
					}
					q.Requeue(req)
					held = keep
				}
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, 3))})
			s.Close()

			s2 := open(t, crashed, "data")
			defer s2.Close()
			q2, _ := s2.Queue("q", true)
			rb := q2.ReadyBytes()
			all := q2.NextReady(nil, 1<<20)
			if bodyLen(all) != rb {
				t.Fatalf("recovered %d ready bytes; the %d messages delivered hold %d", rb, len(all), bodyLen(all))
			}
			checkBytes(t, q2, 0, rb)
		})
	}
}

// TestReadyBytesWithoutCommits: a queue that only receives appends still
// commits its state every bytesCommitEvery records, so a crash leaves at
// most that many records to read for their sizes.
func TestReadyBytesWithoutCommits(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs, "data", func(o *Options) { o.SyncIndex = true })
	q, _ := s.Queue("q", true)
	var total int64
	for i := 0; i < 3*bytesCommitEvery; i += 512 {
		recs := make([]segment.Record, 512)
		for j := range recs {
			recs[j] = sized(i+j, (i+j)%97)
			total += int64(len(recs[j].Body))
		}
		appendWait(t, q, recs...)
	}
	// The committer may still be writing: wait for the state to show up.
	var st uint64
	for i := 0; i < 200; i++ {
		s.commitStates()
		if ls, err := s.db.LogState("q"); err == nil && ls.NextSeq > 2*bytesCommitEvery {
			st = ls.NextSeq
			break
		}
	}
	if st == 0 {
		t.Fatal("no log state committed for a queue that only received appends")
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()
	s2 := open(t, crashed, "data")
	defer s2.Close()
	q2, _ := s2.Queue("q", true)
	if from := q2.bytes.unknownFrom; from != 0 && q2.recoveredNext-from > bytesCommitEvery+512 {
		t.Fatalf("%d records of unknown size after the crash", q2.recoveredNext-from)
	}
	checkBytes(t, q2, total, 0)
}

// TestSizeList checks the outstanding-size window against a map under
// random adds (in order and inserted) and takes.
func TestSizeList(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	var l sizeList
	model := map[uint64]uint32{}
	next := uint64(1)
	for i := 0; i < 20000; i++ {
		switch rng.IntN(3) {
		case 0:
			n := uint32(rng.IntN(1000))
			l.add(next, n)
			model[next] = n
			next++
		case 1:
			if next > 1 {
				seq := 1 + uint64(rng.IntN(int(next-1)))
				if _, ok := model[seq]; !ok {
					n := uint32(rng.IntN(1000))
					l.add(seq, n) // a redelivery
					model[seq] = n
				}
			}
		default:
			if next > 1 {
				seq := 1 + uint64(rng.IntN(int(next-1)))
				n, ok := l.take(seq)
				want, wok := model[seq]
				if ok != wok || n != want {
					t.Fatalf("take(%d) = %d %v, want %d %v", seq, n, ok, want, wok)
				}
				delete(model, seq)
			}
		}
	}
	var live []uint64
	for _, e := range l.e {
		if !e.gone {
			live = append(live, e.seq)
		}
	}
	if len(live) != len(model) || !slices.IsSorted(live) {
		t.Fatalf("%d live entries (sorted %v), model has %d", len(live), slices.IsSorted(live), len(model))
	}
	if len(l.e) > 3*len(model)+64 {
		t.Fatalf("window of %d entries for %d outstanding", len(l.e), len(model))
	}
}
