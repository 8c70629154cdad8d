package store

import (
	"sort"

	"github.com/warrenmq/warren/segment"
)

// Message bytes. RabbitMQ's x-max-length-bytes counts the bodies of the
// ready messages, so a Queue keeps, beside its counts:
//
//	ready    body bytes of the ready messages
//	unacked  body bytes of the delivered, unacked ones, with the size of
//	         each outstanding delivery (out), since a requeue makes it
//	         ready again and an ack must know what it takes away
//	tail     sizes of the records not yet durable (durable queues), so
//	         that the bytes committed with the log state describe exactly
//	         the records that state covers
//
// After a restart the ready bytes come from the log state (LogState.Bytes):
// nothing is read. Records appended after the last index commit before a
// crash have unknown sizes; ReadyBytesExact reads just those, once, for a
// queue with a byte limit (TrackBytes makes such a queue commit its state
// after every round with appends, so that tail stays one round long).

// byteAccount is a queue's body-byte bookkeeping; see above. Guarded by
// Queue.mu.
type byteAccount struct {
	ready, unacked int64
	out            sizeList
	// tail[i] is the size of record tailBase+i, zeroed once it is acked or
	// dropped; tailSum is their sum. Records below tailBase are durable.
	tail     []uint32
	tailBase uint64
	tailSum  int64
	// unknownFrom, if not 0, starts the records recovered without a known
	// size (appended after the last index commit before a crash).
	unknownFrom uint64
}

// appended counts records appended from seq first.
func (b *byteAccount) appended(first uint64, recs []segment.Record, durable bool) {
	if durable && len(b.tail) == 0 {
		b.tailBase = first
	}
	for i := range recs {
		n := len(recs[i].Body)
		b.ready += int64(n)
		if durable {
			b.tail = append(b.tail, uint32(n))
			b.tailSum += int64(n)
		}
	}
}

// gone zeroes seq's entry in the tail: the message was acked or dropped.
func (b *byteAccount) gone(seq uint64) {
	if seq < b.tailBase {
		return
	}
	if i := seq - b.tailBase; i < uint64(len(b.tail)) {
		b.tailSum -= int64(b.tail[i])
		b.tail[i] = 0
	}
}

// trim forgets the tail below durable, which the log now holds durably.
func (b *byteAccount) trim(durable uint64) {
	if durable <= b.tailBase || len(b.tail) == 0 {
		return
	}
	n := min(durable-b.tailBase, uint64(len(b.tail)))
	for _, s := range b.tail[:n] {
		b.tailSum -= int64(s)
	}
	b.tail = b.tail[n:]
	b.tailBase += n
	if len(b.tail) == 0 {
		b.tail = b.tail[:0:0] // let a burst's array go
		b.tailSum = 0
	}
}

// taken moves a message of n bytes from ready to unacked.
func (b *byteAccount) taken(seq uint64, n int) {
	b.ready -= int64(n)
	b.unacked += int64(n)
	b.out.add(seq, uint32(n))
}

// dropped removes a ready message of n bytes (acked away unseen).
func (b *byteAccount) dropped(seq uint64, n int) {
	b.ready -= int64(n)
	b.gone(seq)
}

// acked removes an outstanding delivery.
func (b *byteAccount) acked(seq uint64) {
	n, _ := b.out.take(seq)
	b.unacked -= int64(n)
	b.gone(seq)
}

// requeued makes an outstanding delivery ready again.
func (b *byteAccount) requeued(seq uint64) {
	n, _ := b.out.take(seq)
	b.unacked -= int64(n)
	b.ready += int64(n)
}

// settle resets the counts that must be zero: a queue without ready (or
// unacked) messages holds no ready (or unacked) bytes. This heals what
// messages of unknown size (lost to corruption) left behind.
func (b *byteAccount) settle(ready, unacked int64) {
	if ready == 0 || b.ready < 0 {
		b.ready = 0
	}
	if unacked == 0 || b.unacked < 0 {
		b.unacked = 0
		b.out.reset()
	}
}

// committed returns the bytes to persist with a log state covering the
// records below durable: the live bytes less those of the records above.
func (b *byteAccount) committed(durable uint64) uint64 {
	b.trim(durable)
	n := b.ready + b.unacked - b.tailSum
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// sizeList maps outstanding deliveries to their sizes: a window sorted by
// sequence (deliveries from the cursor come in order, redeliveries are
// inserted), where settled entries become tombstones that are dropped from
// the front and compacted away when they are many, as the channel's unacked
// list does. Its size is bounded by the deliveries outstanding.
type sizeList struct {
	e    []sizeEntry
	dead int
}

type sizeEntry struct {
	seq  uint64
	size uint32
	gone bool
}

func (l *sizeList) add(seq uint64, size uint32) {
	if n := len(l.e); n == 0 || l.e[n-1].seq < seq {
		l.e = append(l.e, sizeEntry{seq: seq, size: size})
		return
	}
	i := sort.Search(len(l.e), func(i int) bool { return l.e[i].seq >= seq })
	if i < len(l.e) && l.e[i].seq == seq {
		if l.e[i].gone {
			l.dead--
		}
		l.e[i] = sizeEntry{seq: seq, size: size}
		return
	}
	l.e = append(l.e, sizeEntry{})
	copy(l.e[i+1:], l.e[i:])
	l.e[i] = sizeEntry{seq: seq, size: size}
}

// take removes seq and returns its size.
func (l *sizeList) take(seq uint64) (uint32, bool) {
	i := sort.Search(len(l.e), func(i int) bool { return l.e[i].seq >= seq })
	if i == len(l.e) || l.e[i].seq != seq || l.e[i].gone {
		return 0, false
	}
	n := l.e[i].size
	l.e[i].gone = true
	l.dead++
	k := 0
	for k < len(l.e) && l.e[k].gone {
		k++
	}
	if k > 0 {
		l.dead -= k
		l.e = l.e[k:]
		if len(l.e) == 0 {
			l.e = l.e[:0:0]
		}
	}
	if l.dead > 32 && 2*l.dead > len(l.e) {
		w := 0
		for _, x := range l.e {
			if !x.gone {
				l.e[w] = x
				w++
			}
		}
		clear(l.e[w:])
		l.e = l.e[:w:w]
		l.dead = 0
	}
	return n, true
}

func (l *sizeList) reset() { *l = sizeList{} }
