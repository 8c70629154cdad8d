package index

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

func openMem(t *testing.T) *DB {
	t.Helper()
	db, err := Open("db", Options{FS: vfs.NewMem(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tricky names: prefixes of each other, separator and escape bytes.
var trickyNames = []string{"", "a", "a\x00", "a\x00\x01", "a\x00\xff", "ab", "a\x01", "\x00", "\xff", "a/b", "\x00\x01a"}

func TestVHostRoundTrip(t *testing.T) {
	db := openMem(t)
	for _, n := range trickyNames {
		if err := db.PutVHost(VHost{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range trickyNames {
		v, err := db.GetVHost(n)
		if err != nil || v.Name != n {
			t.Fatalf("GetVHost(%q) = %v, %v", n, v, err)
		}
	}
	all, err := db.VHosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(trickyNames) {
		t.Fatalf("VHosts: %d, want %d", len(all), len(trickyNames))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Name >= all[i].Name {
			t.Fatalf("VHosts not sorted: %q >= %q", all[i-1].Name, all[i].Name)
		}
	}
	if _, err := db.GetVHost("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing vhost: %v", err)
	}
	if err := db.DeleteVHost("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing vhost: %v", err)
	}
}

func TestUserRoundTrip(t *testing.T) {
	db := openMem(t)
	h, err := HashPassword(HashSHA256, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	users := []User{
		{Name: "guest", PasswordHash: h, HashAlgorithm: HashSHA256, Tags: []string{"administrator", "x\x00y"}},
		{Name: "nopass"},
		{Name: "a\x00b", PasswordHash: []byte{1, 2, 3, 4, 5}, HashAlgorithm: HashMD5, Tags: []string{""}},
	}
	for _, u := range users {
		if err := db.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users {
		got, err := db.GetUser(u.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("GetUser(%q) = %+v, want %+v", u.Name, got, u)
		}
	}
	all, err := db.Users()
	if err != nil || len(all) != len(users) {
		t.Fatalf("Users = %d, %v", len(all), err)
	}
	g, _ := db.GetUser("guest")
	if !g.CheckPassword("s3cret") || g.CheckPassword("s3cre") || g.CheckPassword("") {
		t.Fatal("CheckPassword mismatch")
	}
	if (User{Name: "nopass"}).CheckPassword("") {
		t.Fatal("user without hash accepted a password")
	}
	if err := db.PutPermission(Permission{User: "guest", VHost: "/", Configure: ".*"}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser("guest"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetUser("guest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
	if _, err := db.GetPermission("guest", "/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("permission of deleted user: %v", err)
	}
}

func TestPasswordAlgorithms(t *testing.T) {
	for _, alg := range []HashAlgorithm{HashSHA256, HashSHA512, HashMD5} {
		h, err := HashPassword(alg, "pw")
		if err != nil {
			t.Fatal(err)
		}
		u := User{PasswordHash: h, HashAlgorithm: alg}
		if !u.CheckPassword("pw") || u.CheckPassword("pW") {
			t.Fatalf("alg %d: check failed", alg)
		}
	}
	// Known vector: RabbitMQ's hash of "test12" with salt 908D C60A.
	salt := []byte{0x90, 0x8d, 0xc6, 0x0a}
	h, _ := hashWithSalt(HashSHA256, salt, "test12")
	want := "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
	u := User{PasswordHash: h, HashAlgorithm: HashSHA256}
	if got := base64Std(h); got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}
	if !u.CheckPassword("test12") {
		t.Fatal("known vector rejected")
	}
	if _, err := HashPassword(HashNone, "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HashNone: %v", err)
	}
}

func TestPermissionRoundTrip(t *testing.T) {
	db := openMem(t)
	var want []Permission
	for _, u := range []string{"u", "u\x00", "uu"} {
		for _, v := range trickyNames[:4] {
			p := Permission{User: u, VHost: v, Configure: "^c" + v, Write: "w.*", Read: ""}
			if err := db.PutPermission(p); err != nil {
				t.Fatal(err)
			}
			want = append(want, p)
		}
	}
	for _, p := range want {
		got, err := db.GetPermission(p.User, p.VHost)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("GetPermission = %+v, %v; want %+v", got, err, p)
		}
	}
	up, err := db.UserPermissions("u")
	if err != nil || len(up) != 4 {
		t.Fatalf("UserPermissions(u) = %d, %v", len(up), err)
	}
	for _, p := range up {
		if p.User != "u" {
			t.Fatalf("UserPermissions(u) leaked %q", p.User)
		}
	}
	if err := db.DeletePermission("u", "a"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeletePermission("u", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double delete: %v", err)
	}
	all, _ := db.Permissions()
	if len(all) != len(want)-1 {
		t.Fatalf("Permissions = %d, want %d", len(all), len(want)-1)
	}
}

func TestExchangeQueueBindingIsolation(t *testing.T) {
	db := openMem(t)
	// Every vhost gets exchanges, queues and bindings whose names are
	// themselves tricky; listing one vhost must return exactly its own.
	for vi, vh := range trickyNames {
		if err := db.PutVHost(VHost{Name: vh}); err != nil {
			t.Fatal(err)
		}
		for ni, n := range trickyNames {
			e := Exchange{VHost: vh, Name: n, Type: "topic", Durable: ni%2 == 0, AutoDelete: ni%3 == 0, Internal: ni%5 == 0, Arguments: []byte{byte(vi), 0, byte(ni)}}
			if err := db.PutExchange(e); err != nil {
				t.Fatal(err)
			}
			q := Queue{VHost: vh, Name: n, ID: fmt.Sprintf("q%d.%d", vi, ni), Durable: ni%2 == 1, Exclusive: ni%3 == 1, AutoDelete: ni%4 == 1}
			if ni%2 == 0 {
				q.Arguments = []byte("args\x00")
			}
			if err := db.PutQueue(q); err != nil {
				t.Fatal(err)
			}
			b := Binding{VHost: vh, Source: n, Destination: n + "\x00", DestinationKind: DestQueue, RoutingKey: vh + "." + n}
			if err := db.PutBinding(b); err != nil {
				t.Fatal(err)
			}
			b.DestinationKind = DestExchange
			b.Arguments = []byte{0, 0xff}
			if err := db.PutBinding(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	for vi, vh := range trickyNames {
		es, err := db.Exchanges(vh)
		if err != nil || len(es) != len(trickyNames) {
			t.Fatalf("Exchanges(%q) = %d, %v", vh, len(es), err)
		}
		for _, e := range es {
			if e.VHost != vh || e.Arguments[0] != byte(vi) {
				t.Fatalf("Exchanges(%q) returned %+v", vh, e)
			}
			got, err := db.GetExchange(vh, e.Name)
			if err != nil || !reflect.DeepEqual(got, e) {
				t.Fatalf("GetExchange = %+v, %v; want %+v", got, err, e)
			}
		}
		qs, err := db.Queues(vh)
		if err != nil || len(qs) != len(trickyNames) {
			t.Fatalf("Queues(%q) = %d, %v", vh, len(qs), err)
		}
		for _, q := range qs {
			if q.VHost != vh || q.ID[:len(fmt.Sprint("q", vi, "."))] != fmt.Sprint("q", vi, ".") {
				t.Fatalf("Queues(%q) returned %+v", vh, q)
			}
			got, err := db.GetQueue(vh, q.Name)
			if err != nil || !reflect.DeepEqual(got, q) {
				t.Fatalf("GetQueue = %+v, %v; want %+v", got, err, q)
			}
		}
		bs, err := db.Bindings(vh)
		if err != nil || len(bs) != 2*len(trickyNames) {
			t.Fatalf("Bindings(%q) = %d, %v", vh, len(bs), err)
		}
		for _, b := range bs {
			if b.VHost != vh || b.RoutingKey != vh+"."+b.Source || b.Destination != b.Source+"\x00" {
				t.Fatalf("Bindings(%q) returned %+v", vh, b)
			}
			ok, err := db.HasBinding(b)
			if err != nil || !ok {
				t.Fatalf("HasBinding(%+v) = %v, %v", b, ok, err)
			}
		}
		from, err := db.BindingsFrom(vh, "a")
		if err != nil || len(from) != 2 {
			t.Fatalf("BindingsFrom(%q, a) = %+v, %v", vh, from, err)
		}
	}
	// Delete one vhost: its neighbours with prefix-related names survive.
	// Each queue it drops is marked as being deleted (its log is still
	// there); no other is.
	marks := map[string]bool{}
	for _, vh := range trickyNames {
		qs, _ := db.Queues(vh)
		for _, q := range qs {
			marks[q.ID] = vh == "a"
		}
	}
	if err := db.DeleteVHost("a"); err != nil {
		t.Fatal(err)
	}
	for id, want := range marks {
		if got, err := db.Deleting(id); err != nil || got != want {
			t.Fatalf("after DeleteVHost(a), Deleting(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
	for _, vh := range trickyNames {
		es, _ := db.Exchanges(vh)
		qs, _ := db.Queues(vh)
		bs, _ := db.Bindings(vh)
		want := len(trickyNames)
		if vh == "a" {
			want = 0
		}
		if len(es) != want || len(qs) != want || len(bs) != 2*want {
			t.Fatalf("after DeleteVHost(a), vhost %q has %d/%d/%d", vh, len(es), len(qs), len(bs))
		}
	}
}

func TestDefinitionDeletes(t *testing.T) {
	db := openMem(t)
	e := Exchange{VHost: "/", Name: "x", Type: "direct"}
	q := Queue{VHost: "/", Name: "q", ID: "id1", Durable: true}
	b := Binding{VHost: "/", Source: "x", Destination: "q", DestinationKind: DestQueue, RoutingKey: "k"}
	if err := db.PutExchange(e); err != nil {
		t.Fatal(err)
	}
	if err := db.PutQueue(q); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBinding(b); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteBinding(b); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.HasBinding(b); ok {
		t.Fatal("binding survived delete")
	}
	if err := db.DeleteBinding(b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double delete binding: %v", err)
	}
	if err := db.DeleteExchange("/", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetExchange("/", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted exchange: %v", err)
	}
	if err := db.DeleteQueue("/", "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetQueue("/", "q"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted queue: %v", err)
	}
	if err := db.PutQueue(Queue{VHost: "/", Name: "noid"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("queue without ID: %v", err)
	}
	if err := db.PutBinding(Binding{VHost: "/", DestinationKind: 'z'}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad destination kind: %v", err)
	}
}

func TestLogStateEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	many := LogState{NextSeq: 1 << 40, Watermark: 1000, Delivered: 1 << 39}
	next := uint64(1001)
	for i := 0; i < 10000; i++ {
		lo := next + uint64(rng.IntN(5))
		hi := lo + 1 + uint64(rng.IntN(100))
		many.Acked = append(many.Acked, Range{lo, hi})
		next = hi + 1
	}
	for i := 0; i < 500; i++ {
		many.Segments = append(many.Segments, uint64(i)*65536)
	}
	cases := []LogState{
		{},
		{NextSeq: 10, Watermark: 10, Delivered: 10, Segments: []uint64{0}},
		{NextSeq: math.MaxUint64, Watermark: math.MaxUint64 - 10, Acked: []Range{{math.MaxUint64 - 5, math.MaxUint64}}},
		many,
		{NextSeq: 20, Watermark: 3, Acked: []Range{{5, 7}}, Bytes: 12345},
	}
	for i, s := range cases {
		enc := s.AppendTo(nil)
		got, err := DecodeLogState(enc)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(s)) {
			t.Fatalf("case %d: round trip mismatch", i)
		}
	}
	if n := len(many.AppendTo(nil)); n > 4*len(many.Acked)+2*len(many.Segments)+32 {
		t.Fatalf("encoding not compact: %d bytes for %d ranges", n, len(many.Acked))
	}
	// A state without bytes keeps value version 1; with bytes it is version 2.
	if v := cases[1].AppendTo(nil)[0]; v != valueVersion {
		t.Fatalf("version %d for a state without bytes", v)
	}
	if v := cases[4].AppendTo(nil)[0]; v != logStateVersion2 {
		t.Fatalf("version %d for a state with bytes", v)
	}
	// Every truncation of a valid encoding fails cleanly.
	enc := cases[3].AppendTo(nil)
	for _, n := range []int{0, 1, 2, 5, 100, len(enc) - 1} {
		if _, err := DecodeLogState(enc[:n]); err == nil {
			t.Fatalf("truncated to %d decoded", n)
		}
	}
	bad := []LogState{
		{Watermark: 10, Acked: []Range{{10, 12}}}, // not above watermark
		{Acked: []Range{{5, 5}}},                  // empty
		{Acked: []Range{{1, 3}, {3, 4}}},          // adjacent
		{Segments: []uint64{5, 5}},                // duplicate segment
		{Acked: []Range{{4, 6}, {2, 3}}},          // unsorted
	}
	for i, s := range bad {
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad %d: Validate = %v", i, err)
		}
		if _, err := DecodeLogState(s.AppendTo(nil)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad %d: decode = %v", i, err)
		}
	}
	if _, err := DecodeLogState([]byte{9, 0, 0, 0, 0, 0}); !errors.Is(err, ErrFormat) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := DecodeLogState(append(cases[1].AppendTo(nil), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v", err)
	}
	// A huge count must not allocate before it is bounded.
	huge := []byte{valueVersion, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := DecodeLogState(huge); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("huge count: %v", err)
	}
}

func normalize(s LogState) LogState {
	if len(s.Acked) == 0 {
		s.Acked = nil
	}
	if len(s.Segments) == 0 {
		s.Segments = nil
	}
	return s
}

func TestLogStateBatch(t *testing.T) {
	db := openMem(t)
	b := db.NewBatch()
	for i, id := range []string{"q1", "q1\x00", "q2"} {
		s := LogState{NextSeq: uint64(100 * (i + 1)), Watermark: uint64(i), Segments: []uint64{0}, Acked: []Range{{uint64(i) + 2, uint64(i) + 4}}}
		if err := b.SetLogState(id, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetLogState("bad", LogState{Acked: []Range{{0, 0}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid state accepted: %v", err)
	}
	if b.Len() != 3 {
		t.Fatalf("Len = %d", b.Len())
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	all, err := db.LogStates()
	if err != nil || len(all) != 3 || all["q1\x00"].NextSeq != 200 || all["q2"].Acked[0] != (Range{4, 6}) {
		t.Fatalf("LogStates = %+v, %v", all, err)
	}
	b = db.NewBatch()
	if err := b.DeleteQueueState("q1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LogState("q1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted state: %v", err)
	}
	if s, err := db.LogState("q1\x00"); err != nil || s.NextSeq != 200 {
		t.Fatalf("neighbour state: %+v, %v", s, err)
	}
	// An abandoned batch writes nothing.
	b = db.NewBatch()
	_ = b.SetLogState("ghost", LogState{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LogState("ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("closed batch leaked: %v", err)
	}
}

func TestCrashDurability(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := Open("db", Options{FS: fs, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutQueue(Queue{VHost: "/", Name: "q", ID: "qid", Durable: true}); err != nil {
		t.Fatal(err)
	}
	synced := LogState{NextSeq: 50, Watermark: 20, Acked: []Range{{22, 30}}, Segments: []uint64{0, 32}, Delivered: 40}
	b := db.NewBatch()
	_ = b.SetLogState("qid", synced)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	// An unsynced batch after it may or may not survive; the synced one must.
	b = db.NewBatch()
	_ = b.SetLogState("other", LogState{NextSeq: 1})
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	for _, pct := range []int{0, 50, 100} {
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(uint64(pct), 7))})
		db2, err := Open("db", Options{FS: crashed, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatalf("reopen after crash (%d%%): %v", pct, err)
		}
		got, err := db2.LogState("qid")
		if err != nil || !reflect.DeepEqual(got, synced) {
			t.Fatalf("after crash (%d%%): %+v, %v; want %+v", pct, got, err, synced)
		}
		if q, err := db2.GetQueue("/", "q"); err != nil || q.ID != "qid" {
			t.Fatalf("queue definition after crash: %+v, %v", q, err)
		}
		if pct == 0 {
			if _, err := db2.LogState("other"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unsynced write survived a crash that kept no unsynced data: %v", err)
			}
		}
		db2.Close()
	}
	db.Close()
}

func TestReopenKeepsFormat(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("db", Options{FS: fs, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.PutVHost(VHost{Name: "/"})
	db.Close()
	db, err = Open("db", Options{FS: fs, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetVHost("/"); err != nil {
		t.Fatal(err)
	}
	// Simulate a future format version.
	_ = db.set([]byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't'}, []byte{formatVersion + 1})
	db.Close()
	if _, err := Open("db", Options{FS: fs, Logger: zerolog.Nop()}); !errors.Is(err, ErrFormat) {
		t.Fatalf("future format opened: %v", err)
	}
}

func TestEscapeOrderAndPrefix(t *testing.T) {
	for _, a := range trickyNames {
		ea := appendEsc(nil, a)
		got, rest, err := cutEsc(ea)
		if err != nil || string(got) != a || len(rest) != 0 {
			t.Fatalf("cutEsc(esc(%q)) = %q, %q, %v", a, got, rest, err)
		}
		for _, b := range trickyNames {
			eb := appendEsc(nil, b)
			if a != b && bytes.HasPrefix(eb, ea) {
				t.Fatalf("esc(%q) is a prefix of esc(%q)", a, b)
			}
			if (a < b) != (bytes.Compare(ea, eb) < 0) {
				t.Fatalf("order of %q and %q not preserved", a, b)
			}
		}
	}
	for _, bad := range [][]byte{{'a'}, {0}, {'a', 0, 7}} {
		if _, _, err := cutEsc(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cutEsc(%q) = %v", bad, err)
		}
	}
}

func FuzzDecodeLogState(f *testing.F) {
	f.Add(LogState{NextSeq: 9, Watermark: 3, Acked: []Range{{5, 7}}, Segments: []uint64{0, 4}}.AppendTo(nil))
	f.Add([]byte{valueVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeLogState(b)
		if err != nil {
			return
		}
		again, err := DecodeLogState(s.AppendTo(nil))
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(s)) {
			t.Fatalf("re-encode mismatch: %+v vs %+v (%v)", s, again, err)
		}
	})
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
