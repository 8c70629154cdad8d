package router

import (
	"fmt"
	"testing"
)

func benchRoute(b *testing.B, s *Snapshot, x, key string, h map[string]any, wantN int) {
	b.Helper()
	dst := make([]string, 0, 256)
	got, ok := s.Route(x, key, h, dst[:0])
	if !ok || len(got) != wantN {
		b.Fatalf("route %s %q: %d queues (found %v), want %d", x, key, len(got), ok, wantN)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		dst, _ = s.Route(x, key, h, dst[:0])
	}
}

// BenchmarkRouteDirect routes one key among n keys bound to one queue each.
func BenchmarkRouteDirect(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			topo := NewTopology()
			for i := 0; i < n; i++ {
				mustBind(b, topo, Binding{Source: "amq.direct", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue, Key: fmt.Sprintf("key.%d", i)})
			}
			benchRoute(b, topo.Snapshot(), "amq.direct", "key.7", nil, 1)
		})
	}
}

// BenchmarkRouteFanout routes to n queues.
func BenchmarkRouteFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("queues=%d", n), func(b *testing.B) {
			topo := NewTopology()
			for i := 0; i < n; i++ {
				mustBind(b, topo, Binding{Source: "amq.fanout", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue})
			}
			benchRoute(b, topo.Snapshot(), "amq.fanout", "", nil, n)
		})
	}
}

// BenchmarkRouteTopic routes one key against 1000 wildcard bindings
// ("stock.{us,eu,asia,*}.*.{0..49}.#"), 10 of which match.
func BenchmarkRouteTopic(b *testing.B) {
	topo := NewTopology()
	regions := []string{"us", "eu", "asia", "*"}
	for i := 0; i < 1000; i++ {
		mustBind(b, topo, Binding{Source: "amq.topic", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue,
			Key: fmt.Sprintf("stock.%s.*.%d.#", regions[i%4], i%50)})
	}
	benchRoute(b, topo.Snapshot(), "amq.topic", "stock.us.nyse.7.trade", nil, 10)
}

// BenchmarkRouteHeaders matches message headers against n bindings with
// two arguments each (x-match all); one matches.
func BenchmarkRouteHeaders(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			topo := NewTopology()
			for i := 0; i < n; i++ {
				mustBind(b, topo, Binding{Source: "amq.headers", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue,
					Args: map[string]any{"type": fmt.Sprintf("t%d", i), "region": "eu"}})
			}
			h := map[string]any{"type": "t7", "region": "eu", "size": int32(10)}
			benchRoute(b, topo.Snapshot(), "amq.headers", "", h, 1)
		})
	}
}

// BenchmarkRouteExchangeChain routes through direct -> fanout -> topic
// with an alternate exchange on the way.
func BenchmarkRouteExchangeChain(b *testing.B) {
	topo := NewTopology()
	mustDeclare(b, topo, Exchange{Name: "in", Kind: Direct, Args: map[string]any{AlternateExchangeArg: "amq.fanout"}})
	mustBind(b, topo, Binding{Source: "in", Destination: "amq.topic", DestKind: DestExchange, Key: "k"})
	mustBind(b, topo, Binding{Source: "amq.topic", Destination: "t", DestKind: DestQueue, Key: "#"})
	for i := 0; i < 10; i++ {
		mustBind(b, topo, Binding{Source: "amq.fanout", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue})
	}
	s := topo.Snapshot()
	b.Run("e2e", func(b *testing.B) { benchRoute(b, s, "in", "k", nil, 1) })
	b.Run("alternate", func(b *testing.B) { benchRoute(b, s, "in", "other", nil, 10) })
}

// BenchmarkBindSnapshot measures one bind plus Snapshot on an exchange that
// already has n bindings: the cost the broker pays per queue.bind.
func BenchmarkBindSnapshot(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			topo := NewTopology()
			for i := 0; i < n; i++ {
				mustBind(b, topo, Binding{Source: "amq.topic", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue, Key: fmt.Sprintf("a.%d.#", i)})
			}
			topo.Snapshot()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bd := Binding{Source: "amq.topic", Destination: "extra", DestKind: DestQueue, Key: "x.extra"}
				if i%2 == 0 {
					topo.Bind(bd)
				} else {
					topo.Unbind(bd)
				}
				topo.Snapshot()
				i++
			}
		})
	}
}
