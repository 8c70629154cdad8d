package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/admin"
	"github.com/warrenmq/warren/broker"
)

// bin is the warrenctl binary built for the tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "warrenctl-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "warrenctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// warren is a broker with its HTTP API, started in-process.
type warren struct {
	srv      *broker.Server
	amqpAddr string
	apiURL   string
}

func startWarren(t *testing.T) *warren {
	t.Helper()
	srv, err := broker.New(broker.Config{DataDir: t.TempDir(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := admin.New(admin.Config{Broker: srv, Logger: zerolog.Nop()})
	go api.Serve(hln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.Shutdown(ctx)
		srv.Shutdown(ctx)
	})
	return &warren{srv: srv, amqpAddr: ln.Addr().String(), apiURL: "http://" + hln.Addr().String()}
}

// ctl runs the built warrenctl against w and returns stdout, stderr and the
// exit code.
func (w *warren) ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--url", w.apiURL}, args...)...)
	cmd.Env = append(os.Environ(), "WARREN_URL=", "WARREN_USERNAME=", "WARREN_PASSWORD=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its output.
func (w *warren) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := w.ctl(t, "", args...)
	if code != 0 {
		t.Fatalf("warrenctl %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func (w *warren) dial(t *testing.T, user, pass, vhost string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial("amqp://" + user + ":" + pass + "@" + w.amqpAddr + "/" + strings.ReplaceAll(vhost, "/", "%2F"))
	if err != nil {
		t.Fatalf("dial %s@%s: %v", user, vhost, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestOperatorHabits runs the seed tutorials' rabbitmqctl habits against a
// running Warren.
func TestOperatorHabits(t *testing.T) {
	w := startWarren(t)
	w.ok(t, "add_vhost", "shop")
	w.ok(t, "add_user", "bob", "s3cret")
	w.ok(t, "set_user_tags", "bob", "management")
	w.ok(t, "set_permissions", "-p", "shop", "bob", ".*", ".*", ".*")
	if _, errs, code := w.ctl(t, "", "add_user", "bob", "again"); code != 1 || !strings.Contains(errs, "already exists") {
		t.Fatalf("add_user twice: %d %s", code, errs)
	}

	c := w.dial(t, "bob", "s3cret", "shop")
	ch, _ := c.Channel()
	ch.QueueDeclare("jobs", true, false, false, false, amqp.Table{"x-message-ttl": int32(60000)})
	ch.ExchangeDeclare("events", "topic", true, false, false, false, nil)
	ch.QueueBind("jobs", "job.*", "events", false, nil)
	for i := 0; i < 3; i++ {
		ch.Publish("", "jobs", false, false, amqp.Publishing{Body: []byte("x")})
	}
	ch.Qos(1, 0, false)
	ds, _ := ch.Consume("jobs", "worker-1", false, false, false, false, nil)
	<-ds // one unacked

	time.Sleep(100 * time.Millisecond)
	out := w.ok(t, "list_queues", "-p", "shop", "name", "messages_ready", "messages_unacknowledged")
	if !strings.Contains(out, "Listing queues for vhost shop ...\nname\tmessages_ready\tmessages_unacknowledged\njobs\t2\t1\n") {
		t.Fatalf("list_queues:\n%s", out)
	}
	out = w.ok(t, "-q", "list_queues", "-p", "shop")
	if out != "name\tmessages\njobs\t3\n" {
		t.Fatalf("list_queues -q:\n%q", out)
	}
	out = w.ok(t, "-s", "list_queues", "-p", "shop", "name", "arguments")
	if out != "jobs\t[{\"x-message-ttl\",60000}]\n" {
		t.Fatalf("list_queues -s:\n%q", out)
	}
	out = w.ok(t, "-q", "list_exchanges", "-p", "shop", "name", "type")
	if !strings.Contains(out, "events\ttopic\n") || !strings.Contains(out, "amq.topic\ttopic\n") {
		t.Fatalf("list_exchanges:\n%s", out)
	}
	out = w.ok(t, "-q", "list_bindings", "-p", "shop")
	if !strings.Contains(out, "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n") ||
		!strings.Contains(out, "events\texchange\tjobs\tqueue\tjob.*\t[]\n") || !strings.Contains(out, "\texchange\tjobs\tqueue\tjobs\t[]\n") {
		t.Fatalf("list_bindings:\n%s", out)
	}
	out = w.ok(t, "-q", "list_consumers", "-p", "shop", "queue_name", "consumer_tag", "ack_required", "prefetch_count")
	if out != "queue_name\tconsumer_tag\tack_required\tprefetch_count\njobs\tworker-1\ttrue\t1\n" {
		t.Fatalf("list_consumers:\n%q", out)
	}
	out = w.ok(t, "-q", "list_connections", "user", "vhost", "peer_host", "state")
	if out != "user\tvhost\tpeer_host\tstate\nbob\tshop\t127.0.0.1\trunning\n" {
		t.Fatalf("list_connections:\n%q", out)
	}
	out = w.ok(t, "-q", "list_channels", "user", "consumer_count", "messages_unacknowledged", "prefetch_count")
	if out != "user\tconsumer_count\tmessages_unacknowledged\tprefetch_count\nbob\t1\t1\t1\n" {
		t.Fatalf("list_channels:\n%q", out)
	}
	out = w.ok(t, "-q", "list_vhosts")
	if out != "name\n/\nshop\n" {
		t.Fatalf("list_vhosts:\n%q", out)
	}
	out = w.ok(t, "-q", "list_users")
	if out != "user\ttags\nbob\t[management]\nguest\t[administrator]\n" {
		t.Fatalf("list_users:\n%q", out)
	}
	out = w.ok(t, "-q", "list_permissions", "-p", "shop")
	if out != "user\tconfigure\twrite\tread\nbob\t.*\t.*\t.*\nguest\t.*\t.*\t.*\n" {
		t.Fatalf("list_permissions:\n%q", out)
	}
	out = w.ok(t, "-q", "list_user_permissions", "bob")
	if out != "vhost\tconfigure\twrite\tread\nshop\t.*\t.*\t.*\n" {
		t.Fatalf("list_user_permissions:\n%q", out)
	}
	var rows []map[string]any
	out = w.ok(t, "--formatter", "json", "list_queues", "-p", "shop", "name", "messages", "durable")
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0]["name"] != "jobs" ||
		rows[0]["messages"] != 3.0 || rows[0]["durable"] != true {
		t.Fatalf("json: %v %s", err, out)
	}
	if out := w.ok(t, "status"); !strings.Contains(out, "Product name: Warren") || !strings.Contains(out, "Queue count: 1") ||
		!strings.Contains(out, "Alarms\n\n(none)") {
		t.Fatalf("status:\n%s", out)
	}
	// The memory alarm, as the amqp091-go suite drives it through
	// RABBITMQ_RABBITMQCTL_PATH.
	w.ok(t, "set_vm_memory_high_watermark", "absolute", "1000")
	if out := w.ok(t, "status"); !strings.Contains(out, "memory alarm on node") {
		t.Fatalf("status under the memory alarm:\n%s", out)
	}
	w.ok(t, "set_vm_memory_high_watermark", "0.4")
	w.ok(t, "set_disk_free_limit", "50MB")

	// Definitions out and back in.
	file := filepath.Join(t.TempDir(), "defs.json")
	w.ok(t, "export_definitions", file)
	w2 := startWarren(t)
	w2.ok(t, "import_definitions", file)
	if out := w2.ok(t, "-q", "list_queues", "-p", "shop", "name", "arguments"); out != "name\targuments\njobs\t[{\"x-message-ttl\",60000}]\n" {
		t.Fatalf("imported queues:\n%q", out)
	}
	w2.dial(t, "bob", "s3cret", "shop") // bob's hash came along
	raw, _ := os.ReadFile(file)
	if _, errs, code := w2.ctl(t, string(raw), "import_definitions", "-"); code != 0 {
		t.Fatalf("import from stdin: %d %s", code, errs)
	}

	// Changing things.
	w.ok(t, "change_password", "bob", "n3w")
	if _, err := amqp.Dial("amqp://bob:s3cret@" + w.amqpAddr + "/shop"); err == nil {
		t.Fatal("old password still works")
	}
	w.dial(t, "bob", "n3w", "shop")
	if out := w.ok(t, "-q", "list_users"); !strings.Contains(out, "bob\t[management]") {
		t.Fatalf("tags lost by change_password:\n%s", out)
	}
	w.ok(t, "purge_queue", "-p", "shop", "jobs")
	if out := w.ok(t, "-s", "list_queues", "-p", "shop", "messages_ready"); out != "0\n" {
		t.Fatalf("after purge: %q", out)
	}
	if _, errs, code := w.ctl(t, "", "delete_queue", "-p", "shop", "jobs", "--if-unused"); code != 1 || !strings.Contains(errs, "in use") {
		t.Fatalf("delete_queue --if-unused: %d %s", code, errs)
	}
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	// c is the oldest connection, listed first.
	name := strings.Split(w.ok(t, "-s", "list_connections", "name"), "\n")[0]
	w.ok(t, "close_connection", name, "maintenance")
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - maintenance" {
			t.Fatalf("close: %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
	w.ok(t, "delete_queue", "-p", "shop", "jobs")
	w.ok(t, "clear_permissions", "-p", "shop", "bob")
	if _, err := amqp.Dial("amqp://bob:n3w@" + w.amqpAddr + "/shop"); err == nil {
		t.Fatal("bob still opens shop")
	}
	w.ok(t, "delete_user", "bob")
	w.ok(t, "delete_vhost", "shop")
	if out := w.ok(t, "-q", "list_vhosts"); out != "name\n/\n" {
		t.Fatalf("vhosts after delete: %q", out)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	w := startWarren(t)
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"no_such_command"}, 64, "command 'no_such_command' not found"},
		{[]string{"list_queues", "nonsense"}, 64, "Info key(s) nonsense are not supported"},
		{[]string{"add_user", "onlyname"}, 64, "add_user takes two arguments"},
		{[]string{"delete_queue", "missing"}, 1, "NOT_FOUND - no queue 'missing' in vhost '/'"},
		{[]string{"delete_vhost", "missing"}, 1, "no vhost 'missing'"},
		{[]string{"--password", "wrong", "list_queues"}, 77, "authentication as 'guest' refused"},
		{[]string{"--url", "http://127.0.0.1:1", "list_queues"}, 69, "unable to reach the management API"},
		{[]string{"set_vm_memory_high_watermark", "lots"}, 1, "lots"},
		{[]string{"--formatter", "xml", "list_queues"}, 64, "unknown formatter"},
		{[]string{"--url", "http://127.0.0.1:1", "await_startup", "--timeout", "1"}, 69, "did not start within 1s"},
		{[]string{"--url", "http://127.0.0.1:1", "-t", "1", "await_startup"}, 69, "did not start within 1s"},
		{[]string{"--vhost", "missing", "list_queues"}, 1, "Not Found"},
	} {
		start := time.Now()
		out, errs, code := w.ctl(t, "", c.args...)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("warrenctl %v took %v", c.args, d)
		}
		if code != c.code || !strings.Contains(errs, c.err) {
			t.Errorf("warrenctl %v: exit %d (want %d)\nstdout: %s\nstderr: %s", c.args, code, c.code, out, errs)
		}
	}
	// A bare warrenctl (no flags) talks to 127.0.0.1:15672 as guest; the
	// environment variables move it.
	cmd := exec.Command(bin, "-q", "list_vhosts")
	cmd.Env = append(os.Environ(), "WARREN_URL="+w.apiURL, "WARREN_USERNAME=guest", "WARREN_PASSWORD=guest")
	out, err := cmd.Output()
	if err != nil || string(out) != "name\n/\n" {
		t.Fatalf("with WARREN_URL: %v %q", err, out)
	}
}
