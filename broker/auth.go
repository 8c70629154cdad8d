package broker

import (
	"bytes"
	"net"
	"regexp"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
)

// user is an account and its per-vhost permissions.
type user struct {
	def   index.User
	perms map[string]*permission // by vhost
}

func (u *user) checkPassword(pass string) bool { return u.def.CheckPassword(pass) }

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
	re, err := regexp.Compile("^(?:" + s + ")$")
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
