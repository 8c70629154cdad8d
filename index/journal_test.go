package index

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/rs/zerolog"
)

// defsOf lists every definition of db, for comparisons.
func defsOf(t *testing.T, db *DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, kind := range []byte{kindVHost, kindUser, kindPermission, kindExchange, kindQueue, kindBinding,
		kindPolicy, kindParameter, kindGlobal} {
		if err := db.scan([]byte{kind}, func(k, v []byte) error {
			out[string(k)] = string(v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// populate makes a mix of definitions, deletes and range deletes.
func populate(t *testing.T, db *DB, n int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, vh := range []string{"/", "v2", "gone"} {
		must(db.PutVHost(VHost{Name: vh}))
		must(db.PutUser(User{Name: "u-" + vh, PasswordHash: []byte{1, 2, 3}, HashAlgorithm: HashSHA256, Tags: []string{"a"}}))
		must(db.PutPermission(Permission{User: "u-" + vh, VHost: vh, Configure: ".*", Write: "w", Read: "r"}))
		must(db.PutExchange(Exchange{VHost: vh, Name: "x", Type: "topic", Durable: true, Arguments: []byte{9}}))
		must(db.PutPolicy(Policy{VHost: vh, Name: "p", Pattern: "^q", ApplyTo: "queues", Definition: []byte(`{}`)}))
		must(db.PutParameter(Parameter{Component: "c", VHost: vh, Name: "n", Value: []byte(`1`)}))
		for i := 0; i < n; i++ {
			q := Queue{VHost: vh, Name: fmt.Sprintf("q%d", i), ID: fmt.Sprintf("%s-%d", vh, i), Durable: true}
			b := db.NewBatch()
			must(b.PutQueue(q))
			must(b.SetLogState(q.ID, LogState{NextSeq: 1, Watermark: 1}))
			must(b.Commit(true))
			must(db.PutBinding(Binding{VHost: vh, Source: "x", Destination: q.Name, DestinationKind: DestQueue, RoutingKey: "k"}))
		}
	}
	must(db.DeleteQueue("/", "q1"))
	must(db.DeleteBinding(Binding{VHost: "/", Source: "x", Destination: "q1", DestinationKind: DestQueue, RoutingKey: "k"}))
	must(db.PutGlobalParameter(GlobalParameter{Name: "cluster_name", Value: []byte(`"w"`)}))
	must(db.DeleteVHost("gone"))
	must(db.DeleteUser("u-gone"))
}

// TestJournalRebuild: an index rebuilt from the journal has exactly the
// definitions of the original, across journal rewrites (snapshots).
func TestJournalRebuild(t *testing.T) {
	for _, n := range []int{3, 2000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fs := vfs.NewMem()
			opts := Options{FS: fs, Logger: zerolog.Nop(), Journal: "defs.journal"}
			db, err := Open("db", opts)
			if err != nil {
				t.Fatal(err)
			}
			populate(t, db, n)
			want := defsOf(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := fs.RemoveAll("db"); err != nil {
				t.Fatal(err)
			}
			if _, err := Open("db", Options{FS: fs, MustExist: true}); !errors.Is(err, ErrMissing) {
				t.Fatalf("open of a deleted index with MustExist: %v", err)
			}
			db2, st, err := Rebuild("db", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db2.Close()
			if got := defsOf(t, db2); !reflect.DeepEqual(got, want) {
				t.Fatalf("rebuilt %d definitions, want %d", len(got), len(want))
			}
			if st.Torn || st.Records == 0 {
				t.Fatalf("stats %+v", st)
			}
			if _, err := db2.LogStates(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d definitions from %d journal records", len(want), st.Records)
		})
	}
}

// TestJournalTornTail: a torn last record is cut at open and lost to a
// rebuild, which reports it; the records before it survive.
func TestJournalTornTail(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{FS: fs, Logger: zerolog.Nop(), Journal: "j"}
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutVHost(VHost{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutVHost(VHost{Name: "torn"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, _ := fs.OpenReadWrite("j", vfs.WriteCategoryUnspecified)
	st, _ := f.Stat()
	f.WriteAt([]byte{0xff, 0xff}, st.Size()-3) // damage the last record
	f.Close()
	fs.RemoveAll("db")
	db2, rs, err := Rebuild("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if !rs.Torn {
		t.Fatal("torn record not reported")
	}
	if _, err := db2.GetVHost("kept"); err != nil {
		t.Fatalf("record before the torn one lost: %v", err)
	}
	if _, err := db2.GetVHost("torn"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("torn record applied: %v", err)
	}
	// The journal keeps working after the rebuild.
	if err := db2.PutVHost(VHost{Name: "after"}); err != nil {
		t.Fatal(err)
	}
}

// TestJournalWriteFailure: a definition whose journal append fails is not
// applied, and the journal stays usable after the failure.
func TestJournalWriteFailure(t *testing.T) {
	mem := vfs.NewMem()
	fail := &errorfs.Toggle{Injector: errorfs.ErrInjected}
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Path == "j" && (op.Kind == errorfs.OpFileWriteAt || op.Kind == errorfs.OpFileSync) {
			return fail.MaybeError(op)
		}
		return nil
	}))
	opts := Options{FS: fs, Logger: zerolog.Nop(), Journal: "j"}
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	fail.On()
	if err := db.PutVHost(VHost{Name: "failed"}); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("put with a failing journal: %v", err)
	}
	if _, err := db.GetVHost("failed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed definition applied: %v", err)
	}
	fail.Off()
	if err := db.PutVHost(VHost{Name: "ok"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	mem.RemoveAll("db")
	db2, _, err := Rebuild("db", Options{FS: mem, Logger: zerolog.Nop(), Journal: "j"})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.GetVHost("ok"); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyReopen: a read-only index refuses writes and becomes
// writable with Reopen.
func TestReadOnlyReopen(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("db", Options{FS: fs, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	db.PutVHost(VHost{Name: "/"})
	db.Close()
	ro, err := Open("db", Options{FS: fs, Logger: zerolog.Nop(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.GetVHost("/"); err != nil {
		t.Fatal(err)
	}
	if err := ro.PutVHost(VHost{Name: "x"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write to read-only index: %v", err)
	}
	if err := ro.Reopen(); err != nil {
		t.Fatal(err)
	}
	if ro.ReadOnly() {
		t.Fatal("still read-only")
	}
	if err := ro.PutVHost(VHost{Name: "x"}); err != nil {
		t.Fatal(err)
	}
}
