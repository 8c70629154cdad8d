package segment

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// corruption damages the segment file at path. ends are the chunk end
// offsets; it returns, per chunk, whether that chunk must survive.
type corruption struct {
	name string
	do   func(t *testing.T, path string, size int64) (lo, hi int64) // damaged byte range
	tail bool                                                       // expect a truncation
	gap  bool                                                       // expect a gap
}

func truncTo(t *testing.T, path string, n int64) {
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

func rewrite(t *testing.T, path string, f func(b []byte) []byte) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

var corruptions = []corruption{
	{name: "truncate-end-4", tail: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		truncTo(t, p, size-4)
		return size - 4, size
	}},
	{name: "truncate-half", tail: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		truncTo(t, p, size/2)
		return size / 2, size
	}},
	{name: "truncate-zero", tail: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		truncTo(t, p, 0)
		return 0, size
	}},
	{name: "zero-sector", gap: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		off := (size / 2) &^ 511
		rewrite(t, p, func(b []byte) []byte { clear(b[off : off+512]); return b })
		return off, off + 512
	}},
	{name: "flip-bit", gap: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		off := size / 3
		rewrite(t, p, func(b []byte) []byte { b[off] ^= 0x10; return b })
		return off, off + 1
	}},
	{name: "append-garbage", tail: true, do: func(t *testing.T, p string, size int64) (int64, int64) {
		r := rand.New(rand.NewSource(1))
		rewrite(t, p, func(b []byte) []byte {
			g := make([]byte, 1000)
			r.Read(g)
			return append(b, g...)
		})
		return size, size
	}},
}

// TestCorruption damages a log in each way, for each codec, then appends
// more, reopens and checks exactly which records survived.
func TestCorruption(t *testing.T) {
	const chunks, perChunk, size = 12, 20, 150
	for _, codec := range allCodecs {
		for _, c := range corruptions {
			t.Run(codec.String()+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				opts := Options{Codec: codec, Sync: true}
				l := openT(t, vfs.Default, dir, opts)
				path := filepath.Join(dir, segName(1))
				var starts, ends []int64
				for i := 0; i < chunks; i++ {
					var start int64 // no file before the first chunk
					if fi, err := os.Stat(path); err == nil {
						start = fi.Size()
					}
					starts = append(starts, start)
					appendN(t, l, uint64(i*perChunk+1), perChunk, size)
					if err := l.Seal(); err != nil {
						t.Fatal(err)
					}
					fi, _ := os.Stat(path)
					ends = append(ends, fi.Size())
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				fileSize := ends[len(ends)-1]
				lo, hi := c.do(t, path, fileSize)

				survives := make(map[uint64]bool)
				lastKept := uint64(0)
				lostTail := false
				for i := range starts {
					dead := starts[i] < hi && ends[i] > lo
					if lo < fileHeaderSize && hi > 0 && c.tail {
						dead = true
					}
					if dead && c.tail {
						lostTail = true
					}
					for k := 0; k < perChunk; k++ {
						seq := uint64(i*perChunk + k + 1)
						if !dead && !lostTail {
							survives[seq] = true
							lastKept = seq
						}
					}
				}
				wantNext := uint64(chunks*perChunk + 1)
				if c.tail {
					wantNext = lastKept + 1
				}

				check := func(l *Log, extra uint64) {
					t.Helper()
					for seq := uint64(1); seq < wantNext; seq++ {
						r, err := l.Read(seq)
						if survives[seq] {
							if err != nil || !sameRecord(r, mkRec(seq, size)) {
								t.Fatalf("seq %d should survive: %v", seq, err)
							}
						} else if !errors.Is(err, ErrLost) {
							t.Fatalf("seq %d should be lost, got %v", seq, err)
						}
					}
					for seq := wantNext; seq < wantNext+extra; seq++ {
						checkRead(t, l, seq, 77)
					}
					if got := l.NextSeq(); got != wantNext+extra {
						t.Fatalf("NextSeq %d, want %d", got, wantNext+extra)
					}
				}

				l = openT(t, vfs.Default, dir, opts)
				rec := l.Recovery()
				if c.tail != (len(rec.Truncated) > 0) {
					t.Fatalf("truncations %+v, tail expected %v", rec.Truncated, c.tail)
				}
				if c.tail && rec.Truncated[0].Bytes > 0 {
					if _, err := os.Stat(rec.Truncated[0].Broken); err != nil {
						t.Fatalf("no .broken copy: %v", err)
					}
				}
				if c.gap != (len(rec.Gaps) > 0) {
					t.Fatalf("gaps %+v, gap expected %v", rec.Gaps, c.gap)
				}
				if c.name == "append-garbage" && (len(rec.Truncated) != 1 || rec.Truncated[0].Bytes != 1000) {
					// Garbage after the last chunk is a torn tail of 1000 bytes.
					t.Fatalf("garbage tail not truncated: %+v", rec)
				}
				check(l, 0)
				appendN(t, l, wantNext, 30, 77)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				l = openT(t, vfs.Default, dir, opts)
				defer l.Close()
				check(l, 30)
				if r := l.Recovery(); len(r.Truncated) != 0 {
					t.Fatalf("second reopen truncated again: %+v", r.Truncated)
				}
			})
		}
	}
}

// TestCrashClone: records whose durability was signalled survive a crash
// that drops unsynced data (and, in later rounds, keeps random parts of it).
func TestCrashClone(t *testing.T) {
	for round := 0; round < 6; round++ {
		fs := vfs.NewCrashableMem()
		opts := Options{Sync: true, Codec: Codec(round % 3), SegmentSize: 64 << 10, ChunkSize: 8 << 10}
		l := openT(t, fs, "q", opts)
		s := NewSyncer(SyncerOptions{})
		var durable atomic.Uint64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := uint64(1)
			recs := make([]Record, 0, 16)
			for {
				select {
				case <-stop:
					return
				default:
				}
				recs = recs[:0]
				n := 1 + int(seq%16)
				for i := 0; i < n; i++ {
					recs = append(recs, mkRec(seq+uint64(i), 200))
				}
				last := seq + uint64(n) - 1
				if _, err := s.AppendDurable(l, recs, func(err error) {
					if err == nil {
						for {
							cur := durable.Load()
							if cur >= last || durable.CompareAndSwap(cur, last) {
								return
							}
						}
					}
				}); err != nil {
					t.Error(err)
					return
				}
				seq += uint64(n)
			}
		}()
		time.Sleep(30 * time.Millisecond)
		acked := durable.Load()
		cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: 0}
		if round >= 3 {
			cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: randv2.New(randv2.NewPCG(uint64(round), 7))}
		}
		crashed := fs.CrashClone(cfg)
		close(stop)
		wg.Wait()
		s.Close()
		l.Close()
		if acked == 0 {
			t.Fatal("nothing became durable")
		}
		l2 := openT(t, crashed, "q", opts)
		for seq := uint64(1); seq <= acked; seq++ {
			checkRead(t, l2, seq, 200)
		}
		if l2.NextSeq() <= acked {
			t.Fatalf("NextSeq %d below durable %d", l2.NextSeq(), acked)
		}
		t.Logf("round %d: %d durable, %d recovered, %+v", round, acked, l2.NextSeq()-1, l2.Recovery().Truncated)
		l2.Close()
	}
}

// TestKill9 re-executes the test binary as a writer that reports durable
// sequences on stdout, kills it with SIGKILL mid-stream, then checks every
// reported sequence on disk.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("SEGMENT_KILL9_DIR"); dir != "" {
		kill9Child(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "SEGMENT_KILL9_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var reported []uint64
	killed := false
	for sc.Scan() {
		seq, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			continue
		}
		reported = append(reported, seq)
		if len(reported) == 300 && !killed {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed || len(reported) < 300 {
		t.Fatalf("child reported %d durable batches (killed %v)", len(reported), killed)
	}
	l := openT(t, vfs.Default, dir, Options{Sync: true})
	defer l.Close()
	max := reported[len(reported)-1]
	for seq := uint64(1); seq <= max; seq++ {
		checkRead(t, l, seq, 300)
	}
	t.Logf("%d batches reported, last durable %d, recovered up to %d, %+v",
		len(reported), max, l.NextSeq()-1, l.Recovery().Truncated)
}

func kill9Child(dir string) {
	l, err := Open(vfs.Default, dir, Options{Sync: true, SegmentSize: 1 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := NewSyncer(SyncerOptions{})
	var mu sync.Mutex
	var out []byte
	seq := uint64(1)
	for i := 0; ; i++ {
		recs := make([]Record, 0, 32)
		n := 1 + i%32
		for k := 0; k < n; k++ {
			recs = append(recs, mkRec(seq+uint64(k), 300))
		}
		last := seq + uint64(n) - 1
		if _, err := s.AppendDurable(l, recs, func(err error) {
			if err != nil {
				return
			}
			mu.Lock()
			out = strconv.AppendUint(out[:0], last, 10)
			out = append(out, '\n')
			os.Stdout.Write(out)
			mu.Unlock()
		}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		seq += uint64(n)
	}
}
