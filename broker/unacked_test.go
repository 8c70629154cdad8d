package broker

import (
	"math/rand/v2"
	"testing"
)

// TestUnackedWindowModel drives the channel's unacked window with random
// deliveries and acks (in order, out of order, multiple) and checks it
// against a map after every step: sliding the window back over its dead
// front must never lose or duplicate a delivery.
func TestUnackedWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ch := &channel{}
	model := make(map[uint64]bool)
	next := uint64(0)
	lowest := func() uint64 {
		lo := next + 1
		for tag := range model {
			lo = min(lo, tag)
		}
		return lo
	}
	for step := 0; step < 200000; step++ {
		switch r := rng.IntN(10); {
		case r < 5 || len(model) == 0:
			next++
			ch.pushUnackedLocked(delivery{tag: next, seq: next})
			model[next] = true
		case r < 8: // ack the oldest, as most consumers do
			tag := lowest()
			i := ch.findLocked(tag)
			if i < 0 {
				t.Fatalf("step %d: outstanding tag %d not found", step, tag)
			}
			ch.unacked[i].acked = true
			ch.acked++
			delete(model, tag)
			ch.compactLocked()
		default: // ack a random outstanding tag
			var tag uint64
			for tag = range model {
				break
			}
			i := ch.findLocked(tag)
			if i < 0 {
				t.Fatalf("step %d: outstanding tag %d not found", step, tag)
			}
			ch.unacked[i].acked = true
			ch.acked++
			delete(model, tag)
			ch.compactLocked()
		}
		if step%997 == 0 {
			live := 0
			prev := uint64(0)
			for _, d := range ch.unacked {
				if d.tag <= prev {
					t.Fatalf("step %d: tags out of order", step)
				}
				prev = d.tag
				if !d.acked {
					live++
					if !model[d.tag] {
						t.Fatalf("step %d: tag %d outstanding in the window but acked", step, d.tag)
					}
				}
			}
			if live != len(model) {
				t.Fatalf("step %d: %d outstanding in the window, want %d", step, live, len(model))
			}
		}
	}
	if cap(ch.ubuf) > 1<<16 {
		t.Fatalf("window array grew to %d entries for at most a few thousand outstanding", cap(ch.ubuf))
	}
}
