package main

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPolicyCommands sets, lists and clears policies and operator policies
// with rabbitmqctl's syntax and checks their effect on a queue over AMQP:
// the policy's max-length applies, the operator policy's lower one wins,
// and clearing them lifts the limits.
func TestPolicyCommands(t *testing.T) {
	w := startWarren(t)
	c := w.dial(t, "guest", "guest", "/")
	ch, _ := c.Channel()
	if _, err := ch.QueueDeclare("jobs.a", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ready := func() int {
		t.Helper()
		q, err := ch.QueueDeclarePassive("jobs.a", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return q.Messages
	}
	fill := func() {
		for i := 0; i < 10; i++ {
			ch.Publish("", "jobs.a", false, false, amqp.Publishing{Body: []byte("x")})
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := w.ok(t, "set_policy", "--priority", "1", "--apply-to", "queues", "limit", `^jobs\.`, `{"max-length":5}`)
	if !strings.Contains(out, `Setting policy "limit" for pattern "^jobs\." to "{"max-length":5}" with priority "1" for vhost "/" ...`) {
		t.Fatalf("set_policy said:\n%s", out)
	}
	fill()
	if n := ready(); n != 5 {
		t.Fatalf("%d messages under a max-length 5 policy", n)
	}
	out = w.ok(t, "-q", "list_policies")
	if out != "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tlimit\t^jobs\\.\tqueues\t[{\"max-length\",5}]\t1\n" {
		t.Fatalf("list_policies:\n%q", out)
	}
	w.ok(t, "set_operator_policy", "cap", ".*", `{"max-length":2}`)
	if n := ready(); n != 2 {
		t.Fatalf("%d messages with an operator policy of max-length 2", n)
	}
	if out := w.ok(t, "-q", "list_queues", "name", "policy"); !strings.Contains(out, "jobs.a\tlimit\n") {
		t.Fatalf("list_queues policy:\n%s", out)
	}
	if out := w.ok(t, "-q", "list_operator_policies"); !strings.Contains(out, "/\tcap\t.*\tall\t[{\"max-length\",2}]\t0\n") {
		t.Fatalf("list_operator_policies:\n%q", out)
	}
	if _, errs, code := w.ctl(t, "", "set_operator_policy", "bad", ".*", `{"dead-letter-exchange":"x"}`); code != 1 ||
		!strings.Contains(errs, "are not recognised policy settings") {
		t.Fatalf("operator policy with a key it may not set: %d %s", code, errs)
	}
	if _, errs, code := w.ctl(t, "", "set_policy", "bad", ".*", `{"message-ttl":"x"}`); code != 1 ||
		!strings.Contains(errs, `<<"x">> is not a valid message TTL`) {
		t.Fatalf("policy with a bad value: %d %s", code, errs)
	}
	w.ok(t, "clear_operator_policy", "cap")
	w.ok(t, "clear_policy", "limit")
	fill()
	if n := ready(); n != 12 {
		t.Fatalf("%d messages once the policies are cleared, want 12", n)
	}
	if _, _, code := w.ctl(t, "", "clear_policy", "limit"); code != 1 {
		t.Fatalf("clearing a missing policy: exit %d", code)
	}
}
