package index

import (
	"errors"
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

// DeleteQueue deletes a queue definition (not its log state) and, in the
// same batch, marks the queue with ID queueID as being deleted: its log
// goes after the batch commits, and Batch.DeleteQueueState clears the mark
// with the log's state. A crash in between leaves a log without a
// definition, and the mark tells the next start that the log's messages
// were deleted on purpose (see Deleting). Marks are not definitions: they
// are not journaled.
func (b *DefsBatch) DeleteQueue(vhost, name, queueID string) {
	b.ops = append(b.ops, jop{op: 'D', key: keyOf(kindQueue, vhost, name)},
		jop{op: 'S', key: keyOf(kindDeleting, queueID)})
}

// Deleting reports whether the queue with the given ID carries a deletion
// mark (see DefsBatch.DeleteQueue).
func (db *DB) Deleting(queueID string) (bool, error) {
	_, err := db.get(keyOf(kindDeleting, queueID))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("index: deletion mark of %q: %w", queueID, err)
}

// ClearDeleting removes a queue's deletion mark, for a queue whose logs
// have other IDs (a priority queue's levels): its last log is gone.
func (db *DB) ClearDeleting(queueID string) error {
	if err := db.write([]jop{{op: 'D', key: keyOf(kindDeleting, queueID)}}); err != nil {
		return fmt.Errorf("index: clear deletion mark of %q: %w", queueID, err)
	}
	return nil
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
