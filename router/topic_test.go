package router

import (
	"fmt"
	"testing"
)

// topicCases are RabbitMQ topic semantics (rabbit_db_topic_exchange): keys
// split at every '.', "" has no words, empty words are words, "*" is one
// word, "#" is zero or more words, anything else is literal.
var topicCases = []struct {
	pattern, key string
	want         bool
}{
	{"a.b.c", "a.b.c", true},
	{"a.b.c", "a.b", false},
	{"a.b", "a.b.c", false},
	{"A", "a", false},
	{"a.*.c", "a.b.c", true},
	{"a.*.c", "a.c", false},
	{"a.*.c", "a..c", true}, // "*" matches the empty middle word
	{"a.*.c", "a.b.b.c", false},
	{"*", "", false}, // "" has no words
	{"*", "a", true},
	{"*", "a.b", false},
	{"*", ".", false}, // "." is two empty words
	{"*.*", ".", true},
	{"*.*", "a", false},
	{"#", "", true},
	{"#", "a", true},
	{"#", "a.b.c", true},
	{"#", ".", true},
	{"#", "..", true},
	{"#.#", "", true},
	{"#.#", "a", true},
	{"#.#", "a.b.c", true},
	{"#.#.#.#", "a.b.c.d.e.f", true},
	{"a.#", "a", true},
	{"a.#", "a.b.c", true},
	{"a.#", "a.", true}, // "a." is "a" and an empty word
	{"a.#", "b.a", false},
	{"a.#", "ab", false},
	{"#.a", "a", true},
	{"#.a", "b.a", true},
	{"#.a", "a.b", false},
	{"#.a", "", false},
	{"a.#.b", "a.b", true},
	{"a.#.b", "a.x.b", true},
	{"a.#.b", "a.x.y.b", true},
	{"a.#.b", "a.x.y", false},
	{"a.#.b", "b", false},
	{"#.a.#", "a", true},
	{"#.a.#", "x.a.y", true},
	{"#.a.#", "x.y", false},
	{"#.#.#.a.#", "a", true},
	{"*.#", "", false},
	{"*.#", "a", true},
	{"*.#", "a.b.c", true},
	{"#.*", "", false},
	{"#.*", "a.b", true},
	{"#.*.#", "x", true},
	{"*.*.#", "a", false},
	{"*.*.#", "a.b", true},
	{"#.*.*", "a", false},
	{"", "", true},
	{"", "a", false},
	{"", ".", false},
	{"a", "", false},
	{"a.", "a.", true},
	{"a.", "a", false},
	{".a", ".a", true},
	{".a", "a", false},
	{"a..b", "a..b", true},
	{"a..b", "a.b", false},
	{"a.*", "a.", true},
	{".", ".", true},
	{".", "", false},
	{"*.", ".", true},
	{"a.b", "a.#", false}, // key words "#" and "*" are literal
	{"a.*", "a.#", true},
	{"a.#", "a.*", true},
	{"a.b*", "a.bc", false},
	{"a.b*", "a.b*", true},
	{"#a", "xa", false},
	{"#a", "#a", true},
	{"a*", "a", false},
	{"a.#.#.b", "a.b", true},
	{"a.#.*.b", "a.b", false},
	{"a.#.*.b", "a.x.b", true},
	{"a.*.#.*", "a.b", false},
	{"a.*.#.*", "a.b.c", true},
	{"a.*.#.*", "a.b.c.d.e", true},
}

func TestTopicTable(t *testing.T) {
	for _, tc := range topicCases {
		t.Run(fmt.Sprintf("%q~%q", tc.pattern, tc.key), func(t *testing.T) {
			if got := topicMatch(tc.pattern, tc.key); got != tc.want {
				t.Errorf("naive matcher: %q vs %q = %v, want %v", tc.pattern, tc.key, got, tc.want)
			}
			if got := trieMatches(t, []string{tc.pattern}, tc.key); (len(got) == 1) != tc.want {
				t.Errorf("trie: %q vs %q routed to %v, want match %v", tc.pattern, tc.key, got, tc.want)
			}
		})
	}
}

// TestTopicTableTogether binds every pattern of the table to one exchange,
// so the trie shares nodes between them, and checks each key routes to
// exactly the patterns the table says match it.
func TestTopicTableTogether(t *testing.T) {
	var patterns []string
	seen := map[string]bool{}
	for _, tc := range topicCases {
		if !seen[tc.pattern] {
			seen[tc.pattern] = true
			patterns = append(patterns, tc.pattern)
		}
	}
	for _, tc := range topicCases {
		got := trieMatches(t, patterns, tc.key)
		var want []string
		for i, p := range patterns {
			if topicMatch(p, tc.key) {
				want = append(want, fmt.Sprintf("q%03d", i))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("key %q: routed to %v, want %v", tc.key, got, want)
		}
	}
}

// trieMatches binds queue q%03d with patterns[i] on a topic exchange and
// routes key, returning the queues reached.
func trieMatches(t testing.TB, patterns []string, key string) []string {
	t.Helper()
	topo := NewTopology()
	mustDeclare(t, topo, Exchange{Name: "t", Kind: Topic})
	for i, p := range patterns {
		mustBind(t, topo, Binding{Source: "t", Destination: fmt.Sprintf("q%03d", i), DestKind: DestQueue, Key: p})
	}
	got, ok := topo.Snapshot().Route("t", key, nil, nil)
	if !ok {
		t.Fatal("exchange t not found")
	}
	return got
}

func mustDeclare(t testing.TB, topo *Topology, x Exchange) {
	t.Helper()
	if _, err := topo.DeclareExchange(x); err != nil {
		t.Fatalf("declare %s: %v", x.Name, err)
	}
}

func mustBind(t testing.TB, topo *Topology, b Binding) {
	t.Helper()
	if _, err := topo.Bind(b); err != nil {
		t.Fatalf("bind %s: %v", b, err)
	}
}

func TestSplitWalk(t *testing.T) {
	for _, key := range []string{"", "a", ".", "..", "a.b", "a..b", ".a.", "abc.def.g"} {
		var got []string
		for pos := wordsStart(key); pos <= len(key); {
			var w string
			w, pos = nextWord(key, pos)
			got = append(got, w)
		}
		if want := splitWords(key); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("walk %q = %q, split = %q", key, got, want)
		}
	}
}
