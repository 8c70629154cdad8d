package index

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// VHost is a virtual host definition.
type VHost struct {
	Name string
	// Description, Tags and DefaultQueueType are the metadata RabbitMQ
	// keeps for a vhost; they change nothing in Warren's behaviour.
	Description      string
	Tags             []string
	DefaultQueueType string
}

// HashAlgorithm names the password hashing scheme of a User.
type HashAlgorithm uint8

// Hash algorithms. Part of the format, do not change.
const (
	// HashNone marks a user without a password (cannot log in with PLAIN).
	HashNone HashAlgorithm = 0
	// HashSHA256 is RabbitMQ's rabbit_password_hashing_sha256: a 4-byte salt
	// followed by SHA-256(salt || password).
	HashSHA256 HashAlgorithm = 1
	// HashSHA512 is rabbit_password_hashing_sha512: 4-byte salt followed by
	// SHA-512(salt || password).
	HashSHA512 HashAlgorithm = 2
	// HashMD5 is rabbit_password_hashing_md5, accepted for imported definitions.
	HashMD5 HashAlgorithm = 3
)

// User is a broker user.
type User struct {
	Name          string
	PasswordHash  []byte
	HashAlgorithm HashAlgorithm
	Tags          []string
}

// Permission grants a user access to a vhost; each field is a regular
// expression matched against resource names.
type Permission struct {
	User      string
	VHost     string
	Configure string
	Write     string
	Read      string
}

// Exchange is a durable exchange definition.
type Exchange struct {
	VHost      string
	Name       string
	Type       string
	Durable    bool
	AutoDelete bool
	Internal   bool
	// Arguments is an encoded AMQP field table, opaque to the index.
	Arguments []byte
}

// Queue is a queue definition.
type Queue struct {
	VHost string
	Name  string
	// ID is the stable identifier of the queue's log: the directory name of
	// its segments and the key of its log state.
	ID         string
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	// Arguments is an encoded AMQP field table, opaque to the index.
	Arguments []byte
}

// DestinationKind tells whether a binding's destination is a queue or an exchange.
type DestinationKind byte

// Destination kinds. Part of the format, do not change.
const (
	DestQueue    DestinationKind = 'q'
	DestExchange DestinationKind = 'x'
)

// Binding binds a source exchange to a queue or exchange.
type Binding struct {
	VHost           string
	Source          string
	Destination     string
	DestinationKind DestinationKind
	RoutingKey      string
	// Arguments is an encoded AMQP field table, opaque to the index. It is
	// part of the binding's identity.
	Arguments []byte
}

// ---- vhosts ----

// vhostMetaVersion is the value version of a vhost with metadata; a vhost
// without metadata keeps the bare version-1 value. Part of the format, do
// not change.
const vhostMetaVersion = 2

func encodeVHost(v VHost) []byte {
	if v.Description == "" && len(v.Tags) == 0 && v.DefaultQueueType == "" {
		return []byte{valueVersion}
	}
	b := []byte{vhostMetaVersion}
	b = appendBytes(b, v.Description)
	b = binary.AppendUvarint(b, uint64(len(v.Tags)))
	for _, t := range v.Tags {
		b = appendBytes(b, t)
	}
	return appendBytes(b, v.DefaultQueueType)
}

func decodeVHost(name string, v []byte) (VHost, error) {
	out := VHost{Name: name}
	if len(v) > 0 && v[0] == vhostMetaVersion {
		r := &valueReader{b: v[1:]}
		out.Description = r.str()
		if n := r.count(1); n > 0 {
			out.Tags = make([]string, n)
			for i := range out.Tags {
				out.Tags[i] = r.str()
			}
		}
		out.DefaultQueueType = r.str()
		if err := r.done(); err != nil {
			return VHost{}, fmt.Errorf("vhost %q: %w", name, err)
		}
		return out, nil
	}
	if err := newValueReader(v).done(); err != nil {
		return VHost{}, fmt.Errorf("vhost %q: %w", name, err)
	}
	return out, nil
}

// PutVHost creates or replaces a vhost.
func (db *DB) PutVHost(v VHost) error {
	return db.set(keyOf(kindVHost, v.Name), encodeVHost(v))
}

// GetVHost returns the named vhost or ErrNotFound.
func (db *DB) GetVHost(name string) (VHost, error) {
	v, err := db.get(keyOf(kindVHost, name))
	if err != nil {
		return VHost{}, fmt.Errorf("vhost %q: %w", name, err)
	}
	return decodeVHost(name, v)
}

// DeleteVHost deletes a vhost together with its exchanges, queues, bindings,
// permissions and parameters, in one synced batch; each queue definition it
// deletes gets a deletion mark (see DefsBatch.DeleteQueue), as the log of
// such a queue is still there. It returns ErrNotFound if the vhost does not
// exist.
func (db *DB) DeleteVHost(name string) error {
	vkey := keyOf(kindVHost, name)
	if _, err := db.get(vkey); err != nil {
		return fmt.Errorf("vhost %q: %w", name, err)
	}
	queues, err := db.Queues(name)
	if err != nil {
		return err
	}
	perms, err := db.Permissions()
	if err != nil {
		return err
	}
	ops := []jop{{op: 'D', key: vkey}}
	for _, kind := range []byte{kindExchange, kindQueue, kindBinding, kindPolicy, kindOperatorPolicy} {
		p := keyOf(kind, name)
		ops = append(ops, jop{op: 'R', key: p, value: prefixEnd(p)})
	}
	for _, q := range queues {
		// A queue still defined here has a log the caller did not delete:
		// its state stays, and a deletion mark says the log is to go (the
		// broker finishes that at its next start).
		ops = append(ops, jop{op: 'S', key: keyOf(kindDeleting, q.ID)})
	}
	params, err := db.Parameters()
	if err != nil {
		return err
	}
	for _, p := range params {
		if p.VHost == name {
			ops = append(ops, jop{op: 'D', key: keyOf(kindParameter, p.Component, p.VHost, p.Name)})
		}
	}
	for _, p := range perms {
		if p.VHost == name {
			ops = append(ops, jop{op: 'D', key: keyOf(kindPermission, p.User, p.VHost)})
		}
	}
	if err := db.write(ops); err != nil {
		return fmt.Errorf("index: delete vhost %q: %w", name, err)
	}
	return nil
}

// VHosts lists every vhost in name order.
func (db *DB) VHosts() ([]VHost, error) {
	var out []VHost
	err := db.scan([]byte{kindVHost}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		name := r.str()
		if err := r.done(); err != nil {
			return err
		}
		vh, err := decodeVHost(name, v)
		if err != nil {
			return err
		}
		out = append(out, vh)
		return nil
	})
	return out, err
}

// ---- users ----

func encodeUser(u User) []byte {
	v := []byte{valueVersion, byte(u.HashAlgorithm)}
	v = appendBytes(v, u.PasswordHash)
	v = binary.AppendUvarint(v, uint64(len(u.Tags)))
	for _, t := range u.Tags {
		v = appendBytes(v, t)
	}
	return v
}

func decodeUser(name string, v []byte) (User, error) {
	r := newValueReader(v)
	u := User{Name: name}
	u.HashAlgorithm = HashAlgorithm(r.byte())
	u.PasswordHash = r.bytes()
	if n := r.count(1); n > 0 {
		u.Tags = make([]string, n)
		for i := range u.Tags {
			u.Tags[i] = r.str()
		}
	}
	if err := r.done(); err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// PutUser creates or replaces a user.
func (db *DB) PutUser(u User) error {
	return db.set(keyOf(kindUser, u.Name), encodeUser(u))
}

// GetUser returns the named user or ErrNotFound.
func (db *DB) GetUser(name string) (User, error) {
	v, err := db.get(keyOf(kindUser, name))
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return decodeUser(name, v)
}

// DeleteUser deletes a user and its permissions, or returns ErrNotFound.
func (db *DB) DeleteUser(name string) error {
	ukey := keyOf(kindUser, name)
	if _, err := db.get(ukey); err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	p := keyOf(kindPermission, name)
	if err := db.write([]jop{{op: 'D', key: ukey}, {op: 'R', key: p, value: prefixEnd(p)}}); err != nil {
		return fmt.Errorf("index: delete user %q: %w", name, err)
	}
	return nil
}

// Users lists every user in name order.
func (db *DB) Users() ([]User, error) {
	var out []User
	err := db.scan([]byte{kindUser}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		name := r.str()
		if err := r.done(); err != nil {
			return err
		}
		u, err := decodeUser(name, v)
		if err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// ---- permissions ----

func encodePermission(p Permission) []byte {
	v := []byte{valueVersion}
	v = appendBytes(v, p.Configure)
	v = appendBytes(v, p.Write)
	return appendBytes(v, p.Read)
}

func decodePermission(user, vhost string, v []byte) (Permission, error) {
	r := newValueReader(v)
	p := Permission{User: user, VHost: vhost}
	p.Configure = r.str()
	p.Write = r.str()
	p.Read = r.str()
	if err := r.done(); err != nil {
		return Permission{}, fmt.Errorf("permission %q@%q: %w", user, vhost, err)
	}
	return p, nil
}

// PutPermission creates or replaces the permission of p.User on p.VHost.
func (db *DB) PutPermission(p Permission) error {
	return db.set(keyOf(kindPermission, p.User, p.VHost), encodePermission(p))
}

// GetPermission returns the permission of user on vhost or ErrNotFound.
func (db *DB) GetPermission(user, vhost string) (Permission, error) {
	v, err := db.get(keyOf(kindPermission, user, vhost))
	if err != nil {
		return Permission{}, fmt.Errorf("permission %q@%q: %w", user, vhost, err)
	}
	return decodePermission(user, vhost, v)
}

// DeletePermission deletes the permission of user on vhost, or returns ErrNotFound.
func (db *DB) DeletePermission(user, vhost string) error {
	if err := db.del(keyOf(kindPermission, user, vhost)); err != nil {
		return fmt.Errorf("permission %q@%q: %w", user, vhost, err)
	}
	return nil
}

// Permissions lists every permission ordered by user, then vhost.
func (db *DB) Permissions() ([]Permission, error) {
	return db.permissions([]byte{kindPermission})
}

// UserPermissions lists the permissions of one user ordered by vhost.
func (db *DB) UserPermissions(user string) ([]Permission, error) {
	return db.permissions(keyOf(kindPermission, user))
}

func (db *DB) permissions(prefix []byte) ([]Permission, error) {
	var out []Permission
	err := db.scan(prefix, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		user, vhost := r.str(), r.str()
		if err := r.done(); err != nil {
			return err
		}
		p, err := decodePermission(user, vhost, v)
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// ---- exchanges ----

const (
	flagDurable    = 1
	flagAutoDelete = 2 // exchange
	flagInternal   = 4 // exchange
	flagExclusive  = 2 // queue
	flagQAutoDel   = 4 // queue
)

func encodeExchange(e Exchange) []byte {
	v := []byte{valueVersion}
	v = appendBytes(v, e.Type)
	var f byte
	if e.Durable {
		f |= flagDurable
	}
	if e.AutoDelete {
		f |= flagAutoDelete
	}
	if e.Internal {
		f |= flagInternal
	}
	v = append(v, f)
	return appendBytes(v, e.Arguments)
}

func decodeExchange(vhost, name string, v []byte) (Exchange, error) {
	r := newValueReader(v)
	e := Exchange{VHost: vhost, Name: name}
	e.Type = r.str()
	f := r.byte()
	e.Durable, e.AutoDelete, e.Internal = f&flagDurable != 0, f&flagAutoDelete != 0, f&flagInternal != 0
	e.Arguments = r.bytes()
	if err := r.done(); err != nil {
		return Exchange{}, fmt.Errorf("exchange %q in vhost %q: %w", name, vhost, err)
	}
	return e, nil
}

// PutExchange creates or replaces an exchange.
func (db *DB) PutExchange(e Exchange) error {
	return db.set(keyOf(kindExchange, e.VHost, e.Name), encodeExchange(e))
}

// GetExchange returns the named exchange or ErrNotFound.
func (db *DB) GetExchange(vhost, name string) (Exchange, error) {
	v, err := db.get(keyOf(kindExchange, vhost, name))
	if err != nil {
		return Exchange{}, fmt.Errorf("exchange %q in vhost %q: %w", name, vhost, err)
	}
	return decodeExchange(vhost, name, v)
}

// DeleteExchange deletes an exchange, or returns ErrNotFound. Bindings are
// left to the caller (DeleteBinding).
func (db *DB) DeleteExchange(vhost, name string) error {
	if err := db.del(keyOf(kindExchange, vhost, name)); err != nil {
		return fmt.Errorf("exchange %q in vhost %q: %w", name, vhost, err)
	}
	return nil
}

// Exchanges lists the exchanges of one vhost in name order.
func (db *DB) Exchanges(vhost string) ([]Exchange, error) {
	var out []Exchange
	err := db.scan(keyOf(kindExchange, vhost), func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		vh, name := r.str(), r.str()
		if err := r.done(); err != nil {
			return err
		}
		e, err := decodeExchange(vh, name, v)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// ---- queues ----

func encodeQueue(q Queue) []byte {
	v := []byte{valueVersion}
	v = appendBytes(v, q.ID)
	var f byte
	if q.Durable {
		f |= flagDurable
	}
	if q.Exclusive {
		f |= flagExclusive
	}
	if q.AutoDelete {
		f |= flagQAutoDel
	}
	v = append(v, f)
	return appendBytes(v, q.Arguments)
}

func decodeQueue(vhost, name string, v []byte) (Queue, error) {
	r := newValueReader(v)
	q := Queue{VHost: vhost, Name: name}
	q.ID = r.str()
	f := r.byte()
	q.Durable, q.Exclusive, q.AutoDelete = f&flagDurable != 0, f&flagExclusive != 0, f&flagQAutoDel != 0
	q.Arguments = r.bytes()
	if err := r.done(); err != nil {
		return Queue{}, fmt.Errorf("queue %q in vhost %q: %w", name, vhost, err)
	}
	return q, nil
}

// PutQueue creates or replaces a queue definition.
func (db *DB) PutQueue(q Queue) error {
	if q.ID == "" {
		return fmt.Errorf("%w: queue %q in vhost %q has no ID", ErrInvalid, q.Name, q.VHost)
	}
	return db.set(keyOf(kindQueue, q.VHost, q.Name), encodeQueue(q))
}

// GetQueue returns the named queue or ErrNotFound.
func (db *DB) GetQueue(vhost, name string) (Queue, error) {
	v, err := db.get(keyOf(kindQueue, vhost, name))
	if err != nil {
		return Queue{}, fmt.Errorf("queue %q in vhost %q: %w", name, vhost, err)
	}
	return decodeQueue(vhost, name, v)
}

// DeleteQueue deletes a queue definition, or returns ErrNotFound. The log
// state (keyed by queue ID) is the store's to delete; bindings are the
// caller's. It writes no deletion mark: a queue whose log stays must be
// deleted through DefsBatch.DeleteQueue.
func (db *DB) DeleteQueue(vhost, name string) error {
	if err := db.del(keyOf(kindQueue, vhost, name)); err != nil {
		return fmt.Errorf("queue %q in vhost %q: %w", name, vhost, err)
	}
	return nil
}

// Queues lists the queues of one vhost in name order.
func (db *DB) Queues(vhost string) ([]Queue, error) {
	var out []Queue
	err := db.scan(keyOf(kindQueue, vhost), func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		vh, name := r.str(), r.str()
		if err := r.done(); err != nil {
			return err
		}
		q, err := decodeQueue(vh, name, v)
		if err != nil {
			return err
		}
		out = append(out, q)
		return nil
	})
	return out, err
}

// ---- bindings ----

func bindingKey(b Binding) []byte {
	k := keyOf(kindBinding, b.VHost, b.Source)
	k = append(k, byte(b.DestinationKind))
	k = appendEsc(k, b.Destination)
	k = appendEsc(k, b.RoutingKey)
	return appendEsc(k, b.Arguments)
}

func validKind(k DestinationKind) bool { return k == DestQueue || k == DestExchange }

// PutBinding creates a binding; putting an existing binding is a no-op.
func (db *DB) PutBinding(b Binding) error {
	if !validKind(b.DestinationKind) {
		return fmt.Errorf("%w: destination kind %#x", ErrInvalid, byte(b.DestinationKind))
	}
	return db.set(bindingKey(b), []byte{valueVersion})
}

// HasBinding reports whether the binding exists.
func (db *DB) HasBinding(b Binding) (bool, error) {
	_, err := db.get(bindingKey(b))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// DeleteBinding deletes a binding, or returns ErrNotFound.
func (db *DB) DeleteBinding(b Binding) error {
	if err := db.del(bindingKey(b)); err != nil {
		return fmt.Errorf("binding %q -> %q in vhost %q: %w", b.Source, b.Destination, b.VHost, err)
	}
	return nil
}

// Bindings lists the bindings of one vhost ordered by source, destination
// kind, destination, routing key and arguments.
func (db *DB) Bindings(vhost string) ([]Binding, error) {
	return db.bindings(keyOf(kindBinding, vhost))
}

// BindingsFrom lists the bindings whose source is the given exchange.
func (db *DB) BindingsFrom(vhost, source string) ([]Binding, error) {
	return db.bindings(keyOf(kindBinding, vhost, source))
}

func (db *DB) bindings(prefix []byte) ([]Binding, error) {
	var out []Binding
	err := db.scan(prefix, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		var b Binding
		b.VHost = r.str()
		b.Source = r.str()
		b.DestinationKind = DestinationKind(r.byte())
		b.Destination = r.str()
		b.RoutingKey = r.str()
		b.Arguments = r.bytes()
		if err := r.done(); err != nil {
			return err
		}
		if !validKind(b.DestinationKind) {
			return fmt.Errorf("%w: destination kind %#x", ErrCorrupt, byte(b.DestinationKind))
		}
		if err := newValueReader(v).done(); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	return out, err
}
