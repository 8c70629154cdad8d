package segment

import (
	"bytes"
	"fmt"
	"math/rand"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

var allCodecs = []Codec{CodecNone, CodecS2, CodecZstd}

var words = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
	"hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
	"order", "customer", "amount", "currency", "EUR", "USD", "status", "shipped", "pending"}

// jsonBody returns a deterministic JSON-like payload of about size bytes.
func jsonBody(seq uint64, size int) []byte {
	r := rand.New(rand.NewSource(int64(seq)))
	b := make([]byte, 0, size+64)
	b = fmt.Appendf(b, `{"id":%d,"user":"user-%d","ts":%d,"items":[`, seq, r.Intn(10000), 1700000000000+int64(seq))
	for len(b) < size-2 {
		b = fmt.Appendf(b, `{"sku":"%s-%d","qty":%d,"note":"%s %s"},`, words[r.Intn(len(words))],
			r.Intn(1000), r.Intn(9)+1, words[r.Intn(len(words))], words[r.Intn(len(words))])
	}
	if size < 2 {
		return b[:size]
	}
	b = append(b[:size-2], "]}"...)
	return b
}

// mkRec builds the deterministic record for seq.
func mkRec(seq uint64, size int) Record {
	return Record{
		Timestamp:  1700000000000000000 + int64(seq)*1000,
		Flags:      uint8(seq % 3),
		Exchange:   "ex-" + strconv.Itoa(int(seq%5)),
		RoutingKey: "key." + strconv.FormatUint(seq, 10),
		Props:      []byte{0x90, 0x00, byte(seq), 2},
		Body:       jsonBody(seq, size),
	}
}

func sameRecord(a, b Record) bool {
	return a.Timestamp == b.Timestamp && a.Flags == b.Flags && a.Exchange == b.Exchange &&
		a.RoutingKey == b.RoutingKey && bytes.Equal(a.Props, b.Props) && bytes.Equal(a.Body, b.Body)
}

// checkRead asserts that seq reads back as mkRec(seq, size).
func checkRead(t testing.TB, l *Log, seq uint64, size int) {
	t.Helper()
	r, err := l.Read(seq)
	if err != nil {
		t.Fatalf("Read(%d): %v", seq, err)
	}
	if r.Seq != seq || !sameRecord(r, mkRec(seq, size)) {
		t.Fatalf("Read(%d): wrong record %+v", seq, r.RoutingKey)
	}
}

func openT(t testing.TB, fs vfs.FS, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(fs, dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// appendN appends records first..first+n-1 (mkRec) and checks the sequences.
func appendN(t testing.TB, l *Log, first uint64, n, size int) {
	t.Helper()
	for i := 0; i < n; i++ {
		seq := first + uint64(i)
		got, err := l.Append(mkRec(seq, size))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if got != seq {
			t.Fatalf("Append got seq %d, want %d", got, seq)
		}
	}
}

// syncFailFS returns an in-memory file system, a view of it whose
// fdatasyncs fail while the toggle is on, and the toggle.
func syncFailFS() (*vfs.MemFS, vfs.FS, *errorfs.Toggle) {
	mem := vfs.NewMem()
	fail := &errorfs.Toggle{Injector: errorfs.ErrInjected}
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData {
			return fail.MaybeError(op)
		}
		return nil
	}))
	return mem, fs, fail
}
