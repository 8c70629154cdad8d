package broker

import (
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
	if len(vhosts) == 0 && len(users) == 0 {
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
		s.users[u.Name] = &user{def: u, perms: make(map[string]*permission)}
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
		u.perms[p.VHost] = pp
	}
	for _, v := range vhosts {
		vh := newVHost(s, v.Name)
		s.vhosts[v.Name] = vh
		if err := vh.load(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) seed() error {
	idx := s.store.Index()
	if err := idx.PutVHost(index.VHost{Name: "/"}); err != nil {
		return fmt.Errorf("broker: seed vhost: %w", err)
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
	for _, qd := range qs {
		sq, err := vh.s.store.Queue(qd.ID, true)
		if err != nil {
			return fmt.Errorf("broker: open queue %s/%s: %w", vh.name, qd.Name, err)
		}
		q := &queue{vh: vh, name: qd.Name, id: qd.ID, durable: true, autoDelete: qd.AutoDelete,
			args: decodeArgs(qd.Arguments), sq: sq}
		q.queueLimits()
		q.perMsgTTL = true // recovered messages may carry an expiration
		vh.queues[qd.Name] = q
		vh.s.queueCount.Add(1)
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
	vh.publishQueuesLocked()
	vh.refreshLocked()
	for _, q := range vh.queues {
		q.mu.Lock()
		q.touchLocked()
		if q.mayExpire() {
			q.expireHeadLocked()
		}
		q.unlock()
	}
	return nil
}

func (s *Server) lookupUser(name string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[name]
}

func (s *Server) lookupVHost(name string) *vhost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vhosts[name]
}

func (s *Server) permission(u *user, vhost string) *permission {
	s.mu.Lock()
	defer s.mu.Unlock()
	return u.perms[vhost]
}

type permKind uint8

const (
	permConfigure permKind = iota
	permWrite
	permRead
)

var permNames = [...]string{"configure", "write", "read"}

// checkPerm applies the user's configure/write/read pattern in the
// connection's vhost to a resource, answering 403 ACCESS_REFUSED as RabbitMQ
// does. The permission was resolved when the connection opened, so a
// publish takes no shared lock.
func (c *conn) checkPerm(kind permKind, resKind, name string, m amqpwire.Method) error {
	p := c.perm
	re := [...]*regexpMatcher{p.configure, p.write, p.read}[kind]
	if name == "" && resKind == "exchange" {
		name = "amq.default"
	}
	if re.MatchString(name) {
		return nil
	}
	return amqpErr(amqpwire.AccessRefused, m, "%s access to %s '%s' in vhost '%s' refused for user '%s'",
		permNames[kind], resKind, name, c.vh.name, c.userName)
}
