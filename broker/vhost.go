package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/router"
	"github.com/warrenmq/warren/store"
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
	// deleted is set, under mu, while the vhost's definitions leave the
	// index (Server.DeleteVHost): no queue is declared in it any more.
	deleted bool
	// headersInUse and e2eInUse say when a publish must decode headers.
	headersInUse atomic.Bool
	e2eInUse     atomic.Bool
	// policies and opPolicies are the vhost's policies and operator
	// policies (policy.go), under mu.
	policies, opPolicies []*policy
	// defaultType is the type of queues declared without x-queue-type
	// (the vhost's default queue type), a queueKind.
	defaultType atomic.Uint32
}

// defaultKind returns the vhost's default queue type.
func (vh *vhost) defaultKind() queueKind { return queueKind(vh.defaultType.Load()) }

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
	if cc := ccOf(props); len(cc) > 0 {
		return vh.routeKeys(snap, exchange, key, cc, props, dst)
	}
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
		// RabbitMQ 4.x: a channel error (it was a connection-level 503).
		return amqpErr(amqpwire.PreconditionFailed, m, "unknown exchange type '%s'", m.Type)
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
//
// A disk that is full or failing is not the client's fault nor a broker
// bug: the channel, not the whole connection, is closed, with 406 and a
// text that says so, and the client can retry once space returns.
func (vh *vhost) storageErr(m amqpwire.Method, op, name string, err error) error {
	vh.s.log.Error().Err(err).Str("vhost", vh.name).Str("name", name).Str("op", op).Msg("definition not persisted")
	if store.IsWriteFailure(err) {
		return amqpErr(amqpwire.PreconditionFailed, m, "cannot %s '%s' in vhost '%s': storage is failing writes (%v); retry when it has room", op, name, vh.name, err)
	}
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

func (vh *vhost) declareQueue(c *conn, m *amqpwire.QueueDeclare, name string) (*queue, error) {
	vh.mu.Lock()
	defer vh.mu.Unlock()
	if vh.deleted {
		return nil, amqpErr(amqpwire.NotFound, m, "vhost '%s' is being deleted", vh.name)
	}
	if q := vh.queues[name]; q != nil {
		// An existing queue: only equivalence is checked, as in RabbitMQ.
		if err := q.checkOwner(c, m); err != nil {
			return nil, err
		}
		if err := vh.checkEquivalentLocked(q, m); err != nil {
			return nil, err
		}
		q.mu.Lock()
		q.touchLocked()
		q.mu.Unlock()
		return q, nil
	}
	kind, err := checkDeclareArgs(m, name, vh.name, vh.defaultKind())
	if err != nil {
		return nil, err
	}
	if max := vh.s.cfg.MaxQueues; vh.s.queueCount.Load() >= int64(max) {
		return nil, amqpErr(amqpwire.PreconditionFailed, m, "cannot declare queue '%s' in vhost '%s': queue limit (%d) is reached", name, vh.name, max)
	}
	args := m.Arguments
	if _, ok := args["x-queue-type"]; !ok && kind != kindClassic {
		// The vhost's default type, recorded as RabbitMQ records it.
		args = maps.Clone(args)
		if args == nil {
			args = amqpwire.Table{}
		}
		args["x-queue-type"] = kind.String()
	}
	q := &queue{vh: vh, name: name, durable: m.Durable, exclusive: m.Exclusive, autoDelete: m.AutoDelete, args: args,
		kind: kind, maxPrio: -1}
	if kind == kindClassic {
		q.maxPrio = maxPriorityOf(args)
	}
	vh.matchPoliciesLocked(q)
	q.configureLocked()
	if m.Exclusive {
		q.owner = c
	}
	q.id = newQueueID()
	persist := m.Durable && !m.Exclusive
	// The store writes a durable queue's definition with its log state,
	// in one synced batch (a priority queue's below: its logs come with
	// its messages).
	def := index.Queue{VHost: vh.name, Name: name, ID: q.id, Durable: persist,
		Exclusive: m.Exclusive, AutoDelete: m.AutoDelete, Arguments: encodeArgs(args)}
	if err := vh.openStoreLocked(q, def); err != nil {
		if q.sq != nil {
			vh.undoDeclareLocked(q)
		}
		return nil, vh.storageErr(m, "declare queue", name, err)
	}
	if persist && q.kind != kindStream && q.maxPrio >= 0 {
		if err := vh.s.store.Index().PutQueue(def); err != nil {
			vh.undoDeclareLocked(q)
			return nil, vh.storageErr(m, "declare queue", name, err)
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

// openStoreLocked opens (or recovers) the store of q by its type: one log,
// one per priority level in use, or a stream. def is q's definition: the
// store records it in the segments, and writes a new durable log's with its
// initial state.
func (vh *vhost) openStoreLocked(q *queue, def index.Queue) error {
	st := vh.s.store
	switch {
	case q.kind == kindStream:
		s, err := st.Stream(def, q.streamSegmentSize())
		if err != nil {
			return err
		}
		q.st, q.sq = s, streamStore{s}
		return nil
	case q.maxPrio >= 0:
		pq, err := st.PriorityQueue(def, uint8(q.maxPrio), q.levelOf)
		if err != nil {
			return err
		}
		q.sq = pq
	default:
		sq, err := st.OpenQueue(def)
		if err != nil {
			return err
		}
		q.sq = sq
		if q.kind == kindQuorum {
			if err := sq.EnableCounts(); err != nil {
				return err // the caller undoes a declaration
			}
		}
	}
	return nil
}

// undoDeclareLocked removes what a declaration that failed half way
// wrote: the definition (first, as deleteQueue does), then the log.
func (vh *vhost) undoDeclareLocked(q *queue) {
	if q.durable && !q.exclusive {
		b := vh.s.store.Index().NewDefsBatch()
		b.DeleteQueue(vh.name, q.name, q.id)
		if err := b.Commit(); err != nil {
			vh.s.log.Error().Err(err).Str("vhost", vh.name).Str("queue", q.name).
				Msg("cannot remove the definition of a queue whose declaration failed; it returns at the next start")
			return
		}
	}
	if err := q.sq.Delete(); err != nil {
		vh.s.log.Error().Err(err).Str("vhost", vh.name).Str("queue", q.name).
			Msg("cannot remove the log of a queue whose declaration failed")
	}
}

// checkEquivalentLocked makes RabbitMQ's equivalence checks on a redeclare:
// durable, exclusive, auto-delete, then every argument the queue's type
// supports (an absent x-queue-type means the vhost's default type).
func (vh *vhost) checkEquivalentLocked(q *queue, m *amqpwire.QueueDeclare) error {
	name := q.name
	ineq := func(field string, recv, cur any) error {
		return amqpErr(amqpwire.PreconditionFailed, m, "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'",
			field, name, vh.name, recv, cur)
	}
	switch {
	case q.durable != m.Durable:
		return ineq("durable", m.Durable, q.durable)
	case q.exclusive != m.Exclusive:
		return ineq("exclusive", m.Exclusive, q.exclusive)
	case q.autoDelete != m.AutoDelete:
		return ineq("auto_delete", m.AutoDelete, q.autoDelete)
	}
	for _, a := range typeArgs[q.kind] {
		rv, rok := m.Arguments[a]
		cv, cok := q.args[a]
		if a == "x-queue-type" {
			// Absent means the vhost's default type, as RabbitMQ fills it
			// in; compare the types.
			if !rok {
				rv, rok = declaredType(nil, vh.defaultKind(), m.Durable, m.Exclusive, m.AutoDelete).String(), true
			}
			cv, cok = q.kind.String(), true
		}
		if rok != cok || !argEqual(rv, cv) {
			return amqpErr(amqpwire.PreconditionFailed, m, "inequivalent arg '%s' for queue '%s' in vhost '%s': received %s but current is %s",
				a, name, vh.name, describeArg(rv, rok), describeArg(cv, cok))
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
	return fmt.Sprintf("the value '%v' of type '%s'", v, erlType(v))
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
		// The log goes after this batch: the deletion mark the batch
		// writes tells a start after a crash in between that its messages
		// were deleted on purpose.
		b.DeleteQueue(vh.name, q.name, q.id)
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
	if err := q.sq.Delete(); err != nil {
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
