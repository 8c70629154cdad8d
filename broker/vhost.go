package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/router"
)

// vhost is a virtual host: its routing topology and queues. Definitions
// change under mu; publishes read the routing snapshot and the queue map
// without locks.
type vhost struct {
	s    *Server
	name string

	mu     sync.Mutex // guards topo, queues (writes), and definition persistence
	topo   *router.Topology
	queues map[string]*queue
	qmap   queueMap // the publishers' view of queues
	// headersInUse and e2eInUse say when a publish must decode headers.
	headersInUse atomic.Bool
	e2eInUse     atomic.Bool
}

func newVHost(s *Server, name string) *vhost {
	return &vhost{s: s, name: name, topo: router.NewTopology(), queues: make(map[string]*queue)}
}

// routes returns the current routing snapshot.
func (vh *vhost) routes() *router.Snapshot { return vh.topo.Current() }

// exchange returns the named exchange from the current snapshot. It
// returns by value: a pointer would put a copy on the heap per publish.
func (vh *vhost) exchange(name string) (router.Exchange, bool) {
	return vh.routes().Exchange(name)
}

// queueByName finds a queue without locking.
func (vh *vhost) queueByName(name string) *queue {
	return vh.qmap.get(name)
}

// route resolves a message's destination queues. Headers are decoded from
// the raw properties only when a headers exchange with bindings can be
// reached: directly, or through exchange-to-exchange bindings.
func (vh *vhost) route(snap *router.Snapshot, exchange, key string, props []byte, dst []string) []string {
	var headers map[string]any
	if vh.headersInUse.Load() {
		x, ok := snap.Exchange(exchange)
		if ok && (x.Kind == router.Headers || vh.e2eInUse.Load()) {
			if p, err := amqpwire.DecodeProperties(props); err == nil {
				headers = p.Headers
			}
		}
	}
	dst, _ = snap.Route(exchange, key, headers, dst)
	return dst
}

// refreshLocked publishes a new routing snapshot and recomputes when
// publishes must decode headers.
func (vh *vhost) refreshLocked() {
	vh.headersInUse.Store(vh.topo.HeadersBound())
	vh.e2eInUse.Store(vh.topo.ExchangeBound())
	vh.topo.Snapshot()
}

// ---- exchanges ----

func (vh *vhost) declareExchange(m *amqpwire.ExchangeDeclare) error {
	kind, err := router.ParseKind(m.Type)
	if err != nil {
		return amqpErr(amqpwire.CommandInvalid, m, "invalid exchange type '%s'", m.Type)
	}
	x := router.Exchange{Name: m.Exchange, Kind: kind, Durable: m.Durable, AutoDelete: m.AutoDelete,
		Internal: m.Internal, Args: m.Arguments}
	vh.mu.Lock()
	defer vh.mu.Unlock()
	created, err := vh.topo.DeclareExchange(x)
	if err != nil {
		var ie *router.InequivalentError
		if errors.As(err, &ie) {
			return amqpErr(amqpwire.PreconditionFailed, m, "inequivalent arg '%s' for exchange '%s' in vhost '%s': received '%s' but current is '%s'",
				ie.Field, m.Exchange, vh.name, ie.Received, ie.Current)
		}
		if errors.Is(err, router.ErrInvalidArg) {
			return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg for exchange '%s' in vhost '%s': %v", m.Exchange, vh.name, err)
		}
		return amqpErr(amqpwire.CommandInvalid, m, "%v", err)
	}
	if created && x.Durable {
		if err := vh.s.store.Index().PutExchange(index.Exchange{VHost: vh.name, Name: x.Name, Type: m.Type,
			Durable: true, AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: encodeArgs(x.Args)}); err != nil {
			vh.topo.DeleteExchange(x.Name, false)
			vh.refreshLocked()
			return amqpErr(amqpwire.InternalError, m, "persist exchange: %v", err)
		}
	}
	vh.refreshLocked()
	return nil
}

func (vh *vhost) deleteExchange(m amqpwire.Method, name string, ifUnused bool) error {
	vh.mu.Lock()
	defer vh.mu.Unlock()
	if _, ok := vh.topo.Exchange(name); !ok {
		return nil // delete of a missing exchange is ok, as in RabbitMQ
	}
	if ifUnused && len(vh.topo.BindingsFrom(name)) > 0 {
		return amqpErr(amqpwire.PreconditionFailed, m, "exchange '%s' in vhost '%s' in use", name, vh.name)
	}
	// The definitions go from the index first: if that fails, nothing
	// changed and the client is told.
	b := vh.s.store.Index().NewDefsBatch()
	b.DeleteExchange(vh.name, name)
	for _, bd := range vh.topo.BindingsFrom(name) {
		b.DeleteBinding(indexBinding(vh.name, bd))
	}
	for _, bd := range vh.topo.BindingsTo(name) {
		b.DeleteBinding(indexBinding(vh.name, bd))
	}
	if err := b.Commit(); err != nil {
		return vh.storageErr(m, "delete exchange", name, err)
	}
	_, autoDeleted, err := vh.topo.DeleteExchange(name, ifUnused)
	if err != nil {
		if errors.Is(err, router.ErrNotFound) {
			return nil
		}
		return amqpErr(amqpwire.InternalError, m, "%v", err)
	}
	vh.forgetLocked(nil, autoDeleted)
	vh.refreshLocked()
	return nil
}

// storageErr logs an index write that failed and returns the 541
// INTERNAL_ERROR the client gets for it.
func (vh *vhost) storageErr(m amqpwire.Method, op, name string, err error) error {
	vh.s.log.Error().Err(err).Str("vhost", vh.name).Str("name", name).Str("op", op).Msg("definition not persisted")
	return amqpErr(amqpwire.InternalError, m, "%s '%s' in vhost '%s': %v", op, name, vh.name, err)
}

// forgetLocked removes from the index the bindings and auto-deleted
// exchanges a topology change took away after the change itself was
// persisted. A failure is logged: the definitions come back at restart.
func (vh *vhost) forgetLocked(removed []router.Binding, autoDeleted []string) {
	if len(removed) == 0 && len(autoDeleted) == 0 {
		return
	}
	b := vh.s.store.Index().NewDefsBatch()
	for _, bd := range removed {
		b.DeleteBinding(indexBinding(vh.name, bd))
	}
	for _, name := range autoDeleted {
		b.DeleteExchange(vh.name, name)
	}
	if err := b.Commit(); err != nil {
		vh.s.log.Error().Err(err).Str("vhost", vh.name).Int("bindings", len(removed)).Strs("exchanges", autoDeleted).
			Msg("removed definitions not persisted; they return at restart")
	}
}

// ---- bindings ----

func (vh *vhost) bind(m amqpwire.Method, src, dst string, toExchange bool, key string, args amqpwire.Table) error {
	vh.mu.Lock()
	defer vh.mu.Unlock()
	srcX, ok := vh.topo.Exchange(src)
	if !ok {
		return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", src, vh.name)
	}
	kind := router.DestQueue
	durableDst := false
	if toExchange {
		kind = router.DestExchange
		dx, ok := vh.topo.Exchange(dst)
		if !ok {
			return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", dst, vh.name)
		}
		durableDst = dx.Durable
	} else {
		q := vh.queues[dst]
		if q == nil {
			return amqpErr(amqpwire.NotFound, m, "no queue '%s' in vhost '%s'", dst, vh.name)
		}
		durableDst = q.durable && !q.exclusive
	}
	b := router.Binding{Source: src, Destination: dst, DestKind: kind, Key: key, Args: args}
	added, err := vh.topo.Bind(b)
	if err != nil {
		if errors.Is(err, router.ErrInvalidBinding) {
			return amqpErr(amqpwire.PreconditionFailed, m, "%v", err)
		}
		if errors.Is(err, router.ErrDefaultExchange) {
			return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
		}
		return amqpErr(amqpwire.InternalError, m, "%v", err)
	}
	if added && srcX.Durable && durableDst {
		if err := vh.s.store.Index().PutBinding(indexBinding(vh.name, b)); err != nil {
			vh.topo.Unbind(b)
			vh.refreshLocked()
			return amqpErr(amqpwire.InternalError, m, "persist binding: %v", err)
		}
	}
	vh.refreshLocked()
	return nil
}

func (vh *vhost) unbind(m amqpwire.Method, src, dst string, toExchange bool, key string, args amqpwire.Table) error {
	vh.mu.Lock()
	defer vh.mu.Unlock()
	if _, ok := vh.topo.Exchange(src); !ok {
		return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", src, vh.name)
	}
	kind := router.DestQueue
	if toExchange {
		kind = router.DestExchange
		if _, ok := vh.topo.Exchange(dst); !ok {
			return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", dst, vh.name)
		}
	}
	b := router.Binding{Source: src, Destination: dst, DestKind: kind, Key: key, Args: args}
	found, _, autoDeleted, err := vh.topo.Unbind(b)
	if err != nil {
		if errors.Is(err, router.ErrDefaultExchange) {
			return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
		}
		return amqpErr(amqpwire.InternalError, m, "%v", err)
	}
	if found {
		if err := vh.s.store.Index().DeleteBinding(indexBinding(vh.name, b)); err != nil && !errors.Is(err, index.ErrNotFound) {
			vh.topo.Bind(b) // still persisted: keep it routing
			vh.refreshLocked()
			return vh.storageErr(m, "unbind", src+" -> "+dst, err)
		}
	}
	vh.forgetLocked(nil, autoDeleted)
	vh.refreshLocked()
	return nil
}

func indexBinding(vhost string, b router.Binding) index.Binding {
	k := index.DestQueue
	if b.DestKind == router.DestExchange {
		k = index.DestExchange
	}
	return index.Binding{VHost: vhost, Source: b.Source, Destination: b.Destination, DestinationKind: k,
		RoutingKey: b.Key, Arguments: encodeArgs(b.Args)}
}

func encodeArgs(t map[string]any) []byte {
	if len(t) == 0 {
		return nil
	}
	return amqpwire.AppendTable(nil, amqpwire.Table(t))
}

func decodeArgs(b []byte) amqpwire.Table {
	if len(b) == 0 {
		return nil
	}
	r := amqpwire.NewReader(b)
	t := r.Table()
	if r.Err() != nil {
		return nil
	}
	return t
}

// ---- queues ----

// queueArgsChecked are the queue arguments whose equivalence RabbitMQ checks
// on redeclare.
var queueArgsChecked = []string{"x-expires", "x-message-ttl", "x-max-length", "x-max-length-bytes",
	"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-type",
	"x-overflow", "x-queue-mode", "x-single-active-consumer"}

func (vh *vhost) declareQueue(c *conn, m *amqpwire.QueueDeclare, name string) (*queue, error) {
	if err := validateQueueArgs(m, name, vh.name); err != nil {
		return nil, err
	}
	vh.mu.Lock()
	defer vh.mu.Unlock()
	if q := vh.queues[name]; q != nil {
		if err := q.checkOwner(c, m); err != nil {
			return nil, err
		}
		ineq := func(field string, recv, cur any) error {
			return amqpErr(amqpwire.PreconditionFailed, m, "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'",
				field, name, vh.name, recv, cur)
		}
		switch {
		case q.durable != m.Durable:
			return nil, ineq("durable", m.Durable, q.durable)
		case q.exclusive != m.Exclusive:
			return nil, ineq("exclusive", m.Exclusive, q.exclusive)
		case q.autoDelete != m.AutoDelete:
			return nil, ineq("auto_delete", m.AutoDelete, q.autoDelete)
		}
		for _, a := range queueArgsChecked {
			rv, rok := m.Arguments[a]
			cv, cok := q.args[a]
			if a == "x-queue-type" && (!rok || !cok) {
				continue // a missing type matches the default, classic
			}
			if rok != cok || !argEqual(rv, cv) {
				return nil, amqpErr(amqpwire.PreconditionFailed, m, "inequivalent arg '%s' for queue '%s' in vhost '%s': received %s but current is %s",
					a, name, vh.name, describeArg(rv, rok), describeArg(cv, cok))
			}
		}
		q.mu.Lock()
		q.touchLocked()
		q.mu.Unlock()
		return q, nil
	}
	if max := vh.s.cfg.MaxQueues; vh.s.queueCount.Load() >= int64(max) {
		return nil, amqpErr(amqpwire.PreconditionFailed, m, "cannot declare queue '%s' in vhost '%s': queue limit (%d) is reached", name, vh.name, max)
	}
	q := &queue{vh: vh, name: name, durable: m.Durable, exclusive: m.Exclusive, autoDelete: m.AutoDelete, args: m.Arguments}
	q.queueLimits()
	if m.Exclusive {
		q.owner = c
	}
	q.id = newQueueID()
	persist := m.Durable && !m.Exclusive
	sq, err := vh.s.store.Queue(q.id, persist)
	if err != nil {
		return nil, amqpErr(amqpwire.InternalError, m, "open queue store: %v", err)
	}
	q.sq = sq
	if persist {
		if err := vh.s.store.Index().PutQueue(index.Queue{VHost: vh.name, Name: name, ID: q.id, Durable: true,
			AutoDelete: m.AutoDelete, Arguments: encodeArgs(m.Arguments)}); err != nil {
			vh.s.store.DeleteQueue(q.id)
			return nil, amqpErr(amqpwire.InternalError, m, "persist queue: %v", err)
		}
	}
	vh.queues[name] = q
	vh.s.queueCount.Add(1)
	vh.qmap.setLocked(name, q)
	q.mu.Lock()
	q.touchLocked()
	q.mu.Unlock()
	if m.Exclusive {
		c.ownedMu.Lock()
		if c.owned != nil {
			c.owned[q] = struct{}{}
		}
		c.ownedMu.Unlock()
	}
	return q, nil
}

func validateQueueArgs(m *amqpwire.QueueDeclare, name, vhost string) error {
	bad := func(arg string, v any) error {
		return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg '%s' for queue '%s' in vhost '%s': %v", arg, name, vhost, v)
	}
	for _, a := range []string{"x-expires", "x-message-ttl", "x-max-length", "x-max-length-bytes", "x-max-priority"} {
		if v, ok := m.Arguments[a]; ok {
			n, isInt := intArg(v)
			if !isInt || n < 0 || (a == "x-expires" && n == 0) {
				return bad(a, v)
			}
		}
	}
	for _, a := range []string{"x-max-length-bytes", "x-max-priority"} {
		if _, ok := m.Arguments[a]; ok {
			return amqpErr(amqpwire.NotImplemented, m, "queue argument '%s' is not supported by this broker", a)
		}
	}
	if v, ok := m.Arguments["x-overflow"]; ok {
		if s, _ := stringOf(v); s != "drop-head" {
			return amqpErr(amqpwire.NotImplemented, m, "x-overflow '%v' is not supported by this broker; only 'drop-head'", v)
		}
	}
	if v, ok := m.Arguments["x-single-active-consumer"]; ok {
		if _, isBool := v.(bool); !isBool {
			return bad("x-single-active-consumer", v)
		}
	}
	if v, ok := m.Arguments["x-queue-type"]; ok {
		s, _ := stringOf(v)
		switch s {
		case "classic":
		case "quorum", "stream":
			return amqpErr(amqpwire.NotImplemented, m, "queue type '%s' is not supported by this broker; use 'classic'", s)
		default:
			return bad("x-queue-type", v)
		}
	}
	return nil
}

func argEqual(a, b any) bool {
	if x, ok := intArg(a); ok {
		y, ok := intArg(b)
		return ok && x == y
	}
	if x, ok := stringOf(a); ok {
		y, ok := stringOf(b)
		return ok && x == y
	}
	return reflect.DeepEqual(a, b)
}

func describeArg(v any, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprintf("the value '%v' of type '%s'", v, argTypeName(v))
}

func argTypeName(v any) string {
	switch v.(type) {
	case int8, int16, int32, int64, int:
		return "signedint"
	case uint8, uint16, uint32:
		return "unsignedint"
	case string, []byte:
		return "longstr"
	case bool:
		return "bool"
	case float32, float64:
		return "double"
	case amqpwire.Table, map[string]any:
		return "table"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func newQueueID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// deleteQueue removes a queue: bindings, consumers (told with basic.cancel),
// store and definition. It returns the number of ready messages dropped.
// The definition leaves the index first; if that fails the queue stays as
// it was and the error is returned.
func (vh *vhost) deleteQueue(q *queue, reason string) (int, error) {
	vh.mu.Lock()
	if vh.queues[q.name] != q {
		vh.mu.Unlock()
		return 0, nil
	}
	if q.durable && !q.exclusive {
		b := vh.s.store.Index().NewDefsBatch()
		b.DeleteQueue(vh.name, q.name)
		for _, bd := range vh.topo.BindingsOf(q.name) {
			b.DeleteBinding(indexBinding(vh.name, bd))
		}
		if err := b.Commit(); err != nil {
			vh.mu.Unlock()
			return 0, vh.storageErr(nil, "delete queue", q.name, err)
		}
	}
	delete(vh.queues, q.name)
	vh.s.queueCount.Add(-1)
	vh.qmap.setLocked(q.name, nil)
	_, autoDeleted := vh.topo.RemoveQueue(q.name)
	vh.forgetLocked(nil, autoDeleted)
	vh.refreshLocked()
	q.mu.Lock()
	q.deleted = true
	q.stopTimersLocked()
	n := q.sq.Ready()
	cons := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	vh.mu.Unlock()

	for _, c := range cons {
		c.ch.serverCancel(c)
	}
	if q.owner != nil {
		q.owner.ownedMu.Lock()
		if q.owner.owned != nil {
			delete(q.owner.owned, q)
		}
		q.owner.ownedMu.Unlock()
	}
	if err := vh.s.store.DeleteQueue(q.id); err != nil {
		vh.s.log.Error().Err(err).Str("queue", q.name).Msg("deleting queue data failed")
	}
	vh.s.log.Debug().Str("vhost", vh.name).Str("queue", q.name).Str("reason", reason).Msg("queue deleted")
	return n, nil
}

// deleteQueueLogged is deleteQueue for the broker's own deletions
// (auto-delete, exclusive owner gone, x-expires): a failure is logged.
func (vh *vhost) deleteQueueLogged(q *queue, reason string) {
	if _, err := vh.deleteQueue(q, reason); err != nil {
		vh.s.log.Error().Err(err).Str("queue", q.name).Str("reason", reason).Msg("queue not deleted")
	}
}

// purge drops every ready message of the queue.
func (q *queue) purge() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return 0
	}
	return q.sq.Purge()
}

// sortedQueues lists the vhost's queues by name (for tools and tests).
func (vh *vhost) sortedQueues() []*queue {
	out := vh.qmap.all()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
