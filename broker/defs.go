package broker

import (
	"errors"
	"fmt"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/router"
)

// loadDefinitions reads vhosts, users, permissions, exchanges, queues and
// bindings from the index, seeding a fresh data directory with vhost "/" and
// the default administrator.
func (s *Server) loadDefinitions() error {
	idx := s.store.Index()
	vhosts, err := idx.VHosts()
	if err != nil {
		return fmt.Errorf("broker: load vhosts: %w", err)
	}
	users, err := idx.Users()
	if err != nil {
		return fmt.Errorf("broker: load users: %w", err)
	}
	if len(users) == 0 && (len(vhosts) == 0 || s.cfg.Repair) {
		// A new data directory; or a repair that found no user to
		// rebuild (nobody could log in otherwise).
		if len(vhosts) > 0 {
			s.log.Warn().Str("user", s.cfg.DefaultUser).Msg("repair: no user survived; creating the default user")
		}
		if err := s.seed(); err != nil {
			return err
		}
		if vhosts, err = idx.VHosts(); err != nil {
			return err
		}
		if users, err = idx.Users(); err != nil {
			return err
		}
	}
	for _, u := range users {
		s.users[u.Name] = &user{def: u, perms: make(map[string]*permSlot)}
	}
	perms, err := idx.Permissions()
	if err != nil {
		return fmt.Errorf("broker: load permissions: %w", err)
	}
	for _, p := range perms {
		u := s.users[p.User]
		if u == nil {
			continue
		}
		pp, err := newPermission(p.Configure, p.Write, p.Read)
		if err != nil {
			s.log.Warn().Err(err).Str("user", p.User).Str("vhost", p.VHost).Msg("ignoring invalid permission")
			continue
		}
		u.slotLocked(p.VHost).p.Store(pp)
	}
	for _, v := range vhosts {
		vh := newVHost(s, v.Name)
		if k, ok := parseKind(v.DefaultQueueType); ok {
			vh.defaultType.Store(uint32(k))
		}
		s.vhosts[v.Name] = vh
		if err := vh.load(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) seed() error {
	idx := s.store.Index()
	if _, err := idx.GetVHost("/"); errors.Is(err, index.ErrNotFound) {
		if err := idx.PutVHost(index.VHost{Name: "/"}); err != nil {
			return fmt.Errorf("broker: seed vhost: %w", err)
		}
	}
	hash, err := index.HashPassword(index.HashSHA256, s.cfg.DefaultPass)
	if err != nil {
		return err
	}
	if err := idx.PutUser(index.User{Name: s.cfg.DefaultUser, PasswordHash: hash, HashAlgorithm: index.HashSHA256,
		Tags: []string{"administrator"}}); err != nil {
		return fmt.Errorf("broker: seed user: %w", err)
	}
	if err := idx.PutPermission(index.Permission{User: s.cfg.DefaultUser, VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		return fmt.Errorf("broker: seed permission: %w", err)
	}
	s.log.Info().Str("user", s.cfg.DefaultUser).Msg("new data directory: created vhost '/' and the default user")
	return nil
}

// load rebuilds the vhost's durable exchanges, queues and bindings.
func (vh *vhost) load() error {
	idx := vh.s.store.Index()
	exs, err := idx.Exchanges(vh.name)
	if err != nil {
		return fmt.Errorf("broker: load exchanges of %s: %w", vh.name, err)
	}
	vh.mu.Lock()
	defer vh.mu.Unlock()
	for _, e := range exs {
		kind, err := router.ParseKind(e.Type)
		if err != nil {
			vh.s.log.Warn().Str("exchange", e.Name).Str("type", e.Type).Msg("skipping exchange of unknown type")
			continue
		}
		if _, err := vh.topo.DeclareExchange(router.Exchange{Name: e.Name, Kind: kind, Durable: e.Durable,
			AutoDelete: e.AutoDelete, Internal: e.Internal, Args: decodeArgs(e.Arguments)}); err != nil {
			vh.s.log.Warn().Err(err).Str("exchange", e.Name).Msg("skipping exchange")
		}
	}
	qs, err := idx.Queues(vh.name)
	if err != nil {
		return fmt.Errorf("broker: load queues of %s: %w", vh.name, err)
	}
	if err := vh.loadPoliciesLocked(); err != nil {
		return err
	}
	for _, qd := range qs {
		if err := vh.loadQueueLocked(qd); err != nil {
			return err
		}
	}
	bs, err := idx.Bindings(vh.name)
	if err != nil {
		return fmt.Errorf("broker: load bindings of %s: %w", vh.name, err)
	}
	for _, b := range bs {
		kind := router.DestQueue
		if b.DestinationKind == index.DestExchange {
			kind = router.DestExchange
		}
		if _, err := vh.topo.Bind(router.Binding{Source: b.Source, Destination: b.Destination, DestKind: kind,
			Key: b.RoutingKey, Args: decodeArgs(b.Arguments)}); err != nil {
			vh.s.log.Warn().Err(err).Str("source", b.Source).Str("destination", b.Destination).Msg("skipping binding")
		}
	}
	vh.qmap.replaceLocked(vh.queues)
	vh.refreshLocked()
	for _, q := range vh.queues {
		q.startLoaded()
	}
	return nil
}

// startLoaded starts a queue loaded from the index: its idle clock (for
// x-expires), and the expiry of messages whose TTL ran out while the
// broker was down.
func (q *queue) startLoaded() {
	q.mu.Lock()
	q.touchLocked()
	if q.mayExpire() {
		q.expireHeadLocked()
	}
	q.unlock()
}

// loadQueueLocked opens a durable queue from its definition, at load or
// when a repair puts a definition back.
func (vh *vhost) loadQueueLocked(qd index.Queue) error {
	args := decodeArgs(qd.Arguments)
	kind := queueTypeOf(args, kindClassic)
	q := &queue{vh: vh, name: qd.Name, id: qd.ID, durable: true, autoDelete: qd.AutoDelete,
		args: args, kind: kind, maxPrio: -1}
	if kind == kindClassic {
		q.maxPrio = maxPriorityOf(args)
	}
	vh.matchPoliciesLocked(q)
	q.configureLocked()
	if err := vh.openStoreLocked(q, qd); err != nil {
		return fmt.Errorf("broker: open queue %s/%s: %w", vh.name, qd.Name, err)
	}
	q.perMsgTTL = true // recovered messages may carry an expiration
	vh.queues[qd.Name] = q
	vh.s.queueCount.Add(1)
	return nil
}

// lookupUser returns the named user, or nil.
func (s *Server) lookupUser(name string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[name]
}

// authenticate checks a user's password; it returns nil when the user does
// not exist or the password does not match.
func (s *Server) authenticate(name, pass string) *user {
	s.mu.Lock()
	u := s.users[name]
	var def index.User
	if u != nil {
		def = u.def
	}
	s.mu.Unlock()
	if u == nil || !def.CheckPassword(pass) {
		return nil
	}
	return u
}

func (s *Server) lookupVHost(name string) *vhost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vhosts[name]
}

// permission returns the user's permission slot in vhost, or nil when the
// user has no access to it.
func (s *Server) permission(u *user, vhost string) *permSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := u.perms[vhost]
	if sl == nil || sl.p.Load() == nil {
		return nil
	}
	return sl
}

type permKind uint8

const (
	permConfigure permKind = iota
	permWrite
	permRead
)

var permNames = [...]string{"configure", "write", "read"}

// checker applies a user's permission of a kind to a resource; conn.checkPerm
// is one, the management API's actors are others.
type checker func(kind permKind, resKind, name string, m amqpwire.Method) error

// checkPerm applies the user's configure/write/read pattern in the
// connection's vhost to a resource, answering 403 ACCESS_REFUSED as RabbitMQ
// does. The permission slot was resolved when the connection opened, so a
// publish takes no shared lock, and a change of permissions applies at once.
func (c *conn) checkPerm(kind permKind, resKind, name string, m amqpwire.Method) error {
	return checkSlot(c.perm, c.userName, c.vh.name, kind, resKind, name, m)
}

func checkSlot(sl *permSlot, userName, vhost string, kind permKind, resKind, name string, m amqpwire.Method) error {
	if name == "" && resKind == "exchange" {
		name = "amq.default"
	}
	if sl != nil {
		if p := sl.p.Load(); p != nil {
			re := [...]*regexpMatcher{p.configure, p.write, p.read}[kind]
			if re.MatchString(name) {
				return nil
			}
		}
	}
	return amqpErr(amqpwire.AccessRefused, m, "%s access to %s '%s' in vhost '%s' refused for user '%s'",
		permNames[kind], resKind, name, vhost, userName)
}

// checkTargetExchange makes RabbitMQ's checks on the exchange a new queue
// dead-letters to (x-dead-letter-exchange) or a new exchange sends
// unroutable messages to (alternate-exchange): read on the declared
// resource, write on the target. Without them a user could publish to any
// exchange through a queue or exchange of their own.
func checkTargetExchange(chk checker, args amqpwire.Table, arg, resKind, name, vhost string, m amqpwire.Method) error {
	v, ok := args[arg]
	if !ok {
		return nil
	}
	target, isStr := stringOf(v)
	if !isStr {
		return amqpErr(amqpwire.PreconditionFailed, m, "invalid type '%s' for arg '%s' in %s '%s' in vhost '%s'",
			erlType(v), arg, resKind, name, vhost)
	}
	if err := chk(permRead, resKind, name, m); err != nil {
		return err
	}
	return chk(permWrite, "exchange", target, m)
}
