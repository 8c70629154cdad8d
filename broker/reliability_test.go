package broker

import (
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestAcceptSurvivesFileDescriptorExhaustion opens more plain TCP
// connections than the broker has file descriptors (a child broker with
// RLIMIT_NOFILE 200 and no connection limit), so that accept fails with
// EMFILE, then checks the broker still serves AMQP once they are gone.
func TestAcceptSurvivesFileDescriptorExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	c := startChild(t, t.TempDir(), "WARREN_CHILD_NOFILE=200", "WARREN_CHILD_MAXCONN=-1")
	var socks []net.Conn
	for i := 0; i < 300; i++ {
		nc, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		socks = append(socks, nc)
	}
	// Let the broker hit the limit on the backlog.
	time.Sleep(300 * time.Millisecond)
	for _, nc := range socks {
		nc.Close()
	}
	if c.cmd.ProcessState != nil {
		t.Fatal("broker process exited")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := amqp.Dial(c.url())
		if err == nil {
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
				t.Fatal(err)
			}
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker no longer accepts AMQP connections: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMaxConnections refuses connections beyond the limit and accepts
// again once one closes.
func TestMaxConnections(t *testing.T) {
	b := startBrokerConfig(t, Config{MaxConnections: 2})
	c1 := b.dial()
	b.dial()
	if c, err := amqp.Dial(b.url); err == nil {
		c.Close()
		t.Fatal("third connection accepted over a limit of 2")
	}
	c1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := amqp.Dial(b.url)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
