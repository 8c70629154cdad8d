package router

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestParseKind(t *testing.T) {
	for _, k := range []Kind{Direct, Fanout, Topic, Headers} {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	for _, s := range []string{"", "x-consistent-hash", "Direct", "match"} {
		if _, err := ParseKind(s); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("ParseKind(%q) err = %v, want ErrUnknownKind", s, err)
		}
	}
	topo := NewTopology()
	if _, err := topo.DeclareExchange(Exchange{Name: "x", Kind: Kind(9)}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("declare kind 9: err = %v", err)
	}
}

func TestInequivalentError(t *testing.T) {
	topo := NewTopology()
	_, err := topo.DeclareExchange(Exchange{Name: "amq.topic", Kind: Fanout, Durable: true})
	var ie *InequivalentError
	if !errors.As(err, &ie) || !errors.Is(err, ErrInequivalent) {
		t.Fatalf("err = %v, want *InequivalentError", err)
	}
	if ie.Field != "type" || ie.Received != "fanout" || ie.Current != "topic" || ie.Exchange != "amq.topic" {
		t.Errorf("error fields = %+v", *ie)
	}
}

func TestSnapshotLifecycle(t *testing.T) {
	topo := NewTopology()
	s1 := topo.Current()
	if s1 == nil || topo.Snapshot() != s1 {
		t.Fatal("Snapshot without changes must return the current snapshot")
	}
	if s1.Len() != len(Predeclared) {
		t.Errorf("Len = %d, want %d", s1.Len(), len(Predeclared))
	}
	mustBind(t, topo, Binding{Source: "amq.direct", Destination: "q", DestKind: DestQueue, Key: "k"})
	if topo.Current() != s1 {
		t.Error("Current changed before Snapshot")
	}
	s2 := topo.Snapshot()
	if s2 == s1 || s2.Version() != s1.Version()+1 || topo.Current() != s2 {
		t.Fatalf("versions %d -> %d", s1.Version(), s2.Version())
	}
	// The old snapshot is immutable.
	if got, _ := s1.Route("amq.direct", "k", nil, nil); len(got) != 0 {
		t.Errorf("old snapshot routes to %v", got)
	}
	if got, _ := s2.Route("amq.direct", "k", nil, nil); sprint(got) != "[q]" {
		t.Errorf("new snapshot routes to %v", got)
	}
	// Unchanged exchanges keep their compiled form across snapshots.
	if s1.ex.get("amq.topic") != s2.ex.get("amq.topic") {
		t.Error("amq.topic recompiled without a change")
	}
	if s1.ex.get("amq.direct") == s2.ex.get("amq.direct") {
		t.Error("amq.direct not recompiled after a bind")
	}
	x, ok := s2.Exchange("amq.direct")
	if !ok || x.Kind != Direct || !x.Durable {
		t.Errorf("Exchange(amq.direct) = %+v, %v", x, ok)
	}
	if _, ok := s2.Exchange("nope"); ok {
		t.Error("Exchange(nope) found")
	}
}

func TestInternalExposed(t *testing.T) {
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "in", Kind: Fanout, Internal: true})
	mustBind(t, topo, Binding{Source: "amq.direct", Destination: "in", DestKind: DestExchange, Key: "k"})
	mustBind(t, topo, Binding{Source: "in", Destination: "q", DestKind: DestQueue})
	s := topo.Snapshot()
	if x, _ := s.Exchange("in"); !x.Internal {
		t.Error("Internal not exposed")
	}
	if got, _ := s.Route("amq.direct", "k", nil, nil); sprint(got) != "[q]" {
		t.Errorf("route through internal exchange = %v", got)
	}
}

func TestArgsCopied(t *testing.T) {
	topo := NewTopology()
	args := map[string]any{"x-match": "all", "a": "1"}
	mustBind(t, topo, Binding{Source: "amq.headers", Destination: "q", DestKind: DestQueue, Args: args})
	args["a"] = "2"
	xargs := map[string]any{AlternateExchangeArg: "amq.fanout"}
	mustDeclare(t, topo, Exchange{Name: "x", Kind: Direct, Args: xargs})
	xargs[AlternateExchangeArg] = "elsewhere"
	mustBind(t, topo, Binding{Source: "amq.fanout", Destination: "fq", DestKind: DestQueue})
	s := topo.Snapshot()
	if got, _ := s.Route("amq.headers", "", map[string]any{"a": "1"}, nil); sprint(got) != "[q]" {
		t.Errorf("binding args aliased the caller's map: %v", got)
	}
	if got, _ := s.Route("x", "k", nil, nil); sprint(got) != "[fq]" {
		t.Errorf("exchange args aliased the caller's map: %v", got)
	}
	if bs := topo.BindingsOf("q"); len(bs) != 1 || bs[0].Args["a"] != "1" {
		t.Errorf("BindingsOf = %v", bs)
	}
}

func TestRouteAppendsAndDedups(t *testing.T) {
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
	mustDeclare(t, topo, Exchange{Name: "f", Kind: Fanout})
	for _, b := range []Binding{
		{Source: "t", Destination: "q2", DestKind: DestQueue, Key: "a.*"},
		{Source: "t", Destination: "q1", DestKind: DestQueue, Key: "#"},
		{Source: "t", Destination: "q2", DestKind: DestQueue, Key: "#.b"},
		{Source: "t", Destination: "f", DestKind: DestExchange, Key: "a.b"},
		{Source: "f", Destination: "q1", DestKind: DestQueue},
		{Source: "f", Destination: "q0", DestKind: DestQueue},
	} {
		mustBind(t, topo, b)
	}
	s := topo.Snapshot()
	got, ok := s.Route("t", "a.b", nil, []string{"zz"})
	if !ok || sprint(got) != "[zz q0 q1 q2]" {
		t.Errorf("Route = %v, %v", got, ok)
	}
	got, _ = s.RouteKeys("t", []string{"x.y", "a.c", "a.b"}, nil, nil)
	if sprint(got) != "[q0 q1 q2]" {
		t.Errorf("RouteKeys = %v", got)
	}
	got, _ = s.RouteKeys("", []string{"b", "a", "b"}, nil, nil)
	if sprint(got) != "[a b]" {
		t.Errorf("RouteKeys on default = %v", got)
	}
	if got, ok := s.RouteKeys("nope", []string{"a"}, nil, []string{"p"}); ok || sprint(got) != "[p]" {
		t.Errorf("RouteKeys on missing = %v %v", got, ok)
	}
}

// TestLongChain routes through more exchanges than Route's stack buffers
// hold, with a cycle back to the start.
func TestLongChain(t *testing.T) {
	topo := NewTopology()
	const n = 50
	for i := 0; i < n; i++ {
		mustDeclare(t, topo, Exchange{Name: fmt.Sprintf("x%02d", i), Kind: Fanout})
	}
	for i := 0; i < n; i++ {
		mustBind(t, topo, Binding{Source: fmt.Sprintf("x%02d", i), Destination: fmt.Sprintf("x%02d", (i+1)%n), DestKind: DestExchange})
		if i%10 == 9 {
			mustBind(t, topo, Binding{Source: fmt.Sprintf("x%02d", i), Destination: fmt.Sprintf("q%02d", i), DestKind: DestQueue})
		}
		// Every exchange also fans out to two others, making a dense graph.
		mustBind(t, topo, Binding{Source: fmt.Sprintf("x%02d", i), Destination: fmt.Sprintf("x%02d", (i*7)%n), DestKind: DestExchange})
	}
	got, _ := topo.Snapshot().Route("x13", "", nil, nil)
	if want := "[q09 q19 q29 q39 q49]"; sprint(got) != want {
		t.Errorf("Route = %v, want %s", got, want)
	}
}

// TestAlternateChainLong chains alternates deeper than the stack buffers.
func TestAlternateChainLong(t *testing.T) {
	topo := NewTopology()
	const n = 40
	for i := 0; i < n; i++ {
		mustDeclare(t, topo, Exchange{Name: fmt.Sprintf("a%02d", i), Kind: Direct,
			Args: map[string]any{AlternateExchangeArg: fmt.Sprintf("a%02d", (i+1)%n)}})
	}
	s := topo.Snapshot()
	if got, ok := s.Route("a00", "k", nil, nil); !ok || len(got) != 0 {
		t.Errorf("cycle of alternates = %v %v", got, ok)
	}
	mustBind(t, topo, Binding{Source: "a39", Destination: "end", DestKind: DestQueue, Key: "k"})
	if got, _ := topo.Snapshot().Route("a00", "k", nil, nil); sprint(got) != "[end]" {
		t.Errorf("Route = %v", got)
	}
}

func TestRemoveQueueAndListings(t *testing.T) {
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "ad", Kind: Direct, AutoDelete: true})
	mustBind(t, topo, Binding{Source: "ad", Destination: "q", DestKind: DestQueue, Key: "a"})
	mustBind(t, topo, Binding{Source: "ad", Destination: "q", DestKind: DestQueue, Key: "b"})
	mustBind(t, topo, Binding{Source: "amq.direct", Destination: "q", DestKind: DestQueue, Key: "a"})
	mustBind(t, topo, Binding{Source: "amq.direct", Destination: "other", DestKind: DestQueue, Key: "a"})
	if n := len(topo.BindingsOf("q")); n != 3 {
		t.Fatalf("BindingsOf(q) = %d bindings", n)
	}
	removed, auto := topo.RemoveQueue("q")
	if len(removed) != 3 || sprint(auto) != "[ad]" {
		t.Errorf("RemoveQueue = %v, %v", removed, auto)
	}
	if _, ok := topo.Exchange("ad"); ok {
		t.Error("auto-delete exchange survived")
	}
	if got, _ := topo.Snapshot().Route("amq.direct", "a", nil, nil); sprint(got) != "[other]" {
		t.Errorf("Route after RemoveQueue = %v", got)
	}
	if removed, auto := topo.RemoveQueue("never"); removed != nil || auto != nil {
		t.Errorf("RemoveQueue(never) = %v %v", removed, auto)
	}
	if bs := topo.BindingsFrom("nope"); bs != nil {
		t.Errorf("BindingsFrom(nope) = %v", bs)
	}
	if n := len(topo.Bindings()); n != 1 {
		t.Errorf("Bindings() = %d", n)
	}
}

// TestConcurrentRoute routes on Current from several goroutines while the
// topology changes; run with -race.
func TestConcurrentRoute(t *testing.T) {
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
	topo.Snapshot()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]string, 0, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := topo.Current()
				got, ok := s.Route("t", "a.b.c", nil, dst[:0])
				if !ok {
					errs <- errors.New("exchange t vanished")
					return
				}
				// Every bound pattern matches a.b.c, so the count must be the
				// number of bindings in this snapshot.
				if want := len(boundAtABC(s)); len(got) != want {
					errs <- fmt.Errorf("routed to %d queues, snapshot has %d", len(got), want)
					return
				}
			}
		}()
	}
	for i := 0; i < 300; i++ {
		mustBind(t, topo, Binding{Source: "t", Destination: fmt.Sprintf("q%03d", i), DestKind: DestQueue, Key: "a.*.c"})
		if i%3 == 0 {
			topo.Unbind(Binding{Source: "t", Destination: fmt.Sprintf("q%03d", i/2), DestKind: DestQueue, Key: "a.*.c"})
		}
		topo.Snapshot()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// boundAtABC returns the queues bound with "a.*.c" on exchange t.
func boundAtABC(s *Snapshot) []string {
	n := s.ex.get("t").trie.lit["a"]
	if n == nil || n.star == nil {
		return nil
	}
	if n = n.star.lit["c"]; n == nil || n.d == nil {
		return nil
	}
	return n.d.queues
}

func TestRouteAllocs(t *testing.T) {
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
	mustDeclare(t, topo, Exchange{Name: "e2e", Kind: Direct})
	for i := 0; i < 10; i++ {
		q := fmt.Sprintf("q%d", i)
		mustBind(t, topo, Binding{Source: "amq.fanout", Destination: q, DestKind: DestQueue})
		mustBind(t, topo, Binding{Source: "amq.direct", Destination: q, DestKind: DestQueue, Key: "k"})
		mustBind(t, topo, Binding{Source: "t", Destination: q, DestKind: DestQueue, Key: fmt.Sprintf("a.*.%d", i)})
		mustBind(t, topo, Binding{Source: "t", Destination: q, DestKind: DestQueue, Key: "a.#"})
		mustBind(t, topo, Binding{Source: "amq.headers", Destination: q, DestKind: DestQueue,
			Args: map[string]any{"x-match": "any", "n": int32(i)}})
	}
	mustBind(t, topo, Binding{Source: "e2e", Destination: "amq.fanout", DestKind: DestExchange, Key: "k"})
	mustBind(t, topo, Binding{Source: "e2e", Destination: "t", DestKind: DestExchange, Key: "k"})
	s := topo.Snapshot()
	dst := make([]string, 0, 64)
	hdrs := map[string]any{"n": int64(3)}
	for _, tc := range []struct {
		x, key string
		h      map[string]any
		n      int
	}{
		{"amq.direct", "k", nil, 10},
		{"amq.fanout", "", nil, 10},
		{"t", "a.b.3", nil, 10},
		{"amq.headers", "", hdrs, 1},
		{"e2e", "k", nil, 10},
		{"", "q", nil, 1},
	} {
		var got []string
		allocs := testing.AllocsPerRun(100, func() {
			got, _ = s.Route(tc.x, tc.key, tc.h, dst[:0])
		})
		if len(got) != tc.n {
			t.Errorf("%s %q: routed to %d queues, want %d", tc.x, tc.key, len(got), tc.n)
		}
		if allocs != 0 {
			t.Errorf("%s %q: %v allocs per Route", tc.x, tc.key, allocs)
		}
	}
}
