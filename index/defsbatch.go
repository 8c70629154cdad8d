package index

import (
	"fmt"
)

// DefsBatch gathers definition changes (deletions of exchanges, queues and
// bindings) to apply atomically in one synced write (journaled like every
// definition change). Deleting a definition that does not exist is not an
// error here. A DefsBatch is not safe for concurrent use.
type DefsBatch struct {
	db  *DB
	ops []jop
}

// NewDefsBatch returns an empty batch of definition changes.
func (db *DB) NewDefsBatch() *DefsBatch {
	return &DefsBatch{db: db}
}

// DeleteExchange deletes an exchange definition.
func (b *DefsBatch) DeleteExchange(vhost, name string) {
	b.ops = append(b.ops, jop{op: 'D', key: keyOf(kindExchange, vhost, name)})
}

// DeleteQueue deletes a queue definition (not its log state).
func (b *DefsBatch) DeleteQueue(vhost, name string) {
	b.ops = append(b.ops, jop{op: 'D', key: keyOf(kindQueue, vhost, name)})
}

// DeleteBinding deletes a binding.
func (b *DefsBatch) DeleteBinding(bd Binding) {
	b.ops = append(b.ops, jop{op: 'D', key: bindingKey(bd)})
}

// Len returns the number of changes in the batch.
func (b *DefsBatch) Len() int { return len(b.ops) }

// Commit applies the batch durably (synced). An empty batch commits
// nothing.
func (b *DefsBatch) Commit() error {
	if len(b.ops) == 0 {
		return nil
	}
	if err := b.db.write(b.ops); err != nil {
		return fmt.Errorf("index: commit definitions: %w", err)
	}
	return nil
}
