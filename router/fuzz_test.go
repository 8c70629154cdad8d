package router

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzTopic binds up to eight patterns (newline-separated) to one topic
// exchange and checks that routing key reaches exactly the queues whose
// pattern the naive recursive matcher accepts.
func FuzzTopic(f *testing.F) {
	for _, tc := range topicCases {
		f.Add(tc.pattern, tc.key)
	}
	f.Add("#\n*\na.#\n#.b\n*.*", "a.b")
	f.Add("a.#.#.b\n#.*.#\n..#", "a...b")
	f.Fuzz(func(t *testing.T, patterns, key string) {
		ps := strings.Split(patterns, "\n")
		if len(ps) > 8 || len(key) > 32 {
			t.Skip()
		}
		for _, p := range ps {
			// Keep the naive matcher's backtracking small.
			if len(p) > 32 || strings.Count(p, "#") > 5 {
				t.Skip()
			}
		}
		topo := NewTopology()
		mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
		for i, p := range ps {
			mustBind(t, topo, Binding{Source: "t", Destination: fmt.Sprintf("q%d", i), DestKind: DestQueue, Key: p})
		}
		got, ok := topo.Snapshot().Route("t", key, nil, []string{"prefix"})
		if !ok {
			t.Fatal("exchange t not found")
		}
		want := []string{"prefix"}
		for i, p := range ps {
			if topicMatch(p, key) {
				want = append(want, fmt.Sprintf("q%d", i))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("patterns %q key %q: trie %v, naive %v", ps, key, got, want)
		}
	})
}
