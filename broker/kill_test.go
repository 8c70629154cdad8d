package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"
)

// TestMain doubles as the broker process of the kill -9 test: with
// WARREN_CHILD_DIR set, the test binary serves a broker on that directory
// and prints its address.
func TestMain(m *testing.M) {
	if dir := os.Getenv("WARREN_CHILD_DIR"); dir != "" {
		if n, err := strconv.ParseUint(os.Getenv("WARREN_CHILD_NOFILE"), 10, 64); err == nil {
			// A small descriptor limit, for the accept-failure test.
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				fmt.Fprintln(os.Stderr, "child: setrlimit:", err)
				os.Exit(3)
			}
		}
		cfg := Config{DataDir: dir, Logger: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)}
		if n, err := strconv.Atoi(os.Getenv("WARREN_CHILD_MAXCONN")); err == nil {
			cfg.MaxConnections = n
		}
		cfg.MemoryHighWatermark = os.Getenv("WARREN_CHILD_WATERMARK")
		srv, err := New(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.Exit(3)
		}
		fmt.Printf("ADDR %s\n", ln.Addr())
		srv.Serve(ln)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, dir string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "WARREN_CHILD_DIR="+dir), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		cmd.Process.Kill()
		t.Fatalf("child did not start: %q %v", line, err)
	}
	c := &child{cmd: cmd, addr: strings.TrimSpace(line[5:])}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

func (c *child) url() string { return "amqp://guest:guest@" + c.addr + "/" }

// TestKill9KeepsConfirmedMessages publishes with confirms while a consumer
// holds unacked messages and acks others, kills the broker with SIGKILL
// mid-stream, restarts it and checks that every confirmed message is there
// exactly once (redelivered ones flagged), and that nothing acked returns.
func TestKill9KeepsConfirmedMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	c := startChild(t, dir)

	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare("k9", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4096))

	// Consumer: acks even message ids, holds odd ones unacked.
	cconn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	cch, _ := cconn.Channel()
	cch.Qos(200, 0, false)
	ds, err := cch.Consume("k9", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := make(map[uint64]bool)
	delivered := make(map[uint64]bool)
	go func() {
		for d := range ds {
			id := binary.BigEndian.Uint64(d.Body)
			mu.Lock()
			delivered[id] = true
			mu.Unlock()
			if id%2 == 0 {
				if d.Ack(false) == nil {
					mu.Lock()
					acked[id] = true // acked by us; the broker may not have processed it
					mu.Unlock()
				}
			}
		}
	}()

	confirmed := make(map[uint64]bool)
	var cmu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for cf := range confirms {
			cmu.Lock()
			confirmed[cf.DeliveryTag] = cf.Ack
			cmu.Unlock()
		}
	}()
	// Kill the broker while the publisher is still going.
	killed := make(chan struct{})
	time.AfterFunc(400*time.Millisecond, func() { c.kill(); close(killed) })
	var sent uint64
	for sent < 400000 {
		sent++
		body := make([]byte, 64)
		binary.BigEndian.PutUint64(body, sent)
		if err := ch.PublishWithContext(context.Background(), "", "k9", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			break
		}
	}
	<-killed
	conn.Close()
	cconn.Close()
	<-done
	cmu.Lock()
	nconf := 0
	for _, ok := range confirmed {
		if ok {
			nconf++
		}
	}
	cmu.Unlock()
	if nconf == 0 {
		t.Fatal("nothing was confirmed before the kill")
	}

	c2 := startChild(t, dir)
	conn2, err := amqp.Dial(c2.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	seen := make(map[uint64]int)
	ackedBack := 0 // acked by the client but the ack was not yet persisted
	for {
		m, ok, err := ch2.Get("k9", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		id := binary.BigEndian.Uint64(m.Body)
		seen[id]++
		if seen[id] > 1 {
			t.Fatalf("message %d recovered twice", id)
		}
		mu.Lock()
		wasDelivered, wasAcked := delivered[id], acked[id]
		mu.Unlock()
		if wasAcked {
			ackedBack++
		}
		if wasDelivered && !m.Redelivered {
			t.Errorf("message %d was delivered before the crash but is not flagged redelivered", id)
		}
	}
	missing := 0
	for tag, ok := range confirmed {
		// Publishes are numbered like confirm tags: id == tag.
		if !ok || seen[tag] > 0 {
			continue
		}
		mu.Lock()
		wasAcked := acked[tag]
		mu.Unlock()
		if !wasAcked {
			missing++
			if missing < 5 {
				t.Errorf("confirmed message %d lost", tag)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d confirmed messages lost (of %d confirmed, %d sent)", missing, nconf, sent)
	}
	t.Logf("sent %d, confirmed %d, delivered %d, acked %d; recovered %d, of which %d acked before the kill came back flagged redelivered",
		sent, nconf, len(delivered), len(acked), len(seen), ackedBack)
}
