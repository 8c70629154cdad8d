package index

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Errors returned by this package. Callers test them with errors.Is.
var (
	// ErrNotFound reports that a definition does not exist.
	ErrNotFound = errors.New("index: not found")
	// ErrCorrupt reports a key or value that does not decode.
	ErrCorrupt = errors.New("index: corrupt record")
	// ErrFormat reports a database written by an unknown format version.
	ErrFormat = errors.New("index: unsupported format")
	// ErrInvalid reports an argument the index cannot store.
	ErrInvalid = errors.New("index: invalid argument")
)

// formatVersion is the version of the key schema stored under the meta key.
// Part of the format, do not change.
const formatVersion = 1

// valueVersion is the first byte of every value. Part of the format, do not change.
const valueVersion = 1

// ErrReadOnly is returned by writes to an index opened read-only.
var ErrReadOnly = errors.New("index: opened read-only")

// Options configures Open.
type Options struct {
	// FS is the file system Pebble uses; nil means the operating system's.
	FS vfs.FS
	// Logger receives Pebble's log lines (informational lines at debug level).
	Logger zerolog.Logger
	// Journal is the path of the definitions journal (see journal.go);
	// empty means none. It should live outside the index directory.
	Journal string
	// ReadOnly opens the database without writing to it (for a full or
	// failing disk); every write then fails with ErrReadOnly.
	ReadOnly bool
	// MustExist makes Open fail with ErrMissing instead of creating a new
	// database.
	MustExist bool
	// MaxOpenFiles bounds Pebble's open table files (0: Pebble's default).
	MaxOpenFiles int
	// Guard, if set, is asked before each definition write; an error fails
	// the write (log states, in a Batch without definitions, still go).
	Guard func() error
	// JournalFS is the file system of the journal (nil: FS).
	JournalFS vfs.FS
}

// ErrMissing is returned by Open with MustExist when there is no database.
var ErrMissing = errors.New("index: no database")

// DB is an open index. Its methods are safe for concurrent use.
type DB struct {
	dir  string
	opts Options
	log  zerolog.Logger

	// mu guards db, which Reopen swaps; gen counts the swaps, so that a
	// batch started on a closed instance fails instead of committing.
	mu       sync.RWMutex
	db       *pebble.DB
	gen      uint64
	readOnly bool
	closed   bool

	// jmu is held across a journal append and the matching Pebble commit.
	jmu sync.Mutex
	j   *journal

	// failDefs, when set, is returned by every definition write (tests).
	failDefs atomic.Pointer[error]
}

// FailDefinitionWritesForTesting makes every later definition write fail
// with err (nil restores normal writes), so tests can check how callers
// handle an index that cannot be written.
func (db *DB) FailDefinitionWritesForTesting(err error) {
	if err == nil {
		db.failDefs.Store(nil)
		return
	}
	db.failDefs.Store(&err)
}

func (db *DB) defsWriteErr() error {
	if p := db.failDefs.Load(); p != nil {
		return *p
	}
	return nil
}

func (o *Options) fs() vfs.FS {
	if o.FS == nil {
		return vfs.Default
	}
	return o.FS
}

func (o *Options) jfs() vfs.FS {
	if o.JournalFS != nil {
		return o.JournalFS
	}
	return o.fs()
}

func openPebble(dir string, opts Options, readOnly bool) (*pebble.DB, error) {
	po := &pebble.Options{
		FS:                 opts.fs(),
		Logger:             pebbleLogger{opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
		ReadOnly:           readOnly,
		ErrorIfNotExists:   opts.MustExist || readOnly,
		MaxOpenFiles:       opts.MaxOpenFiles,
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrMissing, dir)
		}
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	return pdb, nil
}

// Open opens or creates the index in dir.
func Open(dir string, opts Options) (*DB, error) {
	pdb, err := openPebble(dir, opts, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	db := &DB{dir: dir, opts: opts, log: opts.Logger, db: pdb, readOnly: opts.ReadOnly}
	if err := db.checkFormat(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	if !opts.ReadOnly {
		if err := db.openJournal(); err != nil {
			_ = pdb.Close()
			return nil, err
		}
	}
	return db, nil
}

// openJournal opens the definitions journal, writing a snapshot of the
// current definitions when there is none yet.
func (db *DB) openJournal() error {
	if db.opts.Journal == "" {
		return nil
	}
	fs := db.opts.jfs()
	j, exists, err := openJournal(fs, db.opts.Journal)
	if err != nil {
		return err
	}
	if !exists {
		if err := db.compactLocked(); err != nil {
			return err
		}
		return nil
	}
	db.j = j
	return nil
}

// compactLocked rewrites the journal as a snapshot of the definitions in
// Pebble. Called with jmu held (or before the DB is shared).
func (db *DB) compactLocked() error {
	var ops []jop
	for _, kind := range []byte{kindVHost, kindUser, kindPermission, kindExchange, kindQueue, kindBinding,
		kindPolicy, kindParameter, kindGlobal} {
		err := db.scanLocked([]byte{kind}, func(k, v []byte) error {
			ops = append(ops, jop{op: 'S', key: append([]byte(nil), k...), value: append([]byte(nil), v...)})
			return nil
		})
		if err != nil {
			return err
		}
	}
	fs := db.opts.jfs()
	if db.j != nil {
		db.j.f.Close()
		db.j = nil
	}
	size, err := writeSnapshot(fs, db.opts.Journal, ops)
	if err != nil {
		return err
	}
	f, err := fs.OpenReadWrite(db.opts.Journal, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("index: open journal: %w", err)
	}
	db.j = &journal{fs: fs, path: db.opts.Journal, f: f, size: size, snapSize: size}
	return nil
}

// ReadOnly reports whether the index was opened read-only.
func (db *DB) ReadOnly() bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.readOnly
}

// Reopen tries to reopen a read-only index for writing (once the disk has
// room again). On failure the index stays open read-only.
func (db *DB) Reopen() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.readOnly || db.closed {
		return nil
	}
	if err := db.db.Close(); err != nil {
		db.log.Warn().Err(err).Msg("index: close read-only database")
	}
	db.gen++
	pdb, err := openPebble(db.dir, db.opts, false)
	if err != nil {
		ro, rerr := openPebble(db.dir, db.opts, true)
		if rerr != nil {
			db.closed = true
			return fmt.Errorf("index: reopen %s read-only: %w (after %v)", db.dir, rerr, err)
		}
		db.db = ro
		return err
	}
	db.db, db.readOnly = pdb, false
	db.jmu.Lock()
	defer db.jmu.Unlock()
	if err := db.openJournal(); err != nil {
		db.log.Error().Err(err).Msg("index: definitions journal")
	}
	return nil
}

// checkFormat writes the format version into a new database and refuses one
// written by a different version.
func (db *DB) checkFormat() error {
	key := []byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	v, closer, err := db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		if db.readOnly {
			return nil
		}
		return db.db.Set(key, []byte{formatVersion}, pebble.Sync)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) != 1 || v[0] != formatVersion {
		return fmt.Errorf("%w: version %x", ErrFormat, v)
	}
	return nil
}

// Meta returns the value of a meta key of the caller's (ErrNotFound if
// unset).
func (db *DB) Meta(name string) ([]byte, error) {
	return db.get(append([]byte{kindMeta}, "x."+name...))
}

// SetMeta sets a meta key (synced).
func (db *DB) SetMeta(name string, value []byte) error {
	return db.write([]jop{{op: 'S', key: append([]byte{kindMeta}, "x."+name...), value: value}})
}

// Close closes the database.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	if db.j != nil {
		db.j.f.Close()
	}
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// get returns a copy of the value stored under key, or ErrNotFound.
func (db *DB) get(key []byte) ([]byte, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return nil, fmt.Errorf("index: get: %w", pebble.ErrClosed)
	}
	v, closer, err := db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("index: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// write applies ops in one synced Pebble batch, after appending the
// definition ones to the journal (fsynced).
func (db *DB) write(ops []jop) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return fmt.Errorf("index: write: %w", pebble.ErrClosed)
	}
	if db.readOnly {
		return ErrReadOnly
	}
	if err := db.defsWriteErr(); err != nil {
		return fmt.Errorf("index: write: %w", err)
	}
	if g := db.opts.Guard; g != nil {
		if err := g(); err != nil {
			return fmt.Errorf("index: write: %w", err)
		}
	}
	db.jmu.Lock()
	defer db.jmu.Unlock()
	return db.writeLocked(ops, nil, true)
}

// writeLocked appends ops to the journal and commits them, with extra (not
// journaled) writes in the same Pebble batch. Called with mu (read) and
// jmu held.
func (db *DB) writeLocked(ops []jop, b *pebble.Batch, sync bool) error {
	if db.j != nil {
		if err := db.j.append(ops); err != nil {
			if b != nil {
				b.Close()
			}
			return err
		}
	}
	if b == nil {
		b = db.db.NewBatch()
	}
	for _, o := range ops {
		var err error
		switch o.op {
		case 'S':
			err = b.Set(o.key, o.value, nil)
		case 'D':
			err = b.Delete(o.key, nil)
		case 'R':
			err = b.DeleteRange(o.key, o.value, nil)
		}
		if err != nil {
			b.Close()
			return fmt.Errorf("index: write: %w", err)
		}
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	err := b.Commit(opt)
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("index: write: %w", err)
	}
	if j := db.j; j != nil && j.size > max(minCompact, 2*j.snapSize) {
		if err := db.compactLocked(); err != nil {
			db.log.Error().Err(err).Msg("index: rewrite definitions journal")
		}
	}
	return nil
}

func (db *DB) set(key, value []byte) error {
	return db.write([]jop{{op: 'S', key: key, value: value}})
}

// del deletes key, reporting ErrNotFound if it was absent.
func (db *DB) del(key []byte) error {
	if _, err := db.get(key); err != nil {
		return err
	}
	return db.write([]jop{{op: 'D', key: key}})
}

// scan calls fn for every key with the given prefix, in key order. The key
// and value are valid only during the call.
func (db *DB) scan(prefix []byte, fn func(k, v []byte) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.scanLocked(prefix, fn)
}

func (db *DB) scanLocked(prefix []byte, fn func(k, v []byte) error) error {
	if db.closed {
		return fmt.Errorf("index: iterate: %w", pebble.ErrClosed)
	}
	it, err := db.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("index: iterate: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("index: iterate: %w", err)
		}
		if err := fn(it.Key(), v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("index: iterate: %w", err)
	}
	return nil
}

// RebuildStats reports what Rebuild replayed.
type RebuildStats struct {
	// Records counts the journal records applied.
	Records int
	// Torn is set when the journal ended in a damaged record (its last
	// change or changes were lost).
	Torn bool
}

// Rebuild creates a new index in dir (which must not hold one) from the
// definitions journal at opts.Journal, then opens it. The log states are
// not in the journal: the caller rebuilds them from the segments.
func Rebuild(dir string, opts Options) (*DB, RebuildStats, error) {
	var st RebuildStats
	o := opts
	o.MustExist, o.ReadOnly = false, false
	j := o.Journal
	o.Journal = "" // opened after the replay
	db, err := Open(dir, o)
	if err != nil {
		return nil, st, err
	}
	if j != "" {
		b := db.db.NewBatch()
		_, torn, err := readJournal(o.jfs(), j, func(op jop) error {
			st.Records++
			switch op.op {
			case 'S':
				return b.Set(op.key, op.value, nil)
			case 'D':
				return b.Delete(op.key, nil)
			default:
				return b.DeleteRange(op.key, op.value, nil)
			}
		})
		st.Torn = torn
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			b.Close()
			db.Close()
			return nil, st, err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			b.Close()
			db.Close()
			return nil, st, fmt.Errorf("index: rebuild: %w", err)
		}
		b.Close()
		db.opts.Journal = j
		db.jmu.Lock()
		err = db.compactLocked() // a fresh journal of what was rebuilt
		db.jmu.Unlock()
		if err != nil {
			db.Close()
			return nil, st, err
		}
	}
	return db, st, nil
}

// pebbleLogger adapts zerolog to pebble.Logger.
type pebbleLogger struct{ l zerolog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error().Str("component", "pebble").Msgf(format, args...)
}

// Fatalf logs and exits, as Pebble's default logger does: Pebble calls it
// only for broken invariants and does not expect it to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.WithLevel(zerolog.FatalLevel).Str("component", "pebble").Msgf(format, args...)
	os.Exit(1)
}
