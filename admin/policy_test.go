package admin

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestPoliciesInQueues: policies and operator policies set over HTTP apply
// to existing and new queues, and /api/queues shows them as RabbitMQ does
// (the fields and the merged definition below are what RabbitMQ 3.10
// answers for the same calls): the operator policy's lower max-length wins,
// the policy's lower message-ttl wins, the queue's own arguments are shown
// as declared.
func TestPoliciesInQueues(t *testing.T) {
	e := start(t)
	e.do("PUT", "/api/queues/%2F/pol.old", map[string]any{"durable": true}, 201)
	e.do("PUT", "/api/policies/%2F/p-ttl", map[string]any{"pattern": `^pol\.`, "apply-to": "queues", "priority": 1,
		"definition": map[string]any{"message-ttl": 5000, "max-length": 10}}, 201)
	e.do("PUT", "/api/operator-policies/%2F/op1", map[string]any{"pattern": `^pol\.`, "apply-to": "queues",
		"definition": map[string]any{"max-length": 5, "message-ttl": 9000}}, 201)
	e.do("PUT", "/api/queues/%2F/pol.a", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 3}}, 201)
	e.do("PUT", "/api/queues/%2F/nopol", map[string]any{"durable": true}, 201)
	want := map[string]any{"max-length": 5.0, "message-ttl": 5000.0}
	for _, name := range []string{"pol.a", "pol.old"} {
		var q map[string]any
		e.get("/api/queues/%2F/"+name, &q)
		if q["policy"] != "p-ttl" || q["operator_policy"] != "op1" || !reflect.DeepEqual(q["effective_policy_definition"], want) {
			t.Fatalf("%s: policy %v operator %v effective %v", name, q["policy"], q["operator_policy"], q["effective_policy_definition"])
		}
		if q["type"] != "classic" || q["message_bytes_ready"] != 0.0 {
			t.Fatalf("%s: type %v bytes %v", name, q["type"], q["message_bytes_ready"])
		}
	}
	var q map[string]any
	e.get("/api/queues/%2F/pol.a", &q)
	if args, _ := q["arguments"].(map[string]any); !reflect.DeepEqual(args, map[string]any{"x-max-length": 3.0}) {
		t.Fatalf("arguments %v", q["arguments"])
	}
	e.get("/api/queues/%2F/nopol", &q)
	if q["policy"] != nil || q["operator_policy"] != nil || !reflect.DeepEqual(q["effective_policy_definition"], map[string]any{}) {
		t.Fatalf("nopol: %v %v %v", q["policy"], q["operator_policy"], q["effective_policy_definition"])
	}
	var ops []map[string]any
	e.get("/api/operator-policies", &ops)
	if len(ops) != 1 || ops[0]["name"] != "op1" || ops[0]["apply-to"] != "queues" {
		t.Fatalf("operator policies %v", ops)
	}
	// RabbitMQ's validation answers.
	for _, tc := range []struct {
		path string
		def  map[string]any
		want string
	}{
		{"/api/policies/%2F/bad", map[string]any{"foo": 1}, `[{<<"foo">>,1}] are not recognised policy settings`},
		{"/api/policies/%2F/bad", map[string]any{"message-ttl": "x"}, `<<"x">> is not a valid message TTL`},
		{"/api/policies/%2F/bad", map[string]any{}, "no policy provided"},
		{"/api/operator-policies/%2F/bad", map[string]any{"dead-letter-exchange": "x"}, `[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings`},
	} {
		code, body := e.call("PUT", tc.path, "guest", "guest", map[string]any{"pattern": "x", "definition": tc.def})
		var er map[string]string
		json.Unmarshal(body, &er)
		if code != 400 || er["error"] != "bad_request" || er["reason"] != "Validation failed\n\n"+tc.want+"\n" {
			t.Fatalf("%v: %d %q", tc.def, code, er["reason"])
		}
	}
	code, body := e.call("PUT", "/api/policies/%2F/bad", "guest", "guest", map[string]any{"pattern": "x", "apply-to": "foo", "definition": map[string]any{"max-length": 1}})
	if code != 400 || !strings.Contains(string(body), "apply-to 'foo' unrecognised") {
		t.Fatalf("bad apply-to: %d %s", code, body)
	}
	// Operator policies are for administrators; policymakers may set
	// policies.
	e.do("PUT", "/api/users/pm", map[string]any{"password": "pm", "tags": "policymaker"}, 201)
	e.do("PUT", "/api/permissions/%2F/pm", map[string]any{"configure": ".*", "write": ".*", "read": ".*"}, 201)
	if code, _ := e.call("PUT", "/api/operator-policies/%2F/x", "pm", "pm", map[string]any{"pattern": "x", "definition": map[string]any{"max-length": 1}}); code != 403 {
		t.Fatalf("policymaker set an operator policy: %d", code)
	}
	if code, _ := e.call("PUT", "/api/policies/%2F/x", "pm", "pm", map[string]any{"pattern": "x", "definition": map[string]any{"max-length": 1}}); code != 201 {
		t.Fatalf("policymaker set a policy: %d", code)
	}
	e.do("DELETE", "/api/operator-policies/%2F/op1", nil, 204)
	e.do("DELETE", "/api/operator-policies/%2F/op1", nil, 404)
	e.get("/api/queues/%2F/pol.a", &q)
	if q["operator_policy"] != nil || !reflect.DeepEqual(q["effective_policy_definition"], map[string]any{"max-length": 10.0, "message-ttl": 5000.0}) {
		t.Fatalf("after deleting the operator policy: %v %v", q["operator_policy"], q["effective_policy_definition"])
	}
}
