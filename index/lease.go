package index

import (
	"encoding/binary"
	"fmt"
)

// Delivery leases. A queue's log state says how far its messages were
// delivered (LogState.Delivered), so that after a crash the messages
// delivered before it come back flagged redelivered. The state is committed
// after deliveries, so a crash between a delivery and that commit would
// redeliver without the flag. The store therefore delivers only below a
// lease the index already holds: the log state's Delivered, pushed ahead of
// the ready cursor by every commit, or, when deliveries outrun the commits,
// the lease written here, synced, before the delivery that passes it. The
// lease only grows while the queue lives; a clean shutdown deletes it and
// commits the exact Delivered.

// leaseKey is 'D' esc(queue ID).
func leaseKey(queueID string) []byte { return keyOf(kindLease, queueID) }

// SetDeliveredLease records, synced, that messages of the queue below seq
// may be delivered.
func (db *DB) SetDeliveredLease(queueID string, seq uint64) error {
	b := db.NewBatch()
	if err := b.b.Set(leaseKey(queueID), binary.AppendUvarint([]byte{valueVersion}, seq), nil); err != nil {
		b.Close()
		return fmt.Errorf("index: delivery lease of %q: %w", queueID, err)
	}
	b.n++
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("index: delivery lease of %q: %w", queueID, err)
	}
	return nil
}

// DeleteDeliveredLease deletes the queue's lease with the batch (a clean
// shutdown, whose log state holds the exact Delivered).
func (b *Batch) DeleteDeliveredLease(queueID string) error {
	if err := b.b.Delete(leaseKey(queueID), nil); err != nil {
		return fmt.Errorf("index: delete delivery lease of %q: %w", queueID, err)
	}
	b.n++
	return nil
}

// DeliveredLeases returns every queue's delivery lease.
func (db *DB) DeliveredLeases() (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := db.scan([]byte{kindLease}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		id := r.str()
		if err := r.done(); err != nil {
			return err
		}
		vr := newValueReader(v)
		seq := vr.uvarint()
		if err := vr.done(); err != nil {
			return fmt.Errorf("delivery lease of %q: %w", id, err)
		}
		out[id] = seq
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
