package router

import (
	"hash/maphash"
	"maps"
	"slices"
	"strings"
)

// dests is the immutable destination set of one match: a direct key, the
// fanout set, a topic trie node, or a headers pattern.
type dests struct {
	queues    []string // sorted, unique
	exchanges []string // sorted, unique
}

// destBuilder collects destinations while an exchange is compiled.
type destBuilder struct {
	queues, exchanges []string
}

func (b *destBuilder) add(bd *Binding) {
	if bd.DestKind == DestExchange {
		b.exchanges = append(b.exchanges, bd.Destination)
	} else {
		b.queues = append(b.queues, bd.Destination)
	}
}

func (b *destBuilder) build() *dests {
	if len(b.queues) == 0 && len(b.exchanges) == 0 {
		return nil
	}
	slices.Sort(b.queues)
	slices.Sort(b.exchanges)
	return &dests{queues: slices.Clip(slices.Compact(b.queues)), exchanges: slices.Clip(slices.Compact(b.exchanges))}
}

// compiled is the immutable routing form of one exchange and its bindings
// as source.
type compiled struct {
	def    Exchange
	alt    string // alternate exchange, "" if none
	direct *directMap
	fanout *dests
	trie   *trieNode
	hdrs   []*headerMatcher
	hkeys  []string // distinct argument keys of hdrs; headerArg.ki indexes it
}

func compile(def Exchange, bindings map[bkey]*Binding) *compiled {
	c := &compiled{def: def}
	c.alt, _ = def.AlternateExchange()
	switch def.Kind {
	case Direct:
		bs := make(map[string]*destBuilder)
		for _, b := range bindings {
			db := bs[b.Key]
			if db == nil {
				db = &destBuilder{}
				bs[b.Key] = db
			}
			db.add(b)
		}
		if len(bs) > 0 {
			c.direct = &directMap{}
			for k, db := range bs {
				c.direct.set(k, db.build())
			}
		}
	case Fanout:
		var db destBuilder
		for _, b := range bindings {
			db.add(b)
		}
		c.fanout = db.build()
	case Topic:
		c.trie = &trieNode{}
		for _, b := range bindings {
			c.trie.insert(b.Key).b.add(b)
		}
		c.trie.finish()
	case Headers:
		byArgs := make(map[string]*headerMatcher)
		builders := make(map[*headerMatcher]*destBuilder)
		for id, b := range bindings {
			m := byArgs[id.args]
			if m == nil {
				var err error
				if m, err = parseHeaderArgs(b.Args); err != nil {
					continue // validated at bind time; unreachable
				}
				byArgs[id.args] = m
				builders[m] = &destBuilder{}
				c.hdrs = append(c.hdrs, m)
			}
			builders[m].add(b)
		}
		for m, db := range builders {
			m.d = db.build()
		}
		c.hkeys = indexHeaderKeys(c.hdrs)
	}
	return c
}

// update returns a copy of c with the destinations of the changed keys
// rebuilt from byKey; unchanged parts are shared with c. Direct and topic
// exchanges only.
func (c *compiled) update(changed map[string]struct{}, byKey map[string]map[*Binding]struct{}) *compiled {
	n := *c
	switch c.def.Kind {
	case Direct:
		// Copy only the shards of the changed keys: a bind to a direct
		// exchange with 100,000 bindings copies about 1/64 of them.
		n.direct = &directMap{}
		if c.direct != nil {
			*n.direct = *c.direct
		}
		var copied [exShards]bool
		for k := range changed {
			i := shardOf(k)
			if !copied[i] {
				copied[i] = true
				n.direct[i] = maps.Clone(n.direct[i])
			}
			if d := buildDests(byKey[k]); d != nil {
				n.direct.set(k, d)
			} else {
				delete(n.direct[i], k)
			}
		}
	case Topic:
		for k := range changed {
			n.trie = n.trie.with(splitWords(k), buildDests(byKey[k]))
		}
	}
	return &n
}

func buildDests(set map[*Binding]struct{}) *dests {
	var db destBuilder
	for b := range set {
		db.add(b)
	}
	return db.build()
}

// match appends the destination sets of the bindings matching a message.
func (c *compiled) match(key string, headers map[string]any, hits []*dests) []*dests {
	switch c.def.Kind {
	case Direct:
		if d := c.direct.get(key); d != nil {
			hits = append(hits, d)
		}
	case Fanout:
		if c.fanout != nil {
			hits = append(hits, c.fanout)
		}
	case Topic:
		if c.trie != nil {
			hits = c.trie.match(key, wordsStart(key), hits)
		}
	case Headers:
		if len(c.hkeys) > maxHeaderKeys {
			for _, m := range c.hdrs {
				if m.match(headers) {
					hits = append(hits, m.d)
				}
			}
			break
		}
		// Look every argument key up once, not once per binding.
		var vals [maxHeaderKeys]headerVal
		for i, k := range c.hkeys {
			vals[i].v, vals[i].ok = headers[k]
		}
		for _, m := range c.hdrs {
			if m.matchVals(vals[:len(c.hkeys)]) {
				hits = append(hits, m.d)
			}
		}
	}
	return hits
}

// Snapshot is an immutable routing table of one vhost: every exchange with
// its bindings as source, compiled for matching. Any number of goroutines
// may use a Snapshot at once without locks; a Topology produces a new one
// after each change.
type Snapshot struct {
	ex      exMap
	version uint64
}

// exShards is the number of shards of a snapshot's exchange map.
const exShards = 64

// exMap is the exchanges of a snapshot, sharded by name so that a new
// snapshot copies only the shards that changed.
type exMap [exShards]map[string]*compiled

func (m *exMap) get(name string) *compiled { return m[shardOf(name)][name] }

// directMap is a direct exchange's destinations by routing key, sharded
// like exMap so that an update copies only the shards it changes.
type directMap [exShards]map[string]*dests

func (m *directMap) get(key string) *dests {
	if m == nil {
		return nil
	}
	return m[shardOf(key)][key]
}

// set stores d under key, in a shard the caller owns.
func (m *directMap) set(key string, d *dests) {
	i := shardOf(key)
	if m[i] == nil {
		m[i] = make(map[string]*dests)
	}
	m[i][key] = d
}

// shardSeed seeds the shard hash (the runtime's string hash, the fastest
// there is) for the life of the process.
var shardSeed = maphash.MakeSeed()

// shardOf hashes a name to its shard.
func shardOf(name string) int { return int(maphash.String(shardSeed, name) % exShards) }

// Version increases by one with every snapshot a Topology publishes; the
// broker may use it to invalidate caches derived from a snapshot.
func (s *Snapshot) Version() uint64 { return s.version }

// Len returns the number of exchanges, the default exchange included.
func (s *Snapshot) Len() int {
	n := 0
	for _, m := range s.ex {
		n += len(m)
	}
	return n
}

// Exchange returns the definition of the named exchange. The broker uses it
// on publish: a missing exchange is 404 NOT_FOUND, an Internal one 403
// ACCESS_REFUSED. Treat the returned Args as read-only.
func (s *Snapshot) Exchange(name string) (Exchange, bool) {
	c := s.ex.get(name)
	if c == nil {
		return Exchange{}, false
	}
	return c.def, true
}

// Route appends to dst the names of the queues a message published to
// exchange with routingKey and headers reaches, and reports whether the
// exchange exists. When it does not, dst is returned unchanged.
//
// The appended names are unique and sorted (dst's existing elements are
// left alone). Route follows exchange-to-exchange bindings and, when an
// exchange's own bindings match nothing (no queue and no exchange), its
// alternate exchange, as RabbitMQ's rabbit_exchange:route does; each
// exchange is visited at most once per message, so cycles terminate.
// Missing destination or alternate exchanges are skipped.
//
// The default exchange "" is not routed here: Route appends routingKey
// itself and returns true, and the broker checks that a queue of that name
// exists (an unknown queue means the message is unroutable).
//
// Route does not allocate when dst has room for the result, for direct,
// fanout and topic exchanges and chains of up to 16 exchanges; headers
// matching does not allocate either unless an argument is a nested table
// of a defined (non-alias) map type.
func (s *Snapshot) Route(exchange, routingKey string, headers map[string]any, dst []string) ([]string, bool) {
	if exchange == "" {
		return append(dst, routingKey), true
	}
	x := s.ex.get(exchange)
	if x == nil {
		return dst, false
	}
	start := len(dst)
	dst, groups := s.route(x, routingKey, headers, dst)
	if groups > 1 {
		dst = sortUnique(dst, start)
	}
	return dst, true
}

// RouteKeys is Route for a message with several routing keys: the
// routing key plus the CC and BCC headers of sender-selected
// distribution. The result is the union, unique and sorted.
func (s *Snapshot) RouteKeys(exchange string, routingKeys []string, headers map[string]any, dst []string) ([]string, bool) {
	start := len(dst)
	if exchange == "" {
		dst = append(dst, routingKeys...)
		return sortUnique(dst, start), true
	}
	x := s.ex.get(exchange)
	if x == nil {
		return dst, false
	}
	total := 0
	for _, k := range routingKeys {
		var g int
		dst, g = s.route(x, k, headers, dst)
		total += g
	}
	if total > 1 {
		dst = sortUnique(dst, start)
	}
	return dst, true
}

// route walks the exchange graph from x and appends matched queues; groups
// counts the destination sets appended (more than one may overlap).
func (s *Snapshot) route(x *compiled, key string, headers map[string]any, dst []string) ([]string, int) {
	var hitBuf [16]*dests
	hits := x.match(key, headers, hitBuf[:0])
	// Fast path: no exchange-to-exchange hop and no alternate exchange.
	if len(hits) == 1 && len(hits[0].exchanges) == 0 {
		return append(dst, hits[0].queues...), 1
	}
	if len(hits) == 0 && x.alt == "" {
		return dst, 0
	}

	var seenBuf, stackBuf [16]*compiled
	seen := append(seenBuf[:0], x)
	stack := stackBuf[:0]
	groups := 0
	cur := x
	for {
		if len(hits) == 0 {
			if nx := s.ex.get(cur.alt); cur.alt != "" && nx != nil && !slices.Contains(seen, nx) {
				seen = append(seen, nx)
				stack = append(stack, nx)
			}
		}
		for _, d := range hits {
			if len(d.queues) > 0 {
				dst = append(dst, d.queues...)
				groups++
			}
			for _, name := range d.exchanges {
				if nx := s.ex.get(name); nx != nil && !slices.Contains(seen, nx) {
					seen = append(seen, nx)
					stack = append(stack, nx)
				}
			}
		}
		if len(stack) == 0 {
			return dst, groups
		}
		cur = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		hits = cur.match(key, headers, hits[:0])
	}
}

// sortUnique sorts dst[start:] and drops duplicates in it.
func sortUnique(dst []string, start int) []string {
	tail := dst[start:]
	slices.Sort(tail)
	return dst[:start+len(slices.Compact(tail))]
}

// compareBindings orders bindings for listings: source, destination kind,
// destination, key, then arguments.
func compareBindings(a, b *Binding) int {
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	if a.DestKind != b.DestKind {
		return int(a.DestKind) - int(b.DestKind)
	}
	if c := strings.Compare(a.Destination, b.Destination); c != 0 {
		return c
	}
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return strings.Compare(canonArgs(a.Args), canonArgs(b.Args))
}
