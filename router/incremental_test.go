package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIncrementalCompile applies random binds and unbinds to a direct and
// a topic exchange and checks after each snapshot that the incrementally
// updated routing table routes every probe key exactly as a table compiled
// from scratch, and that an earlier snapshot still routes as it did.
func TestIncrementalCompile(t *testing.T) {
	words := []string{"a", "b", "", "*", "#"}
	randKey := func(r *rand.Rand, wild bool) string {
		n := r.IntN(4)
		s := ""
		for i := 0; i < n; i++ {
			w := words[r.IntN(len(words))]
			if !wild && (w == "*" || w == "#") {
				w = "c"
			}
			if i > 0 {
				s += "."
			}
			s += w
		}
		return s
	}
	var probes []string
	for _, a := range []string{"", "a", "b", "c", "a.b", "a..b", "b.a.c", ".", "a.b.c.a", "c.c"} {
		probes = append(probes, a)
	}
	r := rand.New(rand.NewPCG(1, 2))
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
	mustDeclare(t, topo, Exchange{Name: "d", Kind: Direct})
	type frozen struct {
		s    *Snapshot
		want map[string]string
	}
	var old []frozen
	for step := 0; step < 2000; step++ {
		x := "t"
		if r.IntN(3) == 0 {
			x = "d"
		}
		b := Binding{Source: x, Destination: fmt.Sprintf("q%d", r.IntN(6)), DestKind: DestQueue, Key: randKey(r, x == "t")}
		if r.IntN(5) < 3 {
			mustBind(t, topo, b)
		} else {
			// Unbind something that exists half the time.
			if bs := topo.BindingsFrom(x); len(bs) > 0 && r.IntN(2) == 0 {
				b = bs[r.IntN(len(bs))]
			}
			if _, _, _, err := topo.Unbind(b); err != nil {
				t.Fatal(err)
			}
		}
		s := topo.Snapshot()
		want := map[string]string{}
		for _, name := range []string{"t", "d"} {
			xs := topo.exchanges[name]
			fresh := &Snapshot{}
			fresh.ex[shardOf(name)] = map[string]*compiled{name: compile(xs.def, xs.bindings)}
			for _, k := range probes {
				got, _ := s.Route(name, k, nil, nil)
				exp, _ := fresh.Route(name, k, nil, nil)
				if !slices.Equal(got, exp) {
					t.Fatalf("step %d: %s %q: incremental %v, fresh %v", step, name, k, got, exp)
				}
				want[name+" "+k] = fmt.Sprint(got)
			}
		}
		if step%100 == 0 {
			old = append(old, frozen{s, want})
		}
	}
	for _, f := range old {
		for nk, w := range f.want {
			var name, k string
			fmt.Sscanf(nk, "%s", &name)
			k = nk[len(name)+1:]
			if got, _ := f.s.Route(name, k, nil, nil); fmt.Sprint(got) != w {
				t.Fatalf("snapshot %d changed: %s %q routes to %v, was %s", f.s.Version(), name, k, got, w)
			}
		}
	}
}

func TestNormTopic(t *testing.T) {
	for in, want := range map[string]string{
		"#": "#", "#.#": "#", "a.#.#.#.b": "a.#.b", "#.a.#": "#.a.#", "a#.#b": "a#.#b", "#.#.": "#.",
	} {
		if got := normTopic(in); got != want {
			t.Errorf("normTopic(%q) = %q, want %q", in, got, want)
		}
	}
}
