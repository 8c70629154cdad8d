package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitMQ returns the AMQP and HTTP API URLs of a real RabbitMQ for the
// migration tests (WARREN_TEST_RABBITMQ_URL, WARREN_TEST_RABBITMQ_API; see
// .ci/rabbitmq.sh). Without them the test skips, unless
// WARREN_TEST_RABBITMQ_REQUIRED is set (CI), where it fails.
func rabbitMQ(t *testing.T) (amqpURL, apiURL string) {
	t.Helper()
	amqpURL, apiURL = os.Getenv("WARREN_TEST_RABBITMQ_URL"), os.Getenv("WARREN_TEST_RABBITMQ_API")
	fail := t.Skipf
	if os.Getenv("WARREN_TEST_RABBITMQ_REQUIRED") != "" {
		fail = t.Fatalf
	}
	if amqpURL == "" || apiURL == "" {
		fail("no RabbitMQ to migrate from: set WARREN_TEST_RABBITMQ_URL and WARREN_TEST_RABBITMQ_API (bash .ci/rabbitmq.sh start prints them)")
		return
	}
	c, err := amqp.Dial(amqpURL)
	if err != nil {
		fail("RabbitMQ at %s not reachable: %v", amqpURL, err)
		return
	}
	c.Close()
	return amqpURL, apiURL
}

// rmqAPI calls RabbitMQ's management API as the URL's user.
func rmqAPI(t *testing.T, amqpURL, apiURL, method, path, body string) {
	t.Helper()
	u, _ := url.Parse(amqpURL)
	pass, _ := u.User.Password()
	req, _ := http.NewRequest(method, apiURL+path, strings.NewReader(body))
	req.SetBasicAuth(u.User.Username(), pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("RabbitMQ %s %s: %d", method, path, resp.StatusCode)
	}
}

func withVHost(amqpURL, vhost string) string {
	u, _ := url.Parse(amqpURL)
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String()
}

// TestMigrateFromRabbitMQ moves a queue with its topology from a real
// RabbitMQ into Warren, interrupting the first run with SIGKILL: after the
// rerun every message is in Warren, properties and headers intact, the
// source queue is empty, and the only duplicates are messages the source
// had delivered before, which carry RedeliveredHeader.
func TestMigrateFromRabbitMQ(t *testing.T) {
	srcURL, srcAPI := rabbitMQ(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	vhost := "migrate-" + hex.EncodeToString(rnd[:])
	rmqAPI(t, srcURL, srcAPI, "PUT", "/api/vhosts/"+vhost, "{}")
	t.Cleanup(func() { rmqAPI(t, srcURL, srcAPI, "DELETE", "/api/vhosts/"+vhost, "") })
	u, _ := url.Parse(srcURL)
	rmqAPI(t, srcURL, srcAPI, "PUT", "/api/permissions/"+vhost+"/"+u.User.Username(), `{"configure":".*","write":".*","read":".*"}`)

	// The source: a topic exchange bound to a queue with arguments, and
	// messages with every kind of property.
	src, err := amqp.Dial(withVHost(srcURL, vhost))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ch, _ := src.Channel()
	if err := ch.ExchangeDeclare("orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("jobs", true, false, false, false, amqp.Table{"x-max-length": int32(1000000),
		"x-dead-letter-exchange": "orders"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("other", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.QueueBind("jobs", "order.#", "orders", false, nil)
	ch.Confirm(false)
	const n = 3000
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n+10))
	ts := time.Unix(1700000000, 0)
	for i := 0; i < n; i++ {
		err := ch.PublishWithContext(context.Background(), "orders", "order.new", false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: fmt.Sprintf("id-%d", i),
			Priority: 3, Timestamp: ts, Headers: amqp.Table{"n": int32(i), "s": "text", "nested": amqp.Table{"k": true}},
			Body: []byte(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	ch.PublishWithContext(context.Background(), "", "other", false, false, amqp.Publishing{Body: []byte("not moved")})
	for i := 0; i < n+1; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatal("source nacked")
		}
	}
	// Ten messages the source has delivered before: they come back flagged
	// redelivered.
	rch, _ := src.Channel()
	rch.Qos(10, 0, false)
	ds, _ := rch.Consume("jobs", "", false, false, false, false, nil)
	for i := 0; i < 10; i++ {
		<-ds
	}
	rch.Close()

	w := startWarren(t)
	args := []string{"migrate", "--from", withVHost(srcURL, vhost), "--from-api", srcAPI, "--vhost", vhost,
		"--queues", "^jobs$", "--to", "amqp://guest:guest@" + w.amqpAddr + "/", "--prefetch", "20"}

	// First run, killed once part of the queue has moved.
	cmd := exec.Command(bin, append([]string{"--url", w.apiURL}, args...)...)
	var out1 bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out1, &out1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		q, err := w.srv.Queue(vhost, "jobs")
		if err == nil && q.Ready >= n/5 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("first run moved nothing in time:\n%s", out1.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	q, _ := w.srv.Queue(vhost, "jobs")
	if q.Ready >= n {
		t.Fatalf("the first run was not interrupted (%d moved); make the test slower", q.Ready)
	}
	t.Logf("interrupted after %d messages", q.Ready)

	// Rerun to the end.
	out, errs, code := w.ctl(t, "", args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, vhost+"\tjobs\t") {
		t.Fatalf("no final count for jobs:\n%s\n%s", out, errs)
	}

	// The source queue is empty, the other queue untouched.
	sch, _ := src.Channel()
	if qi, err := sch.QueueDeclarePassive("jobs", true, false, false, false, nil); err != nil || qi.Messages != 0 {
		t.Fatalf("source jobs after migrate: %+v %v", qi, err)
	}
	if qi, err := sch.QueueDeclarePassive("other", true, false, false, false, nil); err != nil || qi.Messages != 1 {
		t.Fatalf("source other: %+v %v", qi, err)
	}
	// Warren has the topology and every message.
	wc := w.dial(t, "guest", "guest", vhost)
	wch, _ := wc.Channel()
	if err := wch.ExchangeDeclarePassive("orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("exchange not migrated: %v", err)
	}
	wch, _ = wc.Channel()
	msgs, err := wch.Consume("jobs", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	total, flagged := 0, 0
	for len(seen) < n {
		select {
		case d := <-msgs:
			total++
			seen[string(d.Body)]++
			if d.Headers[RedeliveredHeader] == true {
				flagged++
			} else if seen[string(d.Body)] > 1 {
				t.Fatalf("duplicate %s without %s", d.Body, RedeliveredHeader)
			}
			i := d.Headers["n"].(int32)
			if string(d.Body) != fmt.Sprintf(`{"n":%d}`, i) || d.ContentType != "application/json" || d.MessageId != fmt.Sprintf("id-%d", i) ||
				d.Priority != 3 || !d.Timestamp.Equal(ts) || d.DeliveryMode != 2 || d.Headers["s"] != "text" ||
				d.Headers["nested"].(amqp.Table)["k"] != true {
				t.Fatalf("message not preserved: %+v", d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Warren has %d of %d messages", len(seen), n)
		}
	}
	// Nothing more.
	select {
	case d := <-msgs:
		total++
		if d.Headers[RedeliveredHeader] != true {
			t.Fatalf("extra message %s without %s", d.Body, RedeliveredHeader)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if flagged < 10 {
		t.Fatalf("only %d messages carry %s; the source had redelivered at least 10", flagged, RedeliveredHeader)
	}
	t.Logf("%d messages moved, %d distinct, %d flagged redelivered", total, len(seen), flagged)
}

// TestMigrateNeedsItsSource: a source that cannot be reached is a clear
// error, not a hang.
func TestMigrateNeedsItsSource(t *testing.T) {
	w := startWarren(t)
	_, errs, code := w.ctl(t, "", "migrate", "--from", "amqp://guest:guest@127.0.0.1:1/", "--from-api", "http://127.0.0.1:1")
	if code != 69 || !strings.Contains(errs, "reading the source's definitions") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, errs, code := w.ctl(t, "", "migrate"); code != 64 || !strings.Contains(errs, "--from") {
		t.Fatalf("without --from: %d %s", code, errs)
	}
}

// TestSettlerNeverAcksReturned feeds the settler what the client library
// hands over when Warren cannot route a publish: the return, then the
// positive confirm of the same message. The source must see a requeue for
// it and for everything after it, and acks only for what came before.
func TestSettlerNeverAcksReturned(t *testing.T) {
	var mu sync.Mutex
	var acked, nacked []uint64
	st := &settler{
		ack:  func(tag uint64) error { mu.Lock(); acked = append(acked, tag); mu.Unlock(); return nil },
		nack: func(tag uint64) { mu.Lock(); nacked = append(nacked, tag); mu.Unlock() },
		errs: make(chan error, 1),
	}
	for tag := uint64(101); tag <= 106; tag++ { // source tags of Warren publishes 1..6
		st.published(tag)
	}
	confirms := make(chan amqp.Confirmation, 8)
	returns := make(chan amqp.Return, 8)
	done := make(chan struct{})
	go func() { st.run(confirms, returns); close(done) }()
	confirms <- amqp.Confirmation{DeliveryTag: 1, Ack: true}
	confirms <- amqp.Confirmation{DeliveryTag: 2, Ack: true}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		st.mu.Lock()
		n := st.confirmed
		st.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first two confirms were not settled")
		}
	}
	// Publish 4 is returned; returns run ahead of confirms, so 3 may be
	// fine or not: it is requeued too.
	returns <- amqp.Return{RoutingKey: "gone", ReplyCode: 312, ReplyText: "NO_ROUTE"}
	for tag := uint64(3); tag <= 6; tag++ {
		confirms <- amqp.Confirmation{DeliveryTag: tag, Ack: true}
	}
	close(confirms)
	<-done
	if fmt.Sprint(acked) != "[101 102]" || fmt.Sprint(nacked) != "[103 104 105 106]" {
		t.Fatalf("acked %v, requeued %v: want 101, 102 acked and the rest requeued", acked, nacked)
	}
	select {
	case err := <-st.errs:
		if !strings.Contains(err.Error(), "no queue 'gone'") {
			t.Fatalf("error %v", err)
		}
	default:
		t.Fatal("no error reported for the return")
	}
	if st.confirmed != 2 {
		t.Fatalf("confirmed %d, want 2", st.confirmed)
	}
}

// The return and the confirm of one message can both be pending when the
// settler wakes: it must see the return first whichever it picks.
func TestSettlerReturnAndConfirmPendingTogether(t *testing.T) {
	for round := 0; round < 200; round++ {
		var acked int
		st := &settler{ack: func(uint64) error { acked++; return nil }, nack: func(uint64) {}, errs: make(chan error, 1)}
		st.published(7)
		confirms := make(chan amqp.Confirmation, 1)
		returns := make(chan amqp.Return, 1)
		returns <- amqp.Return{RoutingKey: "gone"}
		confirms <- amqp.Confirmation{DeliveryTag: 1, Ack: true}
		close(confirms)
		st.run(confirms, returns)
		if acked != 0 {
			t.Fatalf("round %d: the returned message was acked at the source", round)
		}
	}
}
