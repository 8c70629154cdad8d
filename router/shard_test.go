package router

import (
	"math/rand/v2"
	"testing"
)

// TestSnapshotShardsAndUsage runs random changes and checks after each
// snapshot that it holds exactly the topology's exchanges, each compiled
// from its current bindings, and that the usage counters agree with a
// count from scratch.
func TestSnapshotShardsAndUsage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	topo := NewTopology()
	kinds := []Kind{Direct, Fanout, Topic, Headers}
	names := []string{"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"}
	queues := []string{"q0", "q1", "q2"}
	for step := 0; step < 3000; step++ {
		switch op := r.IntN(10); {
		case op < 2:
			topo.DeclareExchange(Exchange{Name: names[r.IntN(len(names))], Kind: kinds[r.IntN(len(kinds))], AutoDelete: r.IntN(4) == 0})
		case op < 3:
			topo.DeleteExchange(names[r.IntN(len(names))], false)
		case op < 6:
			b := Binding{Source: names[r.IntN(len(names))], Destination: queues[r.IntN(len(queues))], DestKind: DestQueue,
				Key: "k", Args: map[string]any{"x-match": "any", "h": "v"}}
			if r.IntN(3) == 0 {
				b.Destination, b.DestKind = names[r.IntN(len(names))], DestExchange
			}
			topo.Bind(b)
		case op < 8:
			bs := topo.Bindings()
			if len(bs) > 0 {
				topo.Unbind(bs[r.IntN(len(bs))])
			}
		default:
			topo.RemoveQueue(queues[r.IntN(len(queues))])
		}
		s := topo.Snapshot()
		if s.Len() != len(topo.exchanges) {
			t.Fatalf("step %d: snapshot has %d exchanges, topology %d", step, s.Len(), len(topo.exchanges))
		}
		for name, x := range topo.exchanges {
			if s.ex.get(name) != x.compiled || x.stale {
				t.Fatalf("step %d: exchange %q not current in the snapshot", step, name)
			}
		}
		headers, toEx := 0, 0
		for _, b := range topo.Bindings() {
			if topo.exchanges[b.Source].def.Kind == Headers {
				headers++
			}
			if b.DestKind == DestExchange {
				toEx++
			}
		}
		if topo.use.headers != headers || topo.use.toExchanges != toEx {
			t.Fatalf("step %d: usage %+v, counted headers=%d to-exchange=%d", step, topo.use, headers, toEx)
		}
	}
}
