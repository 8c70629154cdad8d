package router

import (
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
)

// Predeclared lists the exchanges every vhost starts with, as in RabbitMQ:
// the default exchange "" (direct) and the amq.* exchanges, all durable.
var Predeclared = []Exchange{
	{Name: "", Kind: Direct, Durable: true},
	{Name: "amq.direct", Kind: Direct, Durable: true},
	{Name: "amq.fanout", Kind: Fanout, Durable: true},
	{Name: "amq.headers", Kind: Headers, Durable: true},
	{Name: "amq.match", Kind: Headers, Durable: true},
	{Name: "amq.topic", Kind: Topic, Durable: true},
}

// xstate is an exchange in the mutable topology.
type xstate struct {
	def      Exchange
	bindings map[bkey]*Binding // as source
	// byKey indexes bindings by routing key (for topic, the pattern with
	// runs of "#" collapsed), so a change recompiles only its key.
	byKey map[string]map[*Binding]struct{}
	// compiled is the last compiled form, shared with published snapshots;
	// stale says it misses changes, changedKeys which keys they touched.
	compiled    *compiled
	stale       bool
	changedKeys map[string]struct{}
	use         *usage
}

// usage counts the bindings that make publishes do more work: bindings from
// headers exchanges (publishes must decode headers) and bindings to
// exchanges (routing may reach a headers exchange indirectly). It is kept
// up to date with every change, so asking costs nothing.
type usage struct {
	headers, toExchanges int
}

func (u *usage) count(src Kind, b *Binding, delta int) {
	if src == Headers {
		u.headers += delta
	}
	if b.DestKind == DestExchange {
		u.toExchanges += delta
	}
}

func newXState(def Exchange, use *usage) *xstate {
	return &xstate{
		use:         use,
		def:         def,
		bindings:    make(map[bkey]*Binding),
		byKey:       make(map[string]map[*Binding]struct{}),
		changedKeys: make(map[string]struct{}),
		stale:       true,
	}
}

func (x *xstate) indexKey(b *Binding) string {
	if x.def.Kind == Topic {
		return normTopic(b.Key)
	}
	return b.Key
}

func (x *xstate) add(id bkey, b *Binding) {
	x.bindings[id] = b
	x.use.count(x.def.Kind, b, 1)
	k := x.indexKey(b)
	set := x.byKey[k]
	if set == nil {
		set = make(map[*Binding]struct{})
		x.byKey[k] = set
	}
	set[b] = struct{}{}
	x.changedKeys[k] = struct{}{}
}

func (x *xstate) remove(id bkey) {
	b := x.bindings[id]
	if b == nil {
		return
	}
	delete(x.bindings, id)
	x.use.count(x.def.Kind, b, -1)
	k := x.indexKey(b)
	if set := x.byKey[k]; set != nil {
		delete(set, b)
		if len(set) == 0 {
			delete(x.byKey, k)
		}
	}
	x.changedKeys[k] = struct{}{}
}

// recompile brings compiled up to date: direct and topic exchanges update
// only the changed keys (copying the map or the trie path to them), the
// others compile afresh.
func (x *xstate) recompile() {
	switch {
	case x.compiled == nil || len(x.changedKeys) > len(x.byKey)/2:
		x.compiled = compile(x.def, x.bindings)
	case x.def.Kind == Direct || x.def.Kind == Topic:
		x.compiled = x.compiled.update(x.changedKeys, x.byKey)
	default:
		x.compiled = compile(x.def, x.bindings)
	}
	x.stale = false
	clear(x.changedKeys)
}

// Topology is the mutable routing table of one vhost: exchanges and
// bindings. It is not safe for concurrent use; the broker guards it with
// its vhost lock. After changing it, the broker calls Snapshot (still under
// the lock) before answering the client, and publishers route on the
// returned snapshot or on Current without any lock.
//
// Queues are known only as binding destinations: the broker owns queue
// existence, calls RemoveQueue when it deletes a queue, and checks that a
// queue exists before binding it.
type Topology struct {
	exchanges map[string]*xstate
	// bindings by destination: queue name -> set, exchange name -> set
	toQueue    map[string]map[*Binding]struct{}
	toExchange map[string]map[*Binding]struct{}

	changed      bool
	changedNames map[string]struct{} // exchanges to bring into the next snapshot
	version      uint64
	cur          atomic.Pointer[Snapshot]
	use          usage
}

// HeadersBound reports whether some headers exchange has bindings: only
// then must a publish decode its headers to route.
func (t *Topology) HeadersBound() bool { return t.use.headers > 0 }

// ExchangeBound reports whether some binding leads to an exchange.
func (t *Topology) ExchangeBound() bool { return t.use.toExchanges > 0 }

// NewTopology returns a topology holding the Predeclared exchanges, with
// its first snapshot published.
func NewTopology() *Topology {
	t := &Topology{
		exchanges:    make(map[string]*xstate),
		toQueue:      make(map[string]map[*Binding]struct{}),
		toExchange:   make(map[string]map[*Binding]struct{}),
		changedNames: make(map[string]struct{}),
	}
	for _, x := range Predeclared {
		t.exchanges[x.Name] = newXState(x, &t.use)
		t.touch(x.Name)
	}
	t.Snapshot()
	return t
}

// Current returns the last published snapshot. It is safe to call from any
// goroutine at any time, concurrently with changes to the topology.
func (t *Topology) Current() *Snapshot { return t.cur.Load() }

// Snapshot compiles the exchanges changed since the last call, publishes a
// new snapshot (see Current) and returns it. Without changes it returns the
// current snapshot. The new snapshot shares with the last one every shard
// of its exchange map that holds no changed exchange, so the cost is the
// size of the changed shards (exchanges/64 each) plus O(bindings) of each
// changed exchange, whatever the number of exchanges.
func (t *Topology) Snapshot() *Snapshot {
	if !t.changed {
		return t.cur.Load()
	}
	t.version++
	s := &Snapshot{version: t.version}
	if prev := t.cur.Load(); prev != nil {
		s.ex = prev.ex
	}
	var copied [exShards]bool
	for name := range t.changedNames {
		i := shardOf(name)
		if !copied[i] {
			copied[i] = true
			old := s.ex[i]
			s.ex[i] = make(map[string]*compiled, len(old)+1)
			for k, v := range old {
				s.ex[i][k] = v
			}
		}
		x := t.exchanges[name]
		if x == nil {
			delete(s.ex[i], name)
			continue
		}
		if x.stale {
			x.recompile()
		}
		s.ex[i][name] = x.compiled
	}
	clear(t.changedNames)
	t.changed = false
	t.cur.Store(s)
	return s
}

// dirty marks x to be recompiled into the next snapshot.
func (t *Topology) dirty(x *xstate) {
	x.stale = true
	t.touch(x.def.Name)
}

// touch records that the named exchange was created, changed or deleted.
func (t *Topology) touch(name string) {
	t.changedNames[name] = struct{}{}
	t.changed = true
}

// Exchange returns the definition of the named exchange (Args read-only).
func (t *Topology) Exchange(name string) (Exchange, bool) {
	x := t.exchanges[name]
	if x == nil {
		return Exchange{}, false
	}
	return x.def, true
}

// Exchanges returns every exchange definition sorted by name, the default
// exchange first.
func (t *Topology) Exchanges() []Exchange {
	out := make([]Exchange, 0, len(t.exchanges))
	for _, x := range t.exchanges {
		out = append(out, x.def)
	}
	slices.SortFunc(out, func(a, b Exchange) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// DeclareExchange creates the exchange, or checks that an existing one of
// that name is equivalent (type, durable, auto-delete, internal and the
// alternate-exchange argument, as RabbitMQ compares them; other arguments
// may differ and the existing ones are kept). It reports whether the
// exchange was created.
//
// Errors: ErrDefaultExchange for "", ErrUnknownKind for an invalid Kind,
// ErrInvalidArg when alternate-exchange is not a string, and an
// *InequivalentError (errors.Is ErrInequivalent) for a mismatching
// redeclare. The reserved "amq." prefix is the broker's to police.
func (t *Topology) DeclareExchange(x Exchange) (created bool, err error) {
	if x.Name == "" {
		return false, ErrDefaultExchange
	}
	if !x.Kind.valid() {
		return false, fmt.Errorf("%w %s for exchange %q", ErrUnknownKind, x.Kind, x.Name)
	}
	if v, ok := x.Args[AlternateExchangeArg]; ok {
		if _, isStr := v.(string); !isStr {
			return false, fmt.Errorf("%w '%s' for exchange %q: type %T, expected longstr",
				ErrInvalidArg, AlternateExchangeArg, x.Name, v)
		}
	}
	if old := t.exchanges[x.Name]; old != nil {
		return false, equivalent(&old.def, &x)
	}
	x.Args = copyTable(x.Args)
	t.exchanges[x.Name] = newXState(x, &t.use)
	t.touch(x.Name)
	return true, nil
}

func equivalent(cur, req *Exchange) error {
	ineq := func(field, received, current string) error {
		return &InequivalentError{Exchange: cur.Name, Field: field, Received: received, Current: current}
	}
	switch {
	case cur.Kind != req.Kind:
		return ineq("type", req.Kind.String(), cur.Kind.String())
	case cur.Durable != req.Durable:
		return ineq("durable", strconv.FormatBool(req.Durable), strconv.FormatBool(cur.Durable))
	case cur.AutoDelete != req.AutoDelete:
		return ineq("auto_delete", strconv.FormatBool(req.AutoDelete), strconv.FormatBool(cur.AutoDelete))
	case cur.Internal != req.Internal:
		return ineq("internal", strconv.FormatBool(req.Internal), strconv.FormatBool(cur.Internal))
	}
	cv, cok := cur.Args[AlternateExchangeArg]
	rv, rok := req.Args[AlternateExchangeArg]
	if cok != rok || canonArgs(map[string]any{"": cv}) != canonArgs(map[string]any{"": rv}) {
		show := func(v any, ok bool) string {
			if !ok {
				return "none"
			}
			return fmt.Sprint(v)
		}
		return ineq(AlternateExchangeArg, show(rv, rok), show(cv, cok))
	}
	return nil
}

// DeleteExchange deletes the exchange and every binding where it is the
// source or the destination. With ifUnused it fails with ErrInUse while any
// binding has the exchange as source (bindings to it do not count, as in
// RabbitMQ). It returns the removed bindings and the auto-delete exchanges
// that lost their last binding as source as a consequence (deleted too,
// recursively); the broker persists both. Errors: ErrDefaultExchange,
// ErrNotFound (RabbitMQ answers delete of a missing exchange with
// delete-ok), ErrInUse.
func (t *Topology) DeleteExchange(name string, ifUnused bool) (removed []Binding, autoDeleted []string, err error) {
	if name == "" {
		return nil, nil, ErrDefaultExchange
	}
	x := t.exchanges[name]
	if x == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if ifUnused && len(x.bindings) > 0 {
		return nil, nil, fmt.Errorf("%w: exchange %q has %d bindings", ErrInUse, name, len(x.bindings))
	}
	var sources []string
	removed, sources = t.deleteExchange(x, removed, sources)
	removed, autoDeleted = t.autoDelete(sources, removed, nil)
	return removed, autoDeleted, nil
}

// deleteExchange removes x and its bindings; it appends the removed
// bindings and the sources that lost a binding to x.
func (t *Topology) deleteExchange(x *xstate, removed []Binding, sources []string) ([]Binding, []string) {
	for _, b := range sortedBindings(x.bindings) {
		t.unlink(b)
		t.use.count(x.def.Kind, b, -1)
		removed = append(removed, *b)
	}
	for _, b := range sortedSet(t.toExchange[x.def.Name]) {
		if b.Source == x.def.Name {
			continue // self-binding, already removed
		}
		src := t.exchanges[b.Source]
		src.remove(b.id())
		t.unlink(b)
		t.dirty(src)
		removed = append(removed, *b)
		sources = append(sources, b.Source)
	}
	delete(t.exchanges, x.def.Name)
	t.touch(x.def.Name)
	return removed, sources
}

// autoDelete deletes each auto-delete exchange in candidates that has no
// bindings as source left, cascading.
func (t *Topology) autoDelete(candidates []string, removed []Binding, deleted []string) ([]Binding, []string) {
	for len(candidates) > 0 {
		name := candidates[0]
		candidates = candidates[1:]
		x := t.exchanges[name]
		if x == nil || !x.def.AutoDelete || len(x.bindings) > 0 {
			continue
		}
		removed, candidates = t.deleteExchange(x, removed, candidates)
		deleted = append(deleted, name)
	}
	return removed, deleted
}

// unlink removes b from the destination indexes.
func (t *Topology) unlink(b *Binding) {
	idx := t.toQueue
	if b.DestKind == DestExchange {
		idx = t.toExchange
	}
	set := idx[b.Destination]
	delete(set, b)
	if len(set) == 0 {
		delete(idx, b.Destination)
	}
}

func (t *Topology) check(b *Binding) (*xstate, error) {
	if b.Source == "" || (b.DestKind == DestExchange && b.Destination == "") {
		return nil, fmt.Errorf("%w (binding from %q to %s %q)", ErrDefaultExchange, b.Source, b.DestKind, b.Destination)
	}
	if b.DestKind != DestQueue && b.DestKind != DestExchange {
		return nil, fmt.Errorf("%w: destination kind %s", ErrInvalidBinding, b.DestKind)
	}
	src := t.exchanges[b.Source]
	if src == nil {
		return nil, fmt.Errorf("%w: source %q", ErrNotFound, b.Source)
	}
	if b.DestKind == DestExchange && t.exchanges[b.Destination] == nil {
		return nil, fmt.Errorf("%w: destination %q", ErrNotFound, b.Destination)
	}
	return src, nil
}

// Bind adds a binding and reports whether it is new (binding twice is a
// no-op). The destination queue's existence is the broker's to check.
// Errors: ErrDefaultExchange (bind from or to ""), ErrNotFound (source or
// destination exchange), ErrInvalidBinding (bad x-match on a headers
// exchange).
func (t *Topology) Bind(b Binding) (added bool, err error) {
	src, err := t.check(&b)
	if err != nil {
		return false, err
	}
	if src.def.Kind == Headers {
		if _, err := parseHeaderArgs(b.Args); err != nil {
			return false, fmt.Errorf("%w (binding from %q to %s %q)", err, b.Source, b.DestKind, b.Destination)
		}
	}
	id := b.id()
	if _, ok := src.bindings[id]; ok {
		return false, nil
	}
	b.Args = copyTable(b.Args)
	nb := &b
	src.add(id, nb)
	idx := t.toQueue
	if b.DestKind == DestExchange {
		idx = t.toExchange
	}
	set := idx[b.Destination]
	if set == nil {
		set = make(map[*Binding]struct{})
		idx[b.Destination] = set
	}
	set[nb] = struct{}{}
	t.dirty(src)
	return true, nil
}

// Unbind removes a binding. A missing binding is not an error (RabbitMQ
// answers unbind-ok); a missing source or destination exchange is
// (ErrNotFound). If the source is auto-delete and this was its last
// binding, it is deleted with its bindings to it and the cascade returned
// in removed (the bindings deleted besides b) and autoDeleted.
func (t *Topology) Unbind(b Binding) (found bool, removed []Binding, autoDeleted []string, err error) {
	src, err := t.check(&b)
	if err != nil {
		return false, nil, nil, err
	}
	id := b.id()
	old := src.bindings[id]
	if old == nil {
		return false, nil, nil, nil
	}
	src.remove(id)
	t.unlink(old)
	t.dirty(src)
	removed, autoDeleted = t.autoDelete([]string{b.Source}, nil, nil)
	return true, removed, autoDeleted, nil
}

// RemoveQueue removes every binding to the queue, for queue deletion. It
// returns them and the auto-delete exchanges deleted because they lost
// their last binding (with the bindings that removed in turn).
func (t *Topology) RemoveQueue(queue string) (removed []Binding, autoDeleted []string) {
	var sources []string
	for _, b := range sortedSet(t.toQueue[queue]) {
		src := t.exchanges[b.Source]
		src.remove(b.id())
		t.dirty(src)
		removed = append(removed, *b)
		sources = append(sources, b.Source)
	}
	delete(t.toQueue, queue)
	return t.autoDelete(sources, removed, nil)
}

// BindingsOf returns the bindings whose destination is the queue, sorted.
func (t *Topology) BindingsOf(queue string) []Binding {
	return copyBindings(sortedSet(t.toQueue[queue]))
}

// BindingsFrom returns the bindings whose source is the exchange, sorted.
// The exchange is "unused" (exchange.delete if-unused) when it is empty.
func (t *Topology) BindingsFrom(exchange string) []Binding {
	x := t.exchanges[exchange]
	if x == nil {
		return nil
	}
	return copyBindings(sortedBindings(x.bindings))
}

// BindingsTo returns the exchange-to-exchange bindings whose destination is
// the exchange, sorted.
func (t *Topology) BindingsTo(exchange string) []Binding {
	return copyBindings(sortedSet(t.toExchange[exchange]))
}

// Bindings returns every binding, sorted by source, destination kind,
// destination, key and arguments.
func (t *Topology) Bindings() []Binding {
	var all []*Binding
	for _, x := range t.exchanges {
		for _, b := range x.bindings {
			all = append(all, b)
		}
	}
	slices.SortFunc(all, compareBindings)
	return copyBindings(all)
}

func sortedBindings(m map[bkey]*Binding) []*Binding {
	out := make([]*Binding, 0, len(m))
	for _, b := range m {
		out = append(out, b)
	}
	slices.SortFunc(out, compareBindings)
	return out
}

func sortedSet(m map[*Binding]struct{}) []*Binding {
	out := make([]*Binding, 0, len(m))
	for b := range m {
		out = append(out, b)
	}
	slices.SortFunc(out, compareBindings)
	return out
}

func copyBindings(bs []*Binding) []Binding {
	if len(bs) == 0 {
		return nil
	}
	out := make([]Binding, len(bs))
	for i, b := range bs {
		out[i] = *b
	}
	return out
}
