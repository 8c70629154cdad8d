package router

import (
	"maps"
	"strings"
)

// Topic keys and patterns split into words at every '.', as RabbitMQ's
// rabbit_db_topic_exchange does:
//
//	""      -> []                 (zero words)
//	"a"     -> ["a"]
//	"a..b"  -> ["a", "", "b"]     (empty words are words)
//	".a."   -> ["", "a", ""]
//	"."     -> ["", ""]
//
// A pattern word "*" matches exactly one word (which may be empty), "#"
// matches zero or more words; every other word matches itself. Routing-key
// words "*" and "#" are plain words.
//
// Words are walked in place as (key, pos): the next word starts at pos and
// ends at the next '.' or the end of the key; pos == len(key)+1 means no
// words remain. No word slice is built on the route path.

// wordsStart returns the position of the first word of key.
func wordsStart(key string) int {
	if key == "" {
		return 1 // zero words
	}
	return 0
}

// nextWord returns the word at pos and the position after it.
// The caller checks pos <= len(key) first.
func nextWord(key string, pos int) (word string, next int) {
	if i := strings.IndexByte(key[pos:], '.'); i >= 0 {
		return key[pos : pos+i], pos + i + 1
	}
	return key[pos:], len(key) + 1
}

// splitWords splits a binding pattern into words (allocates; bind time only).
func splitWords(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// trieNode is one word position of a topic exchange's binding trie. A
// built trie is immutable.
type trieNode struct {
	lit  map[string]*trieNode // literal words
	star *trieNode            // "*"
	hash *trieNode            // "#"
	d    *dests               // bindings whose pattern ends here
	b    *destBuilder         // build time only
}

func (n *trieNode) insert(pattern string) *trieNode {
	prevHash := false
	for _, w := range splitWords(pattern) {
		switch w {
		case "#":
			// "#.#" matches exactly what "#" matches; collapsing runs keeps the
			// walk from going exponential on patterns like "#.#.#.#".
			if prevHash {
				continue
			}
			if n.hash == nil {
				n.hash = &trieNode{}
			}
			n = n.hash
		case "*":
			if n.star == nil {
				n.star = &trieNode{}
			}
			n = n.star
		default:
			c := n.lit[w]
			if c == nil {
				if n.lit == nil {
					n.lit = make(map[string]*trieNode)
				}
				c = &trieNode{}
				n.lit[w] = c
			}
			n = c
		}
		prevHash = w == "#"
	}
	if n.b == nil {
		n.b = &destBuilder{}
	}
	return n
}

// normTopic collapses runs of "#" words in a pattern: "a.#.#.b" and
// "a.#.b" match the same keys and share a trie node.
func normTopic(p string) string {
	if !strings.Contains(p, "#.#") {
		return p
	}
	ws := splitWords(p)
	out := ws[:0]
	for i, w := range ws {
		if w == "#" && i > 0 && ws[i-1] == "#" {
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, ".")
}

// with returns a copy of the trie rooted at n (nil for an empty trie) in
// which the pattern words lead to d; only the nodes on the path are copied.
// Nodes left with no bindings and no children are pruned, and an empty trie
// is nil.
func (n *trieNode) with(words []string, d *dests) *trieNode {
	var c trieNode
	if n != nil {
		c = *n
	}
	if len(words) == 0 {
		c.d = d
	} else {
		switch w := words[0]; w {
		case "#":
			c.hash = c.hash.with(words[1:], d)
		case "*":
			c.star = c.star.with(words[1:], d)
		default:
			child := c.lit[w].with(words[1:], d)
			c.lit = maps.Clone(c.lit)
			if child != nil {
				if c.lit == nil {
					c.lit = make(map[string]*trieNode)
				}
				c.lit[w] = child
			} else {
				delete(c.lit, w)
				if len(c.lit) == 0 {
					c.lit = nil
				}
			}
		}
	}
	if c.d == nil && c.lit == nil && c.star == nil && c.hash == nil {
		return nil
	}
	return &c
}

// finish turns the build-time destination sets into dests, recursively.
func (n *trieNode) finish() {
	if n.b != nil {
		n.d = n.b.build()
		n.b = nil
	}
	for _, c := range n.lit {
		c.finish()
	}
	if n.star != nil {
		n.star.finish()
	}
	if n.hash != nil {
		n.hash.finish()
	}
}

// match appends to hits the dests of every pattern matching the words of
// key from pos on. It follows RabbitMQ's trie_match: at each node try the
// literal word, then "*", then "#" swallowing zero or more words.
func (n *trieNode) match(key string, pos int, hits []*dests) []*dests {
	if pos > len(key) {
		if n.d != nil {
			hits = addHit(hits, n.d)
		}
		if n.hash != nil {
			hits = n.hash.match(key, pos, hits)
		}
		return hits
	}
	w, next := nextWord(key, pos)
	if c := n.lit[w]; c != nil {
		hits = c.match(key, next, hits)
	}
	if n.star != nil {
		hits = n.star.match(key, next, hits)
	}
	if h := n.hash; h != nil {
		// "#" swallows zero words (match the rest at h), one word, two, ...
		for p := pos; ; {
			hits = h.match(key, p, hits)
			if p > len(key) {
				break
			}
			_, p = nextWord(key, p)
		}
	}
	return hits
}

// addHit appends d unless it is already among the last few hits (a node
// reached twice through different "#" paths). Duplicates that slip through
// only cost a little: Route deduplicates queue names anyway.
func addHit(hits []*dests, d *dests) []*dests {
	lo := max(0, len(hits)-16)
	for _, h := range hits[lo:] {
		if h == d {
			return hits
		}
	}
	return append(hits, d)
}

// topicMatch reports whether pattern matches key; a plain recursive
// matcher over split words, the reference the trie is fuzzed against.
func topicMatch(pattern, key string) bool {
	return wordsMatch(splitWords(pattern), splitWords(key))
}

func wordsMatch(p, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	switch p[0] {
	case "#":
		for i := 0; i <= len(k); i++ {
			if wordsMatch(p[1:], k[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(k) > 0 && wordsMatch(p[1:], k[1:])
	}
	return len(k) > 0 && p[0] == k[0] && wordsMatch(p[1:], k[1:])
}
