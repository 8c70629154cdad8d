package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/store"
)

// queueID returns the ID of a queue of vhost "/".
func (b *testBroker) queueID(name string) string {
	b.t.Helper()
	vh := b.srv.vhosts["/"]
	vh.mu.Lock()
	defer vh.mu.Unlock()
	q := vh.queues[name]
	if q == nil {
		b.t.Fatalf("no queue %q", name)
	}
	return q.id
}

// publishPersistent publishes n persistent messages of priority prio to
// queue name on a confirm channel, and checks each is confirmed.
func publishPersistent(t *testing.T, ch *amqp.Channel, name string, n int, prio uint8) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	msgs := make([]amqp.Publishing, n)
	for i := range msgs {
		msgs[i] = amqp.Publishing{DeliveryMode: amqp.Persistent, Priority: prio, Body: []byte{prio, byte(i)}}
	}
	for _, ok := range publishConfirmed(t, ch, "", name, msgs...) {
		if !ok {
			t.Fatal("nacked")
		}
	}
}

// dropDefinition deletes a queue's definition from the index behind the
// broker's back, as a crash between the two steps of a queue.delete leaves
// it (marked) or as damage or a bug would (not marked), then stops the
// broker without removing the log.
func (b *testBroker) dropDefinition(name string, mark bool) string {
	b.t.Helper()
	id := b.queueID(name)
	idx := b.srv.store.Index()
	if mark {
		batch := idx.NewDefsBatch()
		batch.DeleteQueue("/", name, id)
		if err := batch.Commit(); err != nil {
			b.t.Fatal(err)
		}
	} else if err := idx.DeleteQueue("/", name); err != nil {
		b.t.Fatal(err)
	}
	b.stop()
	return id
}

func logDirs(t *testing.T, dir, id string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "queues", id+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestInterruptedDeleteFinishesAtStart: a queue.delete cut off after its
// definition left the index (with its deletion mark) and before its log
// went is finished at the next start: the queue stays gone and its log is
// removed, for a plain queue and for a priority queue's level logs.
func TestInterruptedDeleteFinishesAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		args amqp.Table
	}{
		{"classic", nil},
		{"priority", amqp.Table{"x-max-priority": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := startBroker(t, dir)
			_, ch := b.channel()
			if _, err := ch.QueueDeclare("doomed", true, false, false, false, tc.args); err != nil {
				t.Fatal(err)
			}
			publishPersistent(t, ch, "doomed", 5, 1)
			publishPersistent(t, ch, "doomed", 5, 3)
			id := b.dropDefinition("doomed", true)
			if len(logDirs(t, dir, id)) == 0 {
				t.Fatal("the test wrote no log")
			}
			b = startBroker(t, dir)
			_, ch = b.channel()
			if _, err := ch.QueueDeclarePassive("doomed", true, false, false, false, nil); err == nil {
				t.Fatal("a deleted queue came back")
			}
			if d := logDirs(t, dir, id); len(d) != 0 {
				t.Fatalf("logs of the deleted queue still there: %v", d)
			}
			if marked, err := b.srv.store.Index().Deleting(id); err != nil || marked {
				t.Fatalf("deletion mark left: %v %v", marked, err)
			}
		})
	}
}

// TestUnaccountedLogRefusesStart: a queue log that holds messages but has
// neither a definition nor a deletion mark is never deleted. The broker
// refuses to start, naming the queue, the count and --repair; the repair
// puts the queue back under its name, with its messages in priority order
// for a priority queue.
func TestUnaccountedLogRefusesStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		args amqp.Table
		want []byte // priorities in delivery order
	}{
		{"classic", nil, []byte{1, 1, 1, 3, 3, 3}},
		{"priority", amqp.Table{"x-max-priority": 5}, []byte{3, 3, 3, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := startBroker(t, dir)
			_, ch := b.channel()
			if _, err := ch.QueueDeclare("orphan", true, false, false, false, tc.args); err != nil {
				t.Fatal(err)
			}
			publishPersistent(t, ch, "orphan", 3, 1)
			publishPersistent(t, ch, "orphan", 3, 3)
			id := b.dropDefinition("orphan", false)
			before := logDirs(t, dir, id)
			if len(before) == 0 {
				t.Fatal("the test wrote no log")
			}

			srv, err := New(Config{DataDir: dir, Logger: testLogger(t)})
			if err == nil {
				srv.Shutdown(t.Context())
				t.Fatal("started with a queue log the index does not account for")
			}
			if !errors.Is(err, store.ErrNeedsRepair) || !strings.Contains(err.Error(), "'orphan'") ||
				!strings.Contains(err.Error(), "6 messages") || !strings.Contains(err.Error(), "--repair") {
				t.Fatalf("error %q: want ErrNeedsRepair naming the queue, its 6 messages and --repair", err)
			}
			for _, d := range before {
				if _, err := os.Stat(d); err != nil {
					t.Fatalf("a refused start touched the log: %v", err)
				}
			}

			b = startBrokerConfig(t, Config{DataDir: dir, Repair: true})
			_, ch = b.channel()
			q, err := ch.QueueDeclarePassive("orphan", true, false, false, false, nil)
			if err != nil || q.Messages != 6 {
				t.Fatalf("after the repair: %+v %v, want the queue with 6 messages", q, err)
			}
			if got := b.queueID("orphan"); got != id {
				t.Fatalf("repaired queue has ID %s, want %s", got, id)
			}
			ds, err := ch.Consume("orphan", "", true, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, d := range recvN(t, ds, 6) {
				got = append(got, d.Priority)
			}
			if string(got) != string(tc.want) {
				t.Fatalf("priorities delivered %v, want %v", got, tc.want)
			}

			// The repair is durable: a plain start finds the queue.
			b.stop()
			b = startBroker(t, dir)
			_, ch = b.channel()
			if _, err := ch.QueueDeclarePassive("orphan", true, false, false, false, nil); err != nil {
				t.Fatalf("after the repair and a restart: %v", err)
			}
		})
	}
}

// TestDeleteClearsMark: a completed queue.delete leaves no deletion mark
// behind, for a plain queue and for a priority queue (whose mark is keyed
// by an ID no log has).
func TestDeleteClearsMark(t *testing.T) {
	b := startBroker(t, t.TempDir())
	_, ch := b.channel()
	for _, args := range []amqp.Table{nil, {"x-max-priority": 3}} {
		if _, err := ch.QueueDeclare("short-lived", true, false, false, false, args); err != nil {
			t.Fatal(err)
		}
		publishPersistent(t, ch, "short-lived", 2, 2)
		id := b.queueID("short-lived")
		if n, err := ch.QueueDelete("short-lived", false, false, false); err != nil || n != 2 {
			t.Fatalf("delete: %d %v", n, err)
		}
		if marked, err := b.srv.store.Index().Deleting(id); err != nil || marked {
			t.Fatalf("args %v: deletion mark left after the delete: %v %v", args, marked, err)
		}
	}
}

// TestFailedVHostDeleteKeepsIt: a vhost delete that fails on storage
// leaves the vhost served, with its permissions and its queue's messages,
// and restarts cleanly; a later delete succeeds. A queue the index still
// defines when the vhost's definitions go (one declared while its
// connections were closing) is marked, so the next start removes its log
// instead of refusing to start.
func TestFailedVHostDeleteKeepsIt(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	if _, err := b.srv.PutVHost(index.VHost{Name: "v"}, "guest"); err != nil {
		t.Fatal(err)
	}
	vurl := strings.TrimSuffix(b.url, "/") + "/v"
	dialV := func() *amqp.Channel {
		t.Helper()
		c, err := amqp.Dial(vurl)
		if err != nil {
			t.Fatalf("dial vhost v: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	ch := dialV()
	for _, q := range []string{"kept", "late"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		publishPersistent(t, ch, q, 4, 0)
	}

	b.srv.Store().Index().FailDefinitionWritesForTesting(errors.New("injected I/O error"))
	if err := b.srv.DeleteVHost("v"); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("DeleteVHost with failing writes: %v", err)
	}
	b.srv.Store().Index().FailDefinitionWritesForTesting(nil)
	ch = dialV() // served again, guest's permission back
	if q, err := ch.QueueDeclarePassive("kept", true, false, false, false, nil); err != nil || q.Messages != 4 {
		t.Fatalf("after the failed delete: %+v %v", q, err)
	}
	if _, err := ch.QueueDeclare("after", true, false, false, false, nil); err != nil {
		t.Fatalf("declare in the vhost kept: %v", err)
	}
	// While its definitions leave the index, nothing is declared in it.
	vh := b.srv.vhosts["v"]
	vh.mu.Lock()
	vh.deleted = true
	vh.mu.Unlock()
	_, err := ch.QueueDeclare("racing", true, false, false, false, nil)
	wantAMQPError(t, err, amqp.NotFound, "NOT_FOUND - vhost 'v' is being deleted")
	vh.mu.Lock()
	vh.deleted = false
	vh.mu.Unlock()

	// "late" is left in the index as a racing declaration would leave it
	// after the broker's own deletes: the vhost's removal marks it.
	vh.mu.Lock()
	lateID, keptID := vh.queues["late"].id, vh.queues["kept"].id
	vh.mu.Unlock()
	batch := b.srv.Store().Index().NewDefsBatch()
	batch.DeleteQueue("v", "kept", keptID)
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Store().Index().DeleteVHost("v"); err != nil {
		t.Fatal(err)
	}
	b.stop()
	b = startBroker(t, dir) // starts: both logs are accounted for
	if d := logDirs(t, dir, lateID); len(d) != 0 {
		t.Fatalf("the log of the vhost's last queue is still there: %v", d)
	}
	if _, err := amqp.Dial(vurl); err == nil {
		t.Fatal("the deleted vhost is served")
	}
}
