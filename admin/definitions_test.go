package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const fixture = "../../shared/fixtures/rabbitmq-3.10-definitions.json"

func readFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(fixture)
	if err != nil {
		t.Skipf("RabbitMQ export fixture not found beside the checkout (%v)", err)
	}
	return b
}

// canonical reduces a definitions document to sorted, comparable rows.
func canonical(t *testing.T, raw []byte) map[string][]string {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	row := func(kind string, m map[string]any, keys ...string) {
		var parts []string
		for _, k := range keys {
			v := m[k]
			if k == "tags" {
				v = strings.Join(tagList(v), ",")
			}
			if k == "internal" && v == nil {
				v = false // RabbitMQ 3.10 leaves it out
			}
			js, _ := json.Marshal(v)
			parts = append(parts, k+"="+string(js))
		}
		out[kind] = append(out[kind], strings.Join(parts, " "))
	}
	each := func(kind string, keys ...string) {
		list, _ := d[kind].([]any)
		for _, x := range list {
			row(kind, x.(map[string]any), keys...)
		}
		sort.Strings(out[kind])
	}
	each("users", "name", "password_hash", "hashing_algorithm", "tags")
	each("vhosts", "name")
	each("permissions", "user", "vhost", "configure", "write", "read")
	each("policies", "vhost", "name", "pattern", "apply-to", "definition", "priority")
	each("queues", "vhost", "name", "durable", "auto_delete", "arguments")
	each("exchanges", "vhost", "name", "type", "durable", "auto_delete", "internal", "arguments")
	each("bindings", "vhost", "source", "destination", "destination_type", "routing_key", "arguments")
	return out
}

// TestImportRabbitMQExport imports a real RabbitMQ 3.10 export: its users
// log in with their passwords over AMQP and HTTP, its topology works, and
// exporting gives back the same definitions.
func TestImportRabbitMQExport(t *testing.T) {
	raw := readFixture(t)
	e := start(t)
	e.do("POST", "/api/definitions", string(raw), 204)

	// Logins, over HTTP and AMQP.
	if code, body := e.call("GET", "/api/whoami", "alice", "wonderland", nil); code != 200 || !strings.Contains(string(body), `"management"`) {
		t.Fatalf("alice over HTTP: %d %s", code, body)
	}
	if code, _ := e.call("GET", "/api/whoami", "alice", "wrong", nil); code != 401 {
		t.Fatalf("alice with a wrong password: %d", code)
	}
	if code, _ := e.call("GET", "/api/whoami", "guest", "guest", nil); code != 200 {
		t.Fatalf("guest over HTTP: %d", code)
	}
	ac, err := e.dialVHost("alice", "wonderland", "shop")
	if err != nil {
		t.Fatalf("alice over AMQP: %v", err)
	}
	defer ac.Close()
	gc, err := e.dialVHost("guest", "guest", "shop")
	if err != nil {
		t.Fatalf("guest over AMQP: %v", err)
	}
	defer gc.Close()
	// alice may configure ^orders\..* only.
	ach := channel(t, ac)
	if _, err := ach.QueueDeclare("orders.mine", true, false, false, false, nil); err != nil {
		t.Fatalf("alice declares orders.mine: %v", err)
	}
	if _, err := ach.QueueDeclare("audit2", true, false, false, false, nil); err == nil {
		t.Fatal("alice declared audit2")
	}
	ach.Close()
	// The imported topology routes: orders (topic) -> orders.created; the
	// alternate exchange orders.unrouted -> orders.lost.
	gch := channel(t, gc)
	gch.Confirm(false)
	confirms := gch.NotifyPublish(make(chan amqp.Confirmation, 2))
	gch.Publish("orders", "order.created.eu", false, false, amqp.Publishing{Body: []byte("o1")})
	gch.Publish("orders.unrouted", "", false, false, amqp.Publishing{Body: []byte("o2")})
	<-confirms
	<-confirms
	for q, want := range map[string]int{"orders.created": 1, "orders.lost": 1} {
		qi, err := gch.QueueDeclarePassive(q, true, false, false, false, amqp.Table{})
		if err != nil || qi.Messages != want {
			t.Fatalf("%s: %+v %v", q, qi, err)
		}
	}
	// The exchange-to-exchange binding and the headers binding: orders ->
	// events (headers, x-match any on source=web) -> audit.
	gch.Publish("orders", "x", false, false, amqp.Publishing{Headers: amqp.Table{"source": "web"}, Body: []byte("o3")})
	waitFor(t, "audit gets o3", func() bool {
		qi, err := gch.QueueDeclarePassive("audit", true, false, false, false, nil)
		return err == nil && qi.Messages == 1
	})
	ach = channel(t, ac)
	ach.QueueDelete("orders.mine", false, false, false)

	// Export and compare with the fixture.
	exported := e.do("GET", "/api/definitions", nil, 200)
	want, got := canonical(t, raw), canonical(t, exported)
	for kind := range want {
		if !reflect.DeepEqual(want[kind], got[kind]) {
			t.Errorf("%s differ:\nfixture:  %v\nexported: %v", kind, want[kind], got[kind])
		}
	}
	var policies []map[string]any
	e.get("/api/policies/shop", &policies)
	if len(policies) != 1 || policies[0]["name"] != "ttl-audit" {
		t.Fatalf("policies: %v", policies)
	}
	// The policy applies: audit (and only audit) shows it, with its TTL.
	checkPolicyApplied(t, e)

	// Everything survives a restart.
	dir := t.TempDir()
	e3 := startIn(t, dir)
	e3.do("POST", "/api/definitions", string(exported), 204)
	e3.stop()
	e3 = startIn(t, dir)
	// Only durable objects survive a restart, as in RabbitMQ.
	w := canonical(t, exported)
	for kind, rows := range w {
		var keep []string
		for _, r := range rows {
			if !strings.Contains(r, "durable=false") {
				keep = append(keep, r)
			}
		}
		w[kind] = keep
	}
	if g := canonical(t, e3.do("GET", "/api/definitions", nil, 200)); !reflect.DeepEqual(w, g) {
		t.Fatalf("definitions changed across a restart:\n%v\n%v", w, g)
	}
	if code, _ := e3.call("GET", "/api/whoami", "alice", "wonderland", nil); code != 200 {
		t.Fatalf("alice after restart: %d", code)
	}
	checkPolicyApplied(t, e3)
	e3.stop()

	// Re-import the export into a fresh broker: the same definitions again.
	e2 := start(t)
	e2.do("POST", "/api/definitions", string(exported), 204)
	again := e2.do("GET", "/api/definitions", nil, 200)
	if w, g := canonical(t, exported), canonical(t, again); !reflect.DeepEqual(w, g) {
		t.Fatalf("re-import changed the definitions:\n%v\n%v", w, g)
	}
	// Importing twice is harmless.
	e2.do("POST", "/api/definitions", string(exported), 204)
	if code, _ := e2.call("GET", "/api/whoami", "alice", "wonderland", nil); code != 200 {
		t.Fatalf("alice after re-import: %d", code)
	}
}

// checkPolicyApplied checks that the fixture's ttl-audit policy applies to
// the audit queue of shop and to no other queue, as RabbitMQ shows it.
func checkPolicyApplied(t *testing.T, e *env) {
	t.Helper()
	var qs []map[string]any
	e.get("/api/queues/shop", &qs)
	seen := false
	for _, q := range qs {
		if q["name"] == "audit" {
			seen = true
			def, _ := q["effective_policy_definition"].(map[string]any)
			if q["policy"] != "ttl-audit" || q["operator_policy"] != nil || len(def) != 1 || def["message-ttl"] != 3600000.0 {
				t.Fatalf("audit: policy %v, operator policy %v, effective %v", q["policy"], q["operator_policy"], q["effective_policy_definition"])
			}
			continue
		}
		if q["policy"] != nil || len(q["effective_policy_definition"].(map[string]any)) != 0 {
			t.Fatalf("%v: the policy applies to it: %v %v", q["name"], q["policy"], q["effective_policy_definition"])
		}
	}
	if !seen {
		t.Fatal("no audit queue")
	}
}

func TestVHostDefinitions(t *testing.T) {
	e := start(t)
	e.do("PUT", "/api/vhosts/v1", nil, 201)
	e.do("PUT", "/api/queues/v1/q", map[string]any{"durable": true, "arguments": map[string]any{"x-message-ttl": 5}}, 201)
	e.do("PUT", "/api/exchanges/v1/x", map[string]any{"type": "fanout"}, 201)
	e.do("POST", "/api/bindings/v1/e/x/q/q", map[string]any{}, 201)
	out := e.do("GET", "/api/definitions/v1", nil, 200)
	var d map[string]any
	json.Unmarshal(out, &d)
	if len(d["queues"].([]any)) != 1 || len(d["users"].([]any)) != 0 || d["queues"].([]any)[0].(map[string]any)["vhost"] != nil {
		t.Fatalf("vhost export: %s", out)
	}
	e.do("PUT", "/api/vhosts/v2", nil, 201)
	e.do("POST", "/api/definitions/v2", string(out), 204)
	var bs []map[string]any
	e.get("/api/bindings/v2/e/x/q/q", &bs)
	if len(bs) != 1 {
		t.Fatalf("bindings in v2: %v", bs)
	}
	// A bad document is refused with 400, and names what failed.
	code, body := e.call("POST", "/api/definitions", "guest", "guest",
		`{"queues":[{"name":"p","vhost":"/","durable":true,"arguments":{"x-queue-type":"nonsense"}}]}`)
	if code != 400 || !strings.Contains(string(body), "x-queue-type") {
		t.Fatalf("bad import: %d %s", code, body)
	}
	_ = time.Second
}

// TestOperatorPoliciesAndQueueTypesInDefinitions: RabbitMQ's exports carry
// operator policies as runtime parameters of the component operator_policy;
// an import applies them, and an export writes them the same way, with
// each queue's type.
func TestOperatorPoliciesAndQueueTypesInDefinitions(t *testing.T) {
	e := start(t)
	doc := `{"parameters":[{"vhost":"/","component":"operator_policy","name":"cap-jobs",
	    "value":{"pattern":"^op-","apply-to":"queues","definition":{"max-length":5},"priority":2}}],
	  "queues":[{"name":"op-q","vhost":"/","durable":true,"auto_delete":false,"arguments":{}},
	    {"name":"qq","vhost":"/","durable":true,"auto_delete":false,"type":"quorum","arguments":{}},
	    {"name":"sq","vhost":"/","durable":true,"auto_delete":false,"type":"stream","arguments":{}}]}`
	e.do("POST", "/api/definitions", doc, 204)
	var ops []map[string]any
	e.get("/api/operator-policies/%2F", &ops)
	if len(ops) != 1 || ops[0]["name"] != "cap-jobs" || ops[0]["pattern"] != "^op-" {
		t.Fatalf("operator policies after import: %v", ops)
	}
	var params []map[string]any
	e.get("/api/parameters", &params)
	if len(params) != 0 {
		t.Fatalf("the operator policy was also kept as a plain parameter: %v", params)
	}
	// It applies: the queue keeps at most 5 messages.
	ch := channel(t, e.dial("guest", "guest", nil))
	for i := 0; i < 8; i++ {
		ch.PublishWithContext(context.Background(), "", "op-q", false, false, amqp.Publishing{Body: []byte("m")})
	}
	waitFor(t, "the operator policy's max-length", func() bool {
		q, err := ch.QueueDeclarePassive("op-q", true, false, false, false, nil)
		return err == nil && q.Messages == 5
	})
	out := e.do("GET", "/api/definitions", nil, 200)
	var d struct {
		Parameters []map[string]any `json:"parameters"`
		Queues     []map[string]any `json:"queues"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Parameters) != 1 || d.Parameters[0]["component"] != "operator_policy" || d.Parameters[0]["name"] != "cap-jobs" {
		t.Fatalf("exported parameters: %v", d.Parameters)
	}
	v := d.Parameters[0]["value"].(map[string]any)
	if v["pattern"] != "^op-" || v["apply-to"] != "queues" || v["definition"].(map[string]any)["max-length"] != 5.0 || fmt.Sprint(v["priority"]) != "2" {
		t.Fatalf("exported operator policy value: %v", v)
	}
	types := map[string]any{}
	for _, q := range d.Queues {
		types[q["name"].(string)] = q["type"]
	}
	if types["op-q"] != "classic" || types["qq"] != "quorum" || types["sq"] != "stream" {
		t.Fatalf("exported queue types: %v", types)
	}
	// Export, then import into a fresh broker: the same operator policy.
	e2 := start(t)
	e2.do("POST", "/api/definitions", string(out), 204)
	e2.get("/api/operator-policies", &ops)
	if len(ops) != 1 || ops[0]["name"] != "cap-jobs" {
		t.Fatalf("operator policies after a re-import: %v", ops)
	}
}
