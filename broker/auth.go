package broker

import (
	"bytes"
	"net"
	"regexp"
	"sync/atomic"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
)

// user is an account and its per-vhost permissions. def is replaced under
// Server.mu; perms maps a vhost to a slot that lives as long as the user,
// so open connections see permission changes at once.
type user struct {
	def   index.User
	perms map[string]*permSlot // by vhost; guarded by Server.mu
}

// permSlot holds a user's current permission in one vhost; nil when it has
// none (cleared, or the user was deleted). Connections keep the slot and
// load it for every check: one atomic load, no lock.
type permSlot struct {
	p atomic.Pointer[permission]
}

// slotLocked returns the user's slot for vhost, creating an empty one.
// Called with Server.mu held.
func (u *user) slotLocked(vhost string) *permSlot {
	sl := u.perms[vhost]
	if sl == nil {
		sl = &permSlot{}
		u.perms[vhost] = sl
	}
	return sl
}

// permission holds a user's configure/write/read patterns in one vhost.
type permission struct {
	configure, write, read *regexpMatcher
	raw                    [3]string
}

func newPermission(configure, write, read string) (*permission, error) {
	p := &permission{raw: [3]string{configure, write, read}}
	var err error
	if p.configure, err = compilePerm(configure); err != nil {
		return nil, err
	}
	if p.write, err = compilePerm(write); err != nil {
		return nil, err
	}
	if p.read, err = compilePerm(read); err != nil {
		return nil, err
	}
	return p, nil
}

// regexpMatcher is a compiled permission pattern; ".*" skips the regexp.
type regexpMatcher struct {
	all, none bool
	re        *regexp.Regexp
}

// MatchString reports whether a resource name is allowed.
func (m *regexpMatcher) MatchString(s string) bool {
	switch {
	case m.all:
		return true
	case m.none:
		return false
	}
	return m.re.MatchString(s)
}

func compilePerm(s string) (*regexpMatcher, error) {
	switch s {
	case "":
		return &regexpMatcher{none: true}, nil // matches nothing, as in RabbitMQ
	case ".*":
		return &regexpMatcher{all: true}, nil
	}
	// RabbitMQ searches the name for the pattern (re:run), it does not
	// anchor it: "^orders" allows "orders.new", "orders" allows "my-orders".
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, err
	}
	return &regexpMatcher{re: re}, nil
}

// parseCredentials decodes a start-ok response for PLAIN or AMQPLAIN.
func parseCredentials(mechanism string, response []byte) (name, pass string, ok bool) {
	switch mechanism {
	case "PLAIN":
		// authzid \0 authcid \0 password
		parts := bytes.SplitN(response, []byte{0}, 3)
		if len(parts) != 3 {
			return "", "", false
		}
		return string(parts[1]), string(parts[2]), true
	case "AMQPLAIN":
		// A field table without its length prefix.
		n := len(response)
		r := amqpwire.NewReader(append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, response...))
		t := r.Table()
		if r.Err() != nil {
			return "", "", false
		}
		l, ok1 := stringOf(t["LOGIN"])
		p, ok2 := stringOf(t["PASSWORD"])
		return l, p, ok1 && ok2
	}
	return "", "", false
}

func stringOf(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case []byte:
		return string(s), true
	}
	return "", false
}

// isLoopback reports whether a remote address is on the loopback interface.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
