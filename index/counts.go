package index

import (
	"encoding/binary"
	"fmt"
)

// DeliveryCount is the delivery counts of one message of a queue that
// keeps them (a quorum queue): how many times it was returned to the queue
// (Acquired) and how many of those were failed deliveries (Failed).
type DeliveryCount struct {
	Seq              uint64
	Acquired, Failed uint32
}

// deliveryCountKey is 'C' esc(queue ID) be64(seq): a queue's counts sort
// together, by sequence.
func deliveryCountKey(queueID string, seq uint64) []byte {
	k := keyOf(kindDeliveryCount, queueID)
	return binary.BigEndian.AppendUint64(k, seq)
}

// SetDeliveryCount records the delivery counts of one message, in the
// batch's atomic commit with the queue's log state.
func (b *Batch) SetDeliveryCount(queueID string, c DeliveryCount) error {
	v := []byte{valueVersion}
	v = binary.AppendUvarint(v, uint64(c.Acquired))
	v = binary.AppendUvarint(v, uint64(c.Failed))
	if err := b.b.Set(deliveryCountKey(queueID, c.Seq), v, nil); err != nil {
		return fmt.Errorf("index: delivery count of %q/%d: %w", queueID, c.Seq, err)
	}
	b.n++
	return nil
}

// DeleteDeliveryCount removes the counts of one message (acked or gone).
func (b *Batch) DeleteDeliveryCount(queueID string, seq uint64) error {
	if err := b.b.Delete(deliveryCountKey(queueID, seq), nil); err != nil {
		return fmt.Errorf("index: delivery count of %q/%d: %w", queueID, seq, err)
	}
	b.n++
	return nil
}

// deleteDeliveryCounts removes every count of a queue.
func (b *Batch) deleteDeliveryCounts(queueID string) error {
	p := keyOf(kindDeliveryCount, queueID)
	if err := b.b.DeleteRange(p, prefixEnd(p), nil); err != nil {
		return fmt.Errorf("index: delete delivery counts of %q: %w", queueID, err)
	}
	return nil
}

// DeliveryCounts returns the delivery counts recorded for a queue, by
// sequence.
func (db *DB) DeliveryCounts(queueID string) ([]DeliveryCount, error) {
	var out []DeliveryCount
	p := keyOf(kindDeliveryCount, queueID)
	err := db.scan(p, func(k, v []byte) error {
		if len(k) != len(p)+8 {
			return fmt.Errorf("%w: delivery count key of %q", ErrCorrupt, queueID)
		}
		r := newValueReader(v)
		c := DeliveryCount{Seq: binary.BigEndian.Uint64(k[len(p):])}
		a, f := r.uvarint(), r.uvarint()
		if err := r.done(); err != nil {
			return fmt.Errorf("delivery count of %q/%d: %w", queueID, c.Seq, err)
		}
		if a > 1<<32-1 || f > a {
			return fmt.Errorf("%w: delivery count of %q/%d: %d/%d", ErrCorrupt, queueID, c.Seq, a, f)
		}
		c.Acquired, c.Failed = uint32(a), uint32(f)
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
