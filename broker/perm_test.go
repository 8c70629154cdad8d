package broker

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/index"
)

// addUser creates a user with a password and a permission in "/".
func addUser(t *testing.T, s *Server, name, pass, configure, write, read string) {
	t.Helper()
	h, err := index.HashPassword(index.HashSHA256, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutUser(index.User{Name: name, PasswordHash: h, HashAlgorithm: index.HashSHA256}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPermission(index.Permission{User: name, VHost: "/", Configure: configure, Write: write, Read: read}); err != nil {
		t.Fatal(err)
	}
}

func (b *testBroker) dialAs(user, pass string) *amqp.Connection {
	b.t.Helper()
	u := strings.Replace(b.url, "guest:guest", user+":"+pass, 1)
	c, err := amqp.Dial(u)
	if err != nil {
		b.t.Fatalf("dial as %s: %v", user, err)
	}
	b.t.Cleanup(func() { c.Close() })
	return c
}

func chanOf(t *testing.T, c *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestPermissions checks configure, write and read over AMQP, each allowed
// on its own resources and refused elsewhere with RabbitMQ's 403 text.
func TestPermissions(t *testing.T) {
	b := startBroker(t, "")
	addUser(t, b.srv, "bob", "pw", "^bob-.*", "^bob-.*", "^bob-.*")
	// guest prepares resources bob may not configure.
	_, gch := b.channel()
	if _, err := gch.QueueDeclare("other", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := gch.ExchangeDeclare("other-x", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, gch, "", "other", amqp.Publishing{Body: []byte("secret")})

	c := b.dialAs("bob", "pw")
	ch := chanOf(t, c)
	// configure
	if _, err := ch.QueueDeclare("bob-q", false, false, false, false, nil); err != nil {
		t.Fatalf("own queue: %v", err)
	}
	_, err := ch.QueueDeclare("alice-q", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - configure access to queue 'alice-q' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	err = ch.ExchangeDeclare("alice-x", "direct", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - configure access to exchange 'alice-x' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	_, err = ch.QueueDelete("other", false, false, false)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - configure access to queue 'other' in vhost '/' refused for user 'bob'")

	// write: publishing to an exchange bob may not write to closes the channel.
	ch = chanOf(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.PublishWithContext(context.Background(), "other-x", "", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	wantChannelClose(t, closed, 403, "ACCESS_REFUSED - write access to exchange 'other-x' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	ch.PublishWithContext(context.Background(), "", "other", false, false, amqp.Publishing{Body: []byte("x")})
	wantChannelClose(t, closed, 403, "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'bob'")

	// read: bob cannot consume, get or purge what is not his.
	ch = chanOf(t, c)
	_, err = ch.Consume("other", "", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - read access to queue 'other' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	_, _, err = ch.Get("other", true)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - read access to queue 'other' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	_, err = ch.QueuePurge("other", false)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - read access to queue 'other' in vhost '/' refused for user 'bob'")
	// binding needs write on the queue and read on the exchange.
	ch = chanOf(t, c)
	err = ch.QueueBind("bob-q", "", "other-x", false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - read access to exchange 'other-x' in vhost '/' refused for user 'bob'")

	// The secret message is still there.
	if q, err := gch.QueueDeclarePassive("other", false, false, false, false, nil); err != nil || q.Messages != 1 {
		t.Fatalf("other: %+v %v", q, err)
	}
}

// TestPermissionsOnTargetExchanges: a queue's dead-letter exchange and an
// exchange's alternate exchange need write permission, as in RabbitMQ;
// otherwise a user could publish anywhere through them.
func TestPermissionsOnTargetExchanges(t *testing.T) {
	b := startBroker(t, "")
	addUser(t, b.srv, "bob", "pw", "^bob-.*", "^bob-.*", ".*")
	_, gch := b.channel()
	if err := gch.ExchangeDeclare("secret-x", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c := b.dialAs("bob", "pw")

	ch := chanOf(t, c)
	_, err := ch.QueueDeclare("bob-q", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "secret-x"})
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - write access to exchange 'secret-x' in vhost '/' refused for user 'bob'")
	ch = chanOf(t, c)
	err = ch.ExchangeDeclare("bob-x", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "secret-x"})
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - write access to exchange 'secret-x' in vhost '/' refused for user 'bob'")
	// The default exchange as a dead-letter target is amq.default.
	ch = chanOf(t, c)
	_, err = ch.QueueDeclare("bob-q", false, false, false, false, amqp.Table{"x-dead-letter-exchange": ""})
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'bob'")
	// A target of the wrong type is a precondition failure.
	ch = chanOf(t, c)
	_, err = ch.QueueDeclare("bob-q", false, false, false, false, amqp.Table{"x-dead-letter-exchange": int32(5)})
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'bob-q' in vhost '/'")

	// Targets bob may write to are fine, and neither declared anything above.
	ch = chanOf(t, c)
	if err := ch.ExchangeDeclare("bob-dlx", "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("bob-q", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "bob-dlx"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("bob-x", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "bob-dlx"}); err != nil {
		t.Fatal(err)
	}
	// Redeclaring an existing queue checks configure only (as RabbitMQ).
	if _, err := ch.QueueDeclare("bob-q", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "bob-dlx"}); err != nil {
		t.Fatal(err)
	}
}

// TestPermissionChangesApplyToOpenConnections: clearing a permission or
// deleting the user takes effect on connections already open; a user
// without permission in a vhost cannot open it (530).
func TestPermissionChangesApplyToOpenConnections(t *testing.T) {
	b := startBroker(t, "")
	addUser(t, b.srv, "bob", "pw", ".*", ".*", ".*")
	c := b.dialAs("bob", "pw")
	ch := chanOf(t, c)
	if _, err := ch.QueueDeclare("q1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.ClearPermission("bob", "/"); err != nil {
		t.Fatal(err)
	}
	_, err := ch.QueueDeclare("q2", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - configure access to queue 'q2' in vhost '/' refused for user 'bob'")
	_, err = amqp.Dial(strings.Replace(b.url, "guest:guest", "bob:pw", 1))
	wantAMQPError(t, err, 530, "NOT_ALLOWED - access to vhost '/' refused for user 'bob'")

	if err := b.srv.SetPermission(index.Permission{User: "bob", VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	ch = chanOf(t, c)
	if _, err := ch.QueueDeclare("q2", false, false, false, false, nil); err != nil {
		t.Fatalf("after permission restored: %v", err)
	}
	if err := b.srv.DeleteUser("bob"); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare("q3", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - configure access to queue 'q3' in vhost '/' refused for user 'bob'")
	if _, err := amqp.DialConfig(strings.Replace(b.url, "guest:guest", "bob:pw", 1), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)}); err == nil {
		t.Fatal("deleted user logged in")
	}
}

// TestDefaultUser: a new data directory gets the configured administrator
// instead of guest; guest does not exist then.
func TestDefaultUser(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir, Logger: testLogger(t), DefaultUser: "admin", DefaultPass: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	users := srv.Users()
	if len(users) != 1 || users[0].Name != "admin" || len(users[0].Tags) != 1 || users[0].Tags[0] != "administrator" {
		t.Fatalf("users: %+v", users)
	}
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	if _, err := srv.Authenticate("admin", "s3cret", loopback); err != nil {
		t.Fatalf("admin login: %v", err)
	}
	if _, err := srv.Authenticate("admin", "wrong", loopback); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := srv.Authenticate("guest", "guest", loopback); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("guest exists: %v", err)
	}
}

// TestAuthenticateGuestOnlyFromLoopback: guest's password is right, but not from
// another host; other users may log in from anywhere.
func TestAuthenticateGuestOnlyFromLoopback(t *testing.T) {
	b := startBroker(t, "")
	remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}
	if _, err := b.srv.Authenticate("guest", "guest", remote); !errors.Is(err, ErrLoopbackOnly) {
		t.Fatalf("guest from 10.1.2.3: %v", err)
	}
	addUser(t, b.srv, "bob", "pw", ".*", ".*", ".*")
	if _, err := b.srv.Authenticate("bob", "pw", remote); err != nil {
		t.Fatalf("bob from 10.1.2.3: %v", err)
	}
}

// TestUserIDMustMatch: a publish whose user-id property names another user
// closes the channel with 406, as in RabbitMQ; the authenticated user's own
// name passes, and a user tagged impersonator may set any.
func TestUserIDMustMatch(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("uid")
		p.declare(t, ch, "uid", false, nil)
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		publish(t, ch, "", q, amqp.Publishing{UserId: "guest", Body: []byte("mine")})
		waitReady(t, ch, q, 1)
		ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{UserId: "mallory", Body: []byte("forged")})
		select {
		case e := <-closed:
			if e == nil || e.Code != 406 || e.Reason != "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'" {
				t.Fatalf("channel closed with %v", e)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a forged user-id was accepted")
		}
		_, ch2 := p.channel(t)
		if st, err := ch2.QueueDeclarePassive(q, false, false, false, false, nil); err != nil || st.Messages != 1 {
			t.Fatalf("queue after the forged publish: %+v %v", st, err)
		}
	})
	// An impersonator may publish as anyone.
	addUser(t, b.srv, "relay", "pw", ".*", ".*", ".*")
	h, _ := index.HashPassword(index.HashSHA256, "pw")
	if _, err := b.srv.PutUser(index.User{Name: "relay", PasswordHash: h, HashAlgorithm: index.HashSHA256, Tags: []string{"impersonator"}}); err != nil {
		t.Fatal(err)
	}
	conn := b.dialAs("relay", "pw")
	defer conn.Close()
	ch, _ := conn.Channel()
	ch.QueueDeclare("uid-relay", false, false, false, false, nil)
	publish(t, ch, "", "uid-relay", amqp.Publishing{UserId: "someone-else", Body: []byte("relayed")})
	d, ok, err := ch.Get("uid-relay", true)
	if err != nil || !ok || d.UserId != "someone-else" {
		t.Fatalf("impersonated publish: %v %v %+v", ok, err, d.UserId)
	}
}
