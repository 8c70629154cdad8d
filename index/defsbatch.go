package index

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// DefsBatch gathers definition changes (deletions of exchanges, queues and
// bindings) to apply atomically in one synced write. Deleting a definition
// that does not exist is not an error here. A DefsBatch is not safe for
// concurrent use.
type DefsBatch struct {
	db *DB
	b  *pebble.Batch
	n  int
}

// NewDefsBatch returns an empty batch of definition changes.
func (db *DB) NewDefsBatch() *DefsBatch {
	return &DefsBatch{db: db, b: db.db.NewBatch()}
}

// DeleteExchange deletes an exchange definition.
func (b *DefsBatch) DeleteExchange(vhost, name string) {
	_ = b.b.Delete(keyOf(kindExchange, vhost, name), nil)
	b.n++
}

// DeleteQueue deletes a queue definition (not its log state).
func (b *DefsBatch) DeleteQueue(vhost, name string) {
	_ = b.b.Delete(keyOf(kindQueue, vhost, name), nil)
	b.n++
}

// DeleteBinding deletes a binding.
func (b *DefsBatch) DeleteBinding(bd Binding) {
	_ = b.b.Delete(bindingKey(bd), nil)
	b.n++
}

// Len returns the number of changes in the batch.
func (b *DefsBatch) Len() int { return b.n }

// Commit applies the batch durably (synced) and releases it. An empty
// batch commits nothing.
func (b *DefsBatch) Commit() error {
	defer b.b.Close()
	if b.n == 0 {
		return nil
	}
	if err := b.db.defsWriteErr(); err != nil {
		return fmt.Errorf("index: commit definitions: %w", err)
	}
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("index: commit definitions: %w", err)
	}
	return nil
}
