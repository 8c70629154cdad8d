package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/store"
)

// fullDisk wraps the OS file system so that, while on, what needs space
// fails with ENOSPC, except the index's writes once the store has released
// its ballast (the space it keeps for them).
func fullDisk(dir string) (vfs.FS, *errorfs.Toggle) {
	var on errorfs.Toggle
	ballast := filepath.Join(dir, "ballast")
	on.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if !strings.Contains(op.Path, "/queues/") {
				return nil
			}
		case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpMkdirAll,
			errorfs.OpLink, errorfs.OpFilePreallocate, errorfs.OpReuseForWrite:
			if strings.Contains(op.Path+"/", "/index/") {
				if _, err := os.Stat(ballast); err != nil {
					return nil
				}
			}
		default:
			return nil
		}
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	})
	return errorfs.Wrap(vfs.Default, &on), &on
}

// publishAllConfirmed publishes the bodies persistently in confirm mode and
// waits for every ack.
func publishAllConfirmed(t *testing.T, ch *amqp.Channel, exchange, key string, bodies ...string) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, body := range bodies {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("publish of %q not confirmed: %v", body, err)
		}
	}
}

// TestDiskFullPublishers drives a broker through a full disk at the wire:
// publishes while the disk is full are nacked (persistent and transient
// alike), a queue.declare fails with a channel error (406) and the
// connection stays usable, no nacked message is ever delivered, and
// publishing works again without a restart once space returns.
func TestDiskFullPublishers(t *testing.T) {
	dir := t.TempDir()
	fs, full := fullDisk(dir)
	b := startBrokerConfig(t, Config{DataDir: dir, FS: fs})
	conn, ch := b.channel()
	if _, err := ch.QueueDeclare("jobs", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10000))
	_, cch := b.channel()
	deliveries, err := cch.Consume("jobs", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	delivered := map[string]int{}
	go func() {
		for d := range deliveries {
			mu.Lock()
			delivered[string(d.Body)]++
			mu.Unlock()
			d.Ack(false)
		}
	}()
	bodies := map[uint64]string{}
	seq := uint64(0)
	send := func(n int, mode uint8) {
		for i := 0; i < n; i++ {
			seq++
			body := fmt.Sprintf("m-%d", seq)
			bodies[seq] = body
			if err := ch.PublishWithContext(context.Background(), "", "jobs", false, false,
				amqp.Publishing{DeliveryMode: mode, Body: []byte(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	acked, nacked := map[string]bool{}, map[string]bool{}
	got := 0
	// collect waits for confirms until n have arrived in all, or until
	// cond holds.
	collect := func(n int, cond func() bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for got < n && (cond == nil || !cond()) {
			select {
			case c := <-confirms:
				got++
				if c.Ack {
					acked[bodies[c.DeliveryTag]] = true
				} else {
					nacked[bodies[c.DeliveryTag]] = true
				}
			case <-timeout:
				t.Fatalf("%d of %d confirms", got, n)
			}
		}
	}
	send(300, amqp.Persistent)
	collect(300, nil)
	full.On()
	// Publishes accepted before the store noticed the full disk are
	// confirmed later (their records are kept in memory and written again
	// once there is room); those made while it fails are refused, and
	// nacked (after the earlier ones, as confirms go out in order).
	send(200, amqp.Persistent)
	send(100, amqp.Transient)
	deadline := time.Now().Add(5 * time.Second)
	for b.srv.Store().Failing() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if b.srv.Store().Failing() == nil {
		t.Fatal("the store did not notice the full disk")
	}
	send(100, amqp.Persistent)
	send(50, amqp.Transient)
	// A declare that needs the disk is a channel error, not a connection one.
	dch, _ := conn.Channel()
	_, err = dch.QueueDeclare("new", true, false, false, false, nil)
	wantAMQPError(t, err, amqp.PreconditionFailed, "")
	if !strings.Contains(err.Error(), "storage") {
		t.Fatalf("declare error does not say why: %v", err)
	}
	if conn.IsClosed() {
		t.Fatal("a failed declare closed the connection")
	}
	full.Off()
	deadline = time.Now().Add(10 * time.Second)
	for b.srv.Store().Failing() != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.srv.Store().Failing(); err != nil {
		t.Fatalf("still failing after space returned: %v", err)
	}
	collect(750, nil)
	// The 150 sent once the store failed are nacked: neither the released
	// ballast (before the log itself failed a write) nor a retry (which
	// fails again) lets a log take them. Of the 300 before, those that
	// reached the store after its first failed write are nacked too; the
	// rest are kept and confirmed once there is room.
	postNacked := 0
	for seq := uint64(601); seq <= 750; seq++ {
		if nacked[bodies[seq]] {
			postNacked++
		}
	}
	if postNacked != 150 || len(nacked) > 450 {
		t.Fatalf("%d publishes nacked, %d of the 150 made while the store failed", len(nacked), postNacked)
	}
	before := len(acked)
	send(300, amqp.Persistent)
	collect(1050, nil)
	if len(acked)-before != 300 {
		t.Fatalf("after space returned %d of 300 confirmed", len(acked)-before)
	}
	dch, _ = conn.Channel()
	if _, err := dch.QueueDeclare("new", true, false, false, false, nil); err != nil {
		t.Fatalf("declare after space returned: %v", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n >= len(acked) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for body := range delivered {
		if nacked[body] {
			t.Fatalf("%s was nacked and delivered", body)
		}
	}
	for body := range acked {
		if delivered[body] != 1 {
			t.Fatalf("%s confirmed, delivered %d times", body, delivered[body])
		}
	}
	t.Logf("%d confirmed and delivered, %d nacked while the disk was full (%d of the 150 made once it failed), none of them delivered", len(acked), len(nacked), postNacked)
}

// TestRestartOnFullDisk: a broker restarted while its disk is full comes
// up and serves: its queues are consumed, a declare fails with 406, and
// once space returns it writes again without a restart.
func TestRestartOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	_, ch := b.channel()
	if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		publishAllConfirmed(t, ch, "", "q", fmt.Sprint(i))
	}
	b.stop()
	fs, full := fullDisk(dir)
	full.On()
	b = startBrokerConfig(t, Config{DataDir: dir, FS: fs})
	conn, ch := b.channel()
	q, err := ch.QueueDeclarePassive("q", true, false, false, false, nil)
	if err != nil || q.Messages != 50 {
		t.Fatalf("queue on a full disk: %+v %v", q, err)
	}
	for i := 0; i < 50; i++ {
		if _, ok, err := ch.Get("q", true); !ok || err != nil {
			t.Fatalf("get %d on a full disk: %v %v", i, ok, err)
		}
	}
	dch, _ := conn.Channel()
	_, err = dch.QueueDeclare("other", true, false, false, false, nil)
	wantAMQPError(t, err, amqp.PreconditionFailed, "")
	full.Off()
	deadline := time.Now().Add(15 * time.Second)
	for b.srv.Store().Failing() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	dch, _ = conn.Channel()
	if _, err := dch.QueueDeclare("other", true, false, false, false, nil); err != nil {
		t.Fatalf("declare after space returned: %v", err)
	}
}

// TestIndexLossNeedsRepair: a data directory whose index was deleted makes
// the broker refuse to start, with an error naming --repair, and leaves
// every file in place; with Repair it rebuilds its definitions (queue,
// exchange, binding, user, permissions) from the journal and the segments,
// and every message comes back, flagged redelivered.
func TestIndexLossNeedsRepair(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	hash, _ := index.HashPassword(index.HashSHA256, "secret")
	if _, err := b.srv.PutUser(index.User{Name: "alice", PasswordHash: hash, HashAlgorithm: index.HashSHA256}); err != nil {
		t.Fatal(err)
	}
	_, ch := b.channel()
	if err := ch.ExchangeDeclare("orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("eu", true, false, false, false, amqp.Table{"x-max-length": int32(1000)}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("eu", "orders.eu.#", "orders", false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		publishAllConfirmed(t, ch, "orders", "orders.eu.new", fmt.Sprint(i))
	}
	b.stop()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{DataDir: dir, Logger: testLogger(t)})
	if !errors.Is(err, store.ErrNeedsRepair) || !strings.Contains(err.Error(), "--repair") {
		t.Fatalf("start without an index: %v", err)
	}
	b = startBrokerConfig(t, Config{DataDir: dir, Repair: true})
	if u := b.srv.lookupUser("alice"); u == nil {
		t.Fatal("user lost by the repair")
	}
	_, ch = b.channel()
	q, err := ch.QueueDeclarePassive("eu", true, false, false, false, amqp.Table{"x-max-length": int32(1000)})
	if err != nil || q.Messages != 20 {
		t.Fatalf("repaired queue: %+v %v", q, err)
	}
	publish(t, ch, "orders", "orders.eu.late", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("routed")})
	for i := 0; i <= 20; i++ {
		m, ok, err := ch.Get("eu", true)
		if !ok || err != nil {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		if i < 20 && !m.Redelivered {
			t.Fatalf("message %d not flagged redelivered after a repair", i)
		}
		if i == 20 && string(m.Body) != "routed" {
			t.Fatalf("binding not repaired: got %q", m.Body)
		}
	}
	// A normal start afterwards needs no repair.
	b = b.restart()
	_, ch = b.channel()
	if _, err := ch.QueueDeclarePassive("eu", true, false, false, false, amqp.Table{"x-max-length": int32(1000)}); err != nil {
		t.Fatal(err)
	}
}

// TestRepairFromSegmentsOnly loses both the index and the definitions
// journal: --repair rebuilds a classic, a priority and a quorum queue from
// the identities their segments record (a priority queue's levels are
// separate logs that name their queue), with every message, and the
// priority queue still delivers by priority.
func TestRepairFromSegmentsOnly(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	_, ch := b.channel()
	queues := []struct {
		name string
		args amqp.Table
	}{
		{"plain", nil},
		{"prio", amqp.Table{"x-max-priority": int32(5)}},
		{"quorum", amqp.Table{"x-queue-type": "quorum"}},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	for i := 0; i < 10; i++ {
		for _, q := range queues {
			publish(t, ch, "", q.name, amqp.Publishing{DeliveryMode: amqp.Persistent, Priority: uint8(i % 5),
				Body: []byte(fmt.Sprint(i))})
		}
	}
	for i := 0; i < 30; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatalf("publish %d nacked", i)
		}
	}
	b.stop()
	for _, p := range []string{"index", "definitions.journal"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(Config{DataDir: dir, Logger: testLogger(t)}); !errors.Is(err, store.ErrNeedsRepair) {
		t.Fatalf("start without index or journal: %v", err)
	}
	b = startBrokerConfig(t, Config{DataDir: dir, Repair: true})
	_, ch = b.channel()
	for _, q := range queues {
		got, err := ch.QueueDeclarePassive(q.name, true, false, false, false, q.args)
		if err != nil || got.Messages != 10 {
			t.Fatalf("repaired %s: %+v %v", q.name, got, err)
		}
	}
	prev := uint8(255)
	for i := 0; i < 10; i++ {
		m, ok, err := ch.Get("prio", true)
		if !ok || err != nil {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		if m.Priority > prev {
			t.Fatalf("priority %d delivered after %d", m.Priority, prev)
		}
		prev = m.Priority
	}
	b = b.restart()
	_, ch = b.channel()
	for _, q := range queues[:1] {
		if got, err := ch.QueueDeclarePassive(q.name, true, false, false, false, q.args); err != nil || got.Messages != 10 {
			t.Fatalf("after a restart, %s: %+v %v", q.name, got, err)
		}
	}
}

// TestBallastSetting: Config.BallastSize (warren --disk-ballast) reaches
// the store: by default the data directory holds the ballast, with -1 it
// holds none.
func TestBallastSetting(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want bool
	}{{0, true}, {-1, false}} {
		dir := t.TempDir()
		b := startBrokerConfig(t, Config{DataDir: dir, BallastSize: tc.size})
		_, err := os.Stat(filepath.Join(dir, "ballast"))
		b.stop()
		if got := err == nil; got != tc.want {
			t.Fatalf("BallastSize %d: ballast present %v, want %v (%v)", tc.size, got, tc.want, err)
		}
	}
}
