package index

import (
	"errors"
	"fmt"
	"os"
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

// Options configures Open.
type Options struct {
	// FS is the file system Pebble uses; nil means the operating system's.
	FS vfs.FS
	// Logger receives Pebble's log lines (informational lines at debug level).
	Logger zerolog.Logger
}

// DB is an open index. Its methods are safe for concurrent use.
type DB struct {
	db  *pebble.DB
	log zerolog.Logger
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

// Open opens or creates the index in dir.
func Open(dir string, opts Options) (*DB, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	po := &pebble.Options{
		FS:                 fs,
		Logger:             pebbleLogger{opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	db := &DB{db: pdb, log: opts.Logger}
	if err := db.checkFormat(); err != nil {
		_ = pdb.Close()
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	return db, nil
}

// checkFormat writes the format version into a new database and refuses one
// written by a different version.
func (db *DB) checkFormat() error {
	key := []byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	v, closer, err := db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
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

// Close closes the database.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// get returns a copy of the value stored under key, or ErrNotFound.
func (db *DB) get(key []byte) ([]byte, error) {
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

func (db *DB) set(key, value []byte) error {
	if err := db.defsWriteErr(); err != nil {
		return fmt.Errorf("index: set: %w", err)
	}
	if err := db.db.Set(key, value, pebble.Sync); err != nil {
		return fmt.Errorf("index: set: %w", err)
	}
	return nil
}

// del deletes key, reporting ErrNotFound if it was absent.
func (db *DB) del(key []byte) error {
	if _, err := db.get(key); err != nil {
		return err
	}
	if err := db.defsWriteErr(); err != nil {
		return fmt.Errorf("index: delete: %w", err)
	}
	if err := db.db.Delete(key, pebble.Sync); err != nil {
		return fmt.Errorf("index: delete: %w", err)
	}
	return nil
}

// scan calls fn for every key with the given prefix, in key order. The key
// and value are valid only during the call.
func (db *DB) scan(prefix []byte, fn func(k, v []byte) error) error {
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
