package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/router"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// This file is the broker's management interface: what the admin package
// (the HTTP API) may see and do. It speaks in plain values (index
// definitions and the *Info types below), never in the broker's internal
// types. Failures are *amqpwire.Error values with the code and text
// RabbitMQ would use (404 NOT_FOUND, 406 PRECONDITION_FAILED, 403
// ACCESS_REFUSED, ...), which the HTTP layer maps to status codes.

// Actor is who asks for a management operation.
type Actor struct {
	// User is the authenticated user's name.
	User string
	// Enforce applies the user's configure/write/read permissions in the
	// vhost, as over AMQP. The HTTP API sets it for every user but
	// administrators, who act without them, as rabbitmqctl does.
	Enforce bool
}

// checker returns the permission check of a in vhost.
func (s *Server) checker(a Actor, vhost string) checker {
	if !a.Enforce {
		return func(permKind, string, string, amqpwire.Method) error { return nil }
	}
	s.mu.Lock()
	var sl *permSlot
	if u := s.users[a.User]; u != nil {
		sl = u.perms[vhost]
	}
	s.mu.Unlock()
	return func(kind permKind, resKind, name string, m amqpwire.Method) error {
		return checkSlot(sl, a.User, vhost, kind, resKind, name, m)
	}
}

func notFound(format string, args ...any) *amqpwire.Error {
	return amqpErr(amqpwire.NotFound, nil, format, args...)
}

func badRequest(format string, args ...any) *amqpwire.Error {
	return amqpErr(amqpwire.PreconditionFailed, nil, format, args...)
}

func (s *Server) vhostOrErr(name string) (*vhost, error) {
	vh := s.lookupVHost(name)
	if vh == nil {
		return nil, notFound("no vhost '%s'", name)
	}
	return vh, nil
}

// ---- node ----

// NodeInfo describes the running broker.
type NodeInfo struct {
	Product, Version, Node string
	Started                time.Time
	// AMQPAddr is the address AMQP clients connect to (nil before Serve).
	AMQPAddr net.Addr
}

// Node returns the broker's identity.
func (s *Server) Node() NodeInfo {
	return NodeInfo{Product: "Warren", Version: Version, Node: "warren@" + hostname(), Started: s.started, AMQPAddr: s.Addr()}
}

// Totals returns the node-wide message counters.
func (s *Server) Totals() Totals { return s.totals.snapshot() }

// StorageStats returns the store's figures (segments, bytes, sync rounds).
func (s *Server) StorageStats() store.Stats { return s.store.Stats() }

// ---- users ----

// Users lists the users by name.
func (s *Server) Users() []index.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]index.User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u.def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrLoopbackOnly is returned by Authenticate for guest from another host.
var ErrLoopbackOnly = errors.New("broker: user 'guest' can only connect via localhost")

// ErrBadCredentials is returned by Authenticate for an unknown user or a
// wrong password.
var ErrBadCredentials = errors.New("broker: invalid credentials")

// Authenticate checks a login as connection.start-ok does, guest allowed
// only from loopback.
func (s *Server) Authenticate(name, pass string, remote net.Addr) (index.User, error) {
	u := s.authenticate(name, pass)
	if u == nil {
		return index.User{}, ErrBadCredentials
	}
	if name == "guest" && !isLoopback(remote) {
		return index.User{}, ErrLoopbackOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return u.def, nil
}

// PutUser creates or replaces a user; existing permissions are kept.
func (s *Server) PutUser(u index.User) (created bool, err error) {
	if u.Name == "" {
		return false, badRequest("user name must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.Index().PutUser(u); err != nil {
		return false, fmt.Errorf("broker: persist user: %w", err)
	}
	if old := s.users[u.Name]; old != nil {
		old.def = u
		return false, nil
	}
	s.users[u.Name] = &user{def: u, perms: make(map[string]*permSlot)}
	return true, nil
}

// DeleteUser deletes a user and its permissions. Its open connections stay
// open, as in RabbitMQ, but lose every permission at once.
func (s *Server) DeleteUser(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return notFound("no user '%s'", name)
	}
	if err := s.store.Index().DeleteUser(name); err != nil {
		return fmt.Errorf("broker: delete user: %w", err)
	}
	for _, sl := range u.perms {
		sl.p.Store(nil)
	}
	delete(s.users, name)
	return nil
}

// ---- permissions ----

// Permissions lists every permission by user, then vhost.
func (s *Server) Permissions() []index.Permission {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []index.Permission
	for name, u := range s.users {
		for vh, sl := range u.perms {
			if p := sl.p.Load(); p != nil {
				out = append(out, index.Permission{User: name, VHost: vh, Configure: p.raw[0], Write: p.raw[1], Read: p.raw[2]})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].VHost < out[j].VHost
	})
	return out
}

// SetPermission sets a user's permission in a vhost; it applies to the
// user's open connections at once.
func (s *Server) SetPermission(p index.Permission) error {
	pp, err := newPermission(p.Configure, p.Write, p.Read)
	if err != nil {
		return badRequest("invalid permission pattern: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[p.User]
	if u == nil {
		return notFound("no user '%s'", p.User)
	}
	if s.vhosts[p.VHost] == nil {
		return notFound("no vhost '%s'", p.VHost)
	}
	if err := s.store.Index().PutPermission(p); err != nil {
		return fmt.Errorf("broker: persist permission: %w", err)
	}
	u.slotLocked(p.VHost).p.Store(pp)
	return nil
}

// ClearPermission removes a user's permission in a vhost.
func (s *Server) ClearPermission(userName, vhost string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userName]
	if u == nil {
		return notFound("no user '%s'", userName)
	}
	sl := u.perms[vhost]
	if sl == nil || sl.p.Load() == nil {
		return notFound("no permission for user '%s' in vhost '%s'", userName, vhost)
	}
	if err := s.store.Index().DeletePermission(userName, vhost); err != nil && !errors.Is(err, index.ErrNotFound) {
		return fmt.Errorf("broker: delete permission: %w", err)
	}
	sl.p.Store(nil)
	return nil
}

// Allowed reports whether a user may access a resource in a vhost: kind is
// "configure", "write" or "read"; an empty kind asks for any access to the
// vhost.
func (s *Server) Allowed(userName, vhost, kind, resKind, name string) bool {
	s.mu.Lock()
	var sl *permSlot
	if u := s.users[userName]; u != nil {
		sl = u.perms[vhost]
	}
	s.mu.Unlock()
	if kind == "" {
		return sl != nil && sl.p.Load() != nil
	}
	for k, n := range permNames {
		if n == kind {
			return checkSlot(sl, userName, vhost, permKind(k), resKind, name, nil) == nil
		}
	}
	return false
}

// ---- vhosts ----

// VHosts lists the vhosts by name.
func (s *Server) VHosts() ([]index.VHost, error) {
	return s.store.Index().VHosts()
}

// PutVHost creates a vhost, or updates its metadata. A vhost created by a
// user gets that user full permissions on it, as RabbitMQ's API does
// (actor "" grants nothing).
func (s *Server) PutVHost(v index.VHost, actor string) (created bool, err error) {
	if v.Name == "" {
		return false, badRequest("vhost name must not be empty")
	}
	dqt := kindClassic
	if v.DefaultQueueType != "" && v.DefaultQueueType != "undefined" {
		k, ok := parseKind(v.DefaultQueueType)
		if !ok {
			return false, badRequest("default queue type '%s' is not one of classic, quorum, stream", v.DefaultQueueType)
		}
		dqt = k
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.Index().PutVHost(v); err != nil {
		return false, fmt.Errorf("broker: persist vhost: %w", err)
	}
	if vh := s.vhosts[v.Name]; vh != nil {
		vh.defaultType.Store(uint32(dqt))
		return false, nil
	}
	vh := newVHost(s, v.Name)
	vh.defaultType.Store(uint32(dqt))
	s.vhosts[v.Name] = vh
	if u := s.users[actor]; u != nil {
		p := index.Permission{User: actor, VHost: v.Name, Configure: ".*", Write: ".*", Read: ".*"}
		if err := s.store.Index().PutPermission(p); err != nil {
			return true, fmt.Errorf("broker: persist permission: %w", err)
		}
		pp, _ := newPermission(".*", ".*", ".*")
		u.slotLocked(v.Name).p.Store(pp)
	}
	s.log.Info().Str("vhost", v.Name).Msg("vhost created")
	return true, nil
}

// DeleteVHost deletes a vhost with its queues (and their messages),
// exchanges, bindings, permissions and policies. Its connections are closed
// with 320 CONNECTION_FORCED.
func (s *Server) DeleteVHost(name string) error {
	s.mu.Lock()
	vh := s.vhosts[name]
	if vh == nil {
		s.mu.Unlock()
		return notFound("no vhost '%s'", name)
	}
	delete(s.vhosts, name)
	var conns []*conn
	for c := range s.conns {
		if c.opened.Load() && c.vh == vh {
			conns = append(conns, c)
		}
	}
	for _, u := range s.users {
		if sl := u.perms[name]; sl != nil {
			sl.p.Store(nil)
			delete(u.perms, name)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.forceClose(fmt.Sprintf("vhost '%s' is deleted", name))
	}
	msgs := 0
	for _, q := range vh.sortedQueues() {
		n, err := vh.deleteQueue(q, "vhost deleted")
		if err != nil {
			s.restoreVHost(vh)
			return err
		}
		msgs += n
	}
	// No declaration from now on (a connection still in its handshake was
	// not in the list closed above). One that came in after the queue list
	// above is still defined: the index marks its definition as deleted,
	// and the next start removes its log.
	vh.mu.Lock()
	vh.deleted = true
	err := s.store.Index().DeleteVHost(name)
	vh.mu.Unlock()
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		s.restoreVHost(vh)
		return fmt.Errorf("broker: delete vhost: %w", err)
	}
	s.log.Info().Str("vhost", name).Int("connections_closed", len(conns)).Int("messages_deleted", msgs).Msg("vhost deleted")
	return nil
}

// restoreVHost puts back a vhost whose deletion failed (a storage error):
// it is still in the index, with what it has left, so it is served again,
// with its users' permissions as the index holds them, and can be deleted
// again.
func (s *Server) restoreVHost(vh *vhost) {
	vh.mu.Lock()
	vh.deleted = false
	vh.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vhosts[vh.name] != nil {
		s.log.Error().Str("vhost", vh.name).
			Msg("vhost deletion failed, and the vhost was created anew meanwhile: the queues the deletion left are not served until a restart")
		return
	}
	s.vhosts[vh.name] = vh
	perms, err := s.store.Index().Permissions()
	if err != nil {
		s.log.Error().Err(err).Str("vhost", vh.name).Msg("vhost kept after a failed delete; cannot read its permissions back")
		return
	}
	for _, p := range perms {
		u := s.users[p.User]
		if p.VHost != vh.name || u == nil {
			continue
		}
		if pp, err := newPermission(p.Configure, p.Write, p.Read); err == nil {
			u.slotLocked(p.VHost).p.Store(pp)
		}
	}
	s.log.Error().Str("vhost", vh.name).Msg("vhost kept: its deletion failed")
}

// ---- policies and runtime parameters ----
//
// Policies and operator policies apply to queues (policy.go); runtime
// parameters are stored so that definitions round-trip.

// Policies lists the policies of a vhost ("" for all).
func (s *Server) Policies(vhost string) ([]index.Policy, error) {
	return s.store.Index().Policies(vhost)
}

// PutPolicy creates or replaces a policy and applies it to the vhost's
// queues. A definition RabbitMQ would refuse is a 406 whose text is
// RabbitMQ's "Validation failed" reason.
func (s *Server) PutPolicy(p index.Policy) error { return s.putPolicy(p, false) }

// DeletePolicy deletes a policy; the queues it applied to fall back to the
// next matching one.
func (s *Server) DeletePolicy(vhost, name string) error { return s.deletePolicy(vhost, name, false) }

// OperatorPolicies lists the operator policies of a vhost ("" for all).
func (s *Server) OperatorPolicies(vhost string) ([]index.Policy, error) {
	return s.store.Index().OperatorPolicies(vhost)
}

// PutOperatorPolicy creates or replaces an operator policy (limits only:
// expires, message-ttl, max-length, max-length-bytes, delivery-limit,
// overflow, ...), which wins over policies with the lower value.
func (s *Server) PutOperatorPolicy(p index.Policy) error { return s.putPolicy(p, true) }

// DeleteOperatorPolicy deletes an operator policy.
func (s *Server) DeleteOperatorPolicy(vhost, name string) error {
	return s.deletePolicy(vhost, name, true)
}

// Parameters lists the runtime parameters.
func (s *Server) Parameters() ([]index.Parameter, error) { return s.store.Index().Parameters() }

// PutParameter stores a runtime parameter.
func (s *Server) PutParameter(p index.Parameter) error {
	if _, err := s.vhostOrErr(p.VHost); err != nil {
		return err
	}
	return s.store.Index().PutParameter(p)
}

// GlobalParameters lists the global parameters.
func (s *Server) GlobalParameters() ([]index.GlobalParameter, error) {
	return s.store.Index().GlobalParameters()
}

// PutGlobalParameter stores a global parameter.
func (s *Server) PutGlobalParameter(p index.GlobalParameter) error {
	return s.store.Index().PutGlobalParameter(p)
}

// ---- exchanges ----

// ExchangeInfo describes an exchange.
type ExchangeInfo struct {
	VHost, Name, Type             string
	Durable, AutoDelete, Internal bool
	Arguments                     amqpwire.Table
}

func (s *Server) vhostsFor(name string) ([]*vhost, error) {
	if name != "" {
		vh, err := s.vhostOrErr(name)
		if err != nil {
			return nil, err
		}
		return []*vhost{vh}, nil
	}
	s.mu.Lock()
	out := make([]*vhost, 0, len(s.vhosts))
	for _, vh := range s.vhosts {
		out = append(out, vh)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// Exchanges lists the exchanges of a vhost ("" for every vhost), by vhost
// and name, the default exchange first.
func (s *Server) Exchanges(vhost string) ([]ExchangeInfo, error) {
	vhs, err := s.vhostsFor(vhost)
	if err != nil {
		return nil, err
	}
	var out []ExchangeInfo
	for _, vh := range vhs {
		vh.mu.Lock()
		for _, x := range vh.topo.Exchanges() {
			out = append(out, ExchangeInfo{VHost: vh.name, Name: x.Name, Type: x.Kind.String(), Durable: x.Durable,
				AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: x.Args})
		}
		vh.mu.Unlock()
	}
	return out, nil
}

// DeclareExchange declares an exchange as exchange.declare does, with the
// same checks (reserved names, permissions, equivalence).
func (s *Server) DeclareExchange(a Actor, x ExchangeInfo) (created bool, err error) {
	vh, err := s.vhostOrErr(x.VHost)
	if err != nil {
		return false, err
	}
	m := &amqpwire.ExchangeDeclare{Exchange: x.Name, Type: x.Type, Durable: x.Durable, AutoDelete: x.AutoDelete,
		Internal: x.Internal, Arguments: x.Arguments}
	if x.Name == "" {
		return false, amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	chk := s.checker(a, vh.name)
	if err := chk(permConfigure, "exchange", x.Name, m); err != nil {
		return false, err
	}
	if _, ok := vh.exchange(x.Name); ok {
		return false, vh.declareExchange(m)
	}
	if strings.HasPrefix(x.Name, "amq.") {
		return false, amqpErr(amqpwire.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", x.Name)
	}
	if err := checkTargetExchange(chk, m.Arguments, "alternate-exchange", "exchange", x.Name, vh.name, m); err != nil {
		return false, err
	}
	return true, vh.declareExchange(m)
}

// DeleteExchange deletes an exchange; unlike exchange.delete, a missing
// exchange is 404.
func (s *Server) DeleteExchange(a Actor, vhost, name string, ifUnused bool) error {
	vh, err := s.vhostOrErr(vhost)
	if err != nil {
		return err
	}
	m := &amqpwire.ExchangeDelete{Exchange: name, IfUnused: ifUnused}
	if name == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if _, ok := vh.exchange(name); !ok {
		return notFound("no exchange '%s' in vhost '%s'", name, vhost)
	}
	if strings.HasPrefix(name, "amq.") {
		return amqpErr(amqpwire.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", name)
	}
	if err := s.checker(a, vhost)(permConfigure, "exchange", name, m); err != nil {
		return err
	}
	return vh.deleteExchange(m, name, ifUnused)
}

// ---- queues ----

// QueueInfo describes a queue. Counts are exact, read from the store.
type QueueInfo struct {
	VHost, Name                    string
	Durable, AutoDelete, Exclusive bool
	Arguments                      amqpwire.Table
	Ready, Unacked                 int
	Consumers                      int
	// ActiveConsumerTag is the consumer that receives messages of a
	// single-active-consumer queue; ExclusiveConsumerTag the exclusive
	// consumer, if any.
	ActiveConsumerTag, ExclusiveConsumerTag string
	// Owner is the name of the connection owning an exclusive queue.
	Owner string
	Stats QueueStats
	// Type is "classic", "quorum" or "stream".
	Type string
	// ReadyBytes and UnackedBytes are the body bytes of the ready and
	// unacked messages (for a stream: its bytes on disk).
	ReadyBytes, UnackedBytes int64
	// Policy and OperatorPolicy name the policies that apply ("" for none);
	// EffectivePolicy is their merged definition.
	Policy, OperatorPolicy string
	EffectivePolicy        map[string]any
	// DeliveryLimit is a quorum queue's (-1 for none).
	DeliveryLimit int64
}

func (q *queue) info() QueueInfo {
	qi := QueueInfo{VHost: q.vh.name, Name: q.name, Durable: q.durable, AutoDelete: q.autoDelete,
		Exclusive: q.exclusive, Arguments: q.args}
	if q.owner != nil {
		qi.Owner = q.owner.name
	}
	qi.Type = q.kind.String()
	q.mu.Lock()
	// Counters change under q.mu, with the counts: read them together.
	qi.Stats = q.stats.snapshot()
	if !q.deleted {
		qi.Ready, qi.Unacked = q.sq.Ready(), q.sq.Unacked()
		qi.ReadyBytes, qi.UnackedBytes = q.sq.ReadyBytes(), q.sq.UnackedBytes()
	}
	if q.policy != nil {
		qi.Policy = q.policy.name
	}
	if q.opPolicy != nil {
		qi.OperatorPolicy = q.opPolicy.name
	}
	qi.EffectivePolicy = q.effectiveDefinition()
	qi.DeliveryLimit = q.deliveryLimit
	qi.Consumers = len(q.consumers)
	if len(q.consumers) > 0 {
		if q.sac {
			qi.ActiveConsumerTag = q.consumers[0].tag
		}
		if q.consumers[0].exclusive {
			qi.ExclusiveConsumerTag = q.consumers[0].tag
		}
	}
	q.mu.Unlock()
	return qi
}

// Queues lists the queues of a vhost ("" for every vhost) by vhost and name.
func (s *Server) Queues(vhost string) ([]QueueInfo, error) {
	vhs, err := s.vhostsFor(vhost)
	if err != nil {
		return nil, err
	}
	var out []QueueInfo
	for _, vh := range vhs {
		for _, q := range vh.sortedQueues() {
			out = append(out, q.info())
		}
	}
	return out, nil
}

// Queue describes one queue.
func (s *Server) Queue(vhost, name string) (QueueInfo, error) {
	vh, err := s.vhostOrErr(vhost)
	if err != nil {
		return QueueInfo{}, err
	}
	q := vh.queueByName(name)
	if q == nil {
		return QueueInfo{}, notFound("no queue '%s' in vhost '%s'", name, vhost)
	}
	return q.info(), nil
}

// DeclareQueue declares a (non-exclusive) queue as queue.declare does,
// with the same checks (reserved names, permissions including the
// dead-letter exchange, arguments, equivalence).
func (s *Server) DeclareQueue(a Actor, qi QueueInfo) (created bool, err error) {
	vh, err := s.vhostOrErr(qi.VHost)
	if err != nil {
		return false, err
	}
	m := &amqpwire.QueueDeclare{Queue: qi.Name, Durable: qi.Durable, AutoDelete: qi.AutoDelete, Arguments: qi.Arguments}
	if qi.Name == "" {
		return false, badRequest("queue name must not be empty")
	}
	if strings.HasPrefix(qi.Name, "amq.") {
		return false, amqpErr(amqpwire.AccessRefused, m, "queue name '%s' contains reserved prefix 'amq.*'", qi.Name)
	}
	chk := s.checker(a, vh.name)
	if err := chk(permConfigure, "queue", qi.Name, m); err != nil {
		return false, err
	}
	exists := vh.queueByName(qi.Name) != nil
	if !exists {
		if err := checkTargetExchange(chk, m.Arguments, "x-dead-letter-exchange", "queue", qi.Name, vh.name, m); err != nil {
			return false, err
		}
	}
	if _, err := vh.declareQueue(nil, m, qi.Name); err != nil {
		return false, err
	}
	return !exists, nil
}

func (s *Server) queueFor(a Actor, vhost, name string, kind permKind, m amqpwire.Method) (*vhost, *queue, error) {
	vh, err := s.vhostOrErr(vhost)
	if err != nil {
		return nil, nil, err
	}
	q := vh.queueByName(name)
	if q == nil {
		return nil, nil, notFound("no queue '%s' in vhost '%s'", name, vhost)
	}
	if err := s.checker(a, vhost)(kind, "queue", name, m); err != nil {
		return nil, nil, err
	}
	return vh, q, nil
}

// DeleteQueue deletes a queue and its messages.
func (s *Server) DeleteQueue(a Actor, vhost, name string, ifUnused, ifEmpty bool) (int, error) {
	m := &amqpwire.QueueDelete{Queue: name, IfUnused: ifUnused, IfEmpty: ifEmpty}
	vh, q, err := s.queueFor(a, vhost, name, permConfigure, m)
	if err != nil {
		return 0, err
	}
	msgs, cons := q.counts()
	if ifUnused && cons > 0 {
		return 0, amqpErr(amqpwire.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", name, vhost)
	}
	if ifEmpty && msgs > 0 {
		return 0, amqpErr(amqpwire.PreconditionFailed, m, "queue '%s' in vhost '%s' is not empty", name, vhost)
	}
	return vh.deleteQueue(q, "deleted through the management API")
}

// PurgeQueue drops a queue's ready messages and returns how many.
func (s *Server) PurgeQueue(a Actor, vhost, name string) (int, error) {
	m := &amqpwire.QueuePurge{Queue: name}
	_, q, err := s.queueFor(a, vhost, name, permRead, m)
	if err != nil {
		return 0, err
	}
	if q.kind == kindStream {
		return 0, amqpErr(amqpwire.NotImplemented, m, "queue.purge not supported by stream queues queue '%s' in vhost '%s'", name, vhost)
	}
	return q.purge(), nil
}

// GetMode says what GetMessages does with the messages it takes, as the
// management API's ackmode.
type GetMode int

// Get modes.
const (
	// GetRequeue puts the messages back (flagged redelivered).
	GetRequeue GetMode = iota
	// GetAck removes them.
	GetAck
	// GetReject removes them through the dead-letter exchange, if any.
	GetReject
)

// Message is a message taken by GetMessages.
type Message struct {
	Exchange, RoutingKey string
	Redelivered          bool
	Properties           amqpwire.Properties
	Body                 []byte
	// Remaining is how many messages were ready after this one was taken.
	Remaining int
}

// GetMessages takes up to count ready messages from a queue, as basic.get
// would, and then requeues, acks or rejects them.
func (s *Server) GetMessages(a Actor, vhost, name string, count int, mode GetMode) ([]Message, error) {
	m := &amqpwire.BasicGet{Queue: name}
	_, q, err := s.queueFor(a, vhost, name, permRead, m)
	if err != nil {
		return nil, err
	}
	if q.kind == kindStream {
		return nil, amqpErr(amqpwire.NotImplemented, m, "basic.get not supported by stream queues queue '%s' in vhost '%s'", name, vhost)
	}
	var out []Message
	var seqs []uint64
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return nil, notFound("no queue '%s' in vhost '%s'", name, vhost)
	}
	q.now = time.Now().UnixMilli()
	q.sq.Deliver(count, func(msg *store.Message) store.Verdict {
		if q.mayExpire() {
			if exp, ok := q.messageExpiry(&msg.Record); ok && q.now > exp {
				q.deadRecordLocked(&msg.Record, reasonExpired)
				return store.Drop
			}
		}
		props, err := amqpwire.DecodeProperties(msg.Record.Props)
		if err != nil {
			s.log.Warn().Err(err).Str("queue", name).Msg("stored message has undecodable properties")
		}
		out = append(out, Message{Exchange: strings.Clone(msg.Record.Exchange), RoutingKey: strings.Clone(msg.Record.RoutingKey),
			Redelivered: msg.Redelivered, Properties: props, Body: append([]byte(nil), msg.Record.Body...)})
		seqs = append(seqs, msg.Seq)
		return store.Take
	})
	ready := q.sq.Ready()
	q.unlock()
	for i := range out {
		out[i].Remaining = ready + len(out) - i - 1
		if mode == GetRequeue {
			out[i].Remaining = ready + len(out)
		}
	}
	switch mode {
	case GetRequeue:
		q.settle(nil, nil, seqs, nil)
	case GetAck:
		q.settle(seqs, nil, nil, nil)
	case GetReject:
		q.settle(nil, seqs, nil, nil)
	}
	return out, nil
}

// Publish publishes one message as basic.publish does (write permission on
// the exchange) and waits until it is durable. It reports whether the
// message was routed to a queue.
func (s *Server) Publish(a Actor, vhost, exchange, key string, props amqpwire.Properties, body []byte) (bool, error) {
	vh, err := s.vhostOrErr(vhost)
	if err != nil {
		return false, err
	}
	m := &amqpwire.BasicPublish{Exchange: exchange, RoutingKey: key}
	if exchange != "" {
		x, ok := vh.exchange(exchange)
		if !ok {
			return false, notFound("no exchange '%s' in vhost '%s'", exchange, vhost)
		}
		if x.Internal {
			return false, amqpErr(amqpwire.AccessRefused, m, "cannot publish to internal exchange '%s' in vhost '%s'", exchange, vhost)
		}
	}
	if err := s.checker(a, vhost)(permWrite, "exchange", exchange, m); err != nil {
		return false, err
	}
	if uint64(len(body)) > s.cfg.MaxMessageSize {
		return false, badRequest("message size %d is larger than configured max size %d", len(body), s.cfg.MaxMessageSize)
	}
	raw := props.AppendTo(nil)
	var dst []string
	dst = vh.route(vh.routes(), exchange, key, raw, dst)
	var flags uint8
	if props.DeliveryMode == 2 {
		flags = segment.FlagPersistent
	}
	now := time.Now().UnixMilli()
	done := make(chan error, len(dst))
	n := 0
	for _, qn := range dst {
		q := vh.queueByName(qn)
		if q == nil {
			continue
		}
		n++
		recs := []segment.Record{{Timestamp: now, Exchange: exchange, RoutingKey: key, Props: raw, Body: body, Flags: flags}}
		q.publish(recs, func(err error) { done <- err })
	}
	s.totals.received.Add(1)
	if n == 0 {
		s.totals.unroutableDropped.Add(1)
		return false, nil
	}
	s.totals.routed.Add(1)
	for i := 0; i < n; i++ {
		if err := <-done; err != nil {
			return true, fmt.Errorf("broker: publish: %w", err)
		}
	}
	return true, nil
}

// ---- bindings ----

// BindingInfo describes a binding. DestinationType is "queue" or
// "exchange". Every queue has an implicit binding from the default exchange
// (Source "") with its name as the key, listed as RabbitMQ lists it.
type BindingInfo struct {
	VHost, Source, Destination, DestinationType, RoutingKey string
	Arguments                                               amqpwire.Table
}

// Bindings lists the bindings of a vhost ("" for every vhost): the default
// exchange's implicit ones first, then by source, destination and key.
func (s *Server) Bindings(vhost string) ([]BindingInfo, error) {
	vhs, err := s.vhostsFor(vhost)
	if err != nil {
		return nil, err
	}
	var out []BindingInfo
	for _, vh := range vhs {
		for _, q := range vh.sortedQueues() {
			out = append(out, BindingInfo{VHost: vh.name, Destination: q.name, DestinationType: "queue", RoutingKey: q.name})
		}
		vh.mu.Lock()
		for _, b := range vh.topo.Bindings() {
			out = append(out, bindingInfo(vh.name, b))
		}
		vh.mu.Unlock()
	}
	return out, nil
}

func bindingInfo(vhost string, b router.Binding) BindingInfo {
	dt := "queue"
	if b.DestKind == router.DestExchange {
		dt = "exchange"
	}
	return BindingInfo{VHost: vhost, Source: b.Source, Destination: b.Destination, DestinationType: dt,
		RoutingKey: b.Key, Arguments: b.Args}
}

// Bind adds a binding as queue.bind or exchange.bind does (write on the
// destination, read on the source).
func (s *Server) Bind(a Actor, b BindingInfo) error { return s.bindOrUnbind(a, b, true) }

// Unbind removes a binding.
func (s *Server) Unbind(a Actor, b BindingInfo) error { return s.bindOrUnbind(a, b, false) }

func (s *Server) bindOrUnbind(a Actor, b BindingInfo, bind bool) error {
	vh, err := s.vhostOrErr(b.VHost)
	if err != nil {
		return err
	}
	toExchange := b.DestinationType == "exchange"
	var m amqpwire.Method
	switch {
	case toExchange && bind:
		m = &amqpwire.ExchangeBind{Destination: b.Destination, Source: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
	case toExchange:
		m = &amqpwire.ExchangeUnbind{Destination: b.Destination, Source: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
	case bind:
		m = &amqpwire.QueueBind{Queue: b.Destination, Exchange: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
	default:
		m = &amqpwire.QueueUnbind{Queue: b.Destination, Exchange: b.Source, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
	}
	if b.Source == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	chk := s.checker(a, vh.name)
	if err := chk(permWrite, b.DestinationType, b.Destination, m); err != nil {
		return err
	}
	if err := chk(permRead, "exchange", b.Source, m); err != nil {
		return err
	}
	if !toExchange && vh.queueByName(b.Destination) == nil {
		return notFound("no queue '%s' in vhost '%s'", b.Destination, vh.name)
	}
	if bind {
		return vh.bind(m, b.Source, b.Destination, toExchange, b.RoutingKey, b.Arguments)
	}
	return vh.unbind(m, b.Source, b.Destination, toExchange, b.RoutingKey, b.Arguments)
}

// ---- connections, channels, consumers ----

// ConnInfo describes an open AMQP connection.
type ConnInfo struct {
	// Name is "peer -> local", RabbitMQ's connection name.
	Name             string
	User, VHost      string
	Peer, Local      net.Addr
	ClientProperties amqpwire.Table
	ConnectedAt      time.Time
	AuthMechanism    string
	Channels         int
	FrameMax         uint32
	ChannelMax       uint16
	Heartbeat        time.Duration
	RecvOct, SendOct uint64
	// TLS is set for a connection to the AMQPS listener.
	TLS bool
}

func (c *conn) info() ConnInfo {
	c.ownedMu.Lock()
	nch := len(c.live)
	c.ownedMu.Unlock()
	_, isTLS := c.nc.(*tls.Conn)
	return ConnInfo{Name: c.name, User: c.userName, VHost: c.vh.name, Peer: c.nc.RemoteAddr(), Local: c.nc.LocalAddr(),
		ClientProperties: c.clientProps, ConnectedAt: c.connectedAt, AuthMechanism: c.mechanism, Channels: nch,
		FrameMax: c.frameMax, ChannelMax: c.channelMax, Heartbeat: c.heartbeat,
		RecvOct: c.recvOct.Load(), SendOct: c.sendOct.Load(), TLS: isTLS}
}

func (s *Server) openConns() []*conn {
	s.mu.Lock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if c.opened.Load() {
			out = append(out, c)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Connections lists the open connections in the order they were accepted.
func (s *Server) Connections() []ConnInfo {
	conns := s.openConns()
	out := make([]ConnInfo, len(conns))
	for i, c := range conns {
		out[i] = c.info()
	}
	return out
}

// CloseConnection closes the named connection with 320 CONNECTION_FORCED
// and the given reason.
func (s *Server) CloseConnection(name, reason string) error {
	for _, c := range s.openConns() {
		if c.name == name {
			c.log.Info().Str("reason", reason).Msg("closing connection on request")
			c.forceClose(reason)
			return nil
		}
	}
	return notFound("no connection '%s'", name)
}

// ChannelInfo describes an open channel.
type ChannelInfo struct {
	// Name is "connection name (number)", as RabbitMQ names channels.
	Name                     string
	Conn                     ConnInfo
	Number                   uint16
	Prefetch, GlobalPrefetch int
	Consumers, Unacked       int
	Confirm, Transactional   bool
}

// Channels lists the open channels by connection and number.
func (s *Server) Channels() []ChannelInfo {
	var out []ChannelInfo
	for _, c := range s.openConns() {
		ci := c.info()
		c.ownedMu.Lock()
		chans := make([]*channel, 0, len(c.live))
		for ch := range c.live {
			chans = append(chans, ch)
		}
		c.ownedMu.Unlock()
		sort.Slice(chans, func(i, j int) bool { return chans[i].id < chans[j].id })
		for _, ch := range chans {
			ch.consMu.Lock()
			ncons := len(ch.consumers)
			ch.consMu.Unlock()
			mode := ch.infoMode.Load()
			out = append(out, ChannelInfo{Name: fmt.Sprintf("%s (%d)", c.name, ch.id), Conn: ci, Number: ch.id,
				Prefetch: int(ch.infoPrefetch.Load()), GlobalPrefetch: int(ch.globalPrefetch.Load()),
				Consumers: ncons, Unacked: int(ch.unackedN.Load()), Confirm: mode == modeConfirm, Transactional: mode == modeTx})
		}
	}
	return out
}

// ConsumerInfo describes a consumer.
type ConsumerInfo struct {
	Tag           string
	VHost, Queue  string
	Channel       string // channel name
	ChannelNumber uint16
	Conn          ConnInfo
	AckRequired   bool
	Exclusive     bool
	Prefetch      int
	Priority      int
	Active        bool
	Arguments     amqpwire.Table
}

// Consumers lists the consumers of a vhost ("" for every vhost) by queue.
func (s *Server) Consumers(vhost string) ([]ConsumerInfo, error) {
	vhs, err := s.vhostsFor(vhost)
	if err != nil {
		return nil, err
	}
	var out []ConsumerInfo
	for _, vh := range vhs {
		for _, q := range vh.sortedQueues() {
			q.mu.Lock()
			cons := append([]*consumer(nil), q.consumers...)
			sac := q.sac
			q.mu.Unlock()
			for i, c := range cons {
				ch := c.ch
				out = append(out, ConsumerInfo{Tag: c.tag, VHost: vh.name, Queue: q.name,
					Channel: fmt.Sprintf("%s (%d)", ch.c.name, ch.id), ChannelNumber: ch.id, Conn: ch.c.info(),
					AckRequired: !c.noAck, Exclusive: c.exclusive, Prefetch: int(c.prefetch), Priority: int(c.priority),
					Active: !sac || i == 0, Arguments: c.args})
			}
		}
	}
	return out, nil
}
