package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestAuthAndTags(t *testing.T) {
	e := start(t)
	if code, _ := e.call("GET", "/api/overview", "", "", nil); code != 401 {
		t.Fatalf("no credentials: %d", code)
	}
	if code, _ := e.call("GET", "/api/overview", "guest", "wrong", nil); code != 401 {
		t.Fatalf("bad password: %d", code)
	}
	if code, _ := e.call("GET", "/api/overview", "nobody", "guest", nil); code != 401 {
		t.Fatalf("unknown user: %d", code)
	}
	e.do("PUT", "/api/users/plain", map[string]any{"password": "pw", "tags": ""}, 201)
	e.do("PUT", "/api/users/mgmt", map[string]any{"password": "pw", "tags": "management"}, 201)
	e.do("PUT", "/api/users/mon", map[string]any{"password": "pw", "tags": []string{"monitoring"}}, 201)
	e.do("PUT", "/api/users/mgmt", map[string]any{"password": "pw", "tags": "management"}, 204)
	for _, c := range []struct {
		user, method, path string
		want               int
	}{
		{"plain", "GET", "/api/overview", 403},
		{"mgmt", "GET", "/api/overview", 200},
		{"mgmt", "GET", "/api/whoami", 200},
		{"mgmt", "GET", "/api/users", 403},
		{"mgmt", "GET", "/api/definitions", 403},
		{"mgmt", "PUT", "/api/vhosts/x", 403},
		{"mgmt", "GET", "/api/nodes", 403},
		{"mon", "GET", "/api/nodes", 200},
		{"mon", "GET", "/api/users", 403},
		{"guest", "GET", "/api/users", 200},
		{"", "GET", "/metrics", 200},
		{"guest", "GET", "/api/nonexistent", 404},
		{"guest", "POST", "/api/overview", 405},
	} {
		code, body := e.call(c.method, c.path, c.user, "pw", nil)
		if c.user == "guest" {
			code, body = e.call(c.method, c.path, "guest", "guest", nil)
		}
		if code != c.want {
			t.Errorf("%s %s as %q: %d, want %d: %s", c.method, c.path, c.user, code, c.want, body)
		}
	}
	var who map[string]any
	e.get("/api/whoami", &who)
	if who["name"] != "guest" || fmt.Sprint(who["tags"]) != "[administrator]" {
		t.Fatalf("whoami: %v", who)
	}
	var health map[string]any
	e.get("/api/healthchecks/node", &health)
	if health["status"] != "ok" {
		t.Fatalf("health: %v", health)
	}
	// The UI's place is free: / answers a page, not the API.
	code, body := e.call("GET", "/", "", "", nil)
	if code != 200 || !strings.Contains(string(body), "Warren") {
		t.Fatalf("/: %d %s", code, body)
	}
}

func TestQueuesWithExactCountsAndStats(t *testing.T) {
	e := start(t)
	e.do("PUT", "/api/queues/%2F/jobs", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 1000}}, 201)
	e.do("PUT", "/api/queues/%2F/jobs", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 1000}}, 204)
	code, body := e.call("PUT", "/api/queues/%2F/jobs", "guest", "guest", map[string]any{"durable": false})
	if code != 400 || !strings.Contains(string(body), "inequivalent arg 'durable'") {
		t.Fatalf("inequivalent redeclare: %d %s", code, body)
	}
	e.do("PUT", "/api/queues/%2F/amq.x", map[string]any{}, 403)
	e.do("PUT", "/api/queues/nosuchvhost/q", map[string]any{}, 404)

	c := e.dial("guest", "guest", nil)
	ch := channel(t, c)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	for i := 0; i < 30; i++ {
		if err := ch.PublishWithContext(context.Background(), "", "jobs", false, false,
			amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("m%d", i)), Headers: amqp.Table{"n": int32(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		<-confirms
	}
	cch := channel(t, c)
	cch.Qos(10, 0, false)
	ds, err := cch.Consume("jobs", "worker", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		d := <-ds
		if i < 4 {
			d.Ack(false)
		}
	}
	// 30 published, 4 acked; the prefetch of 10 refills: 14 delivered,
	// 10 unacked, 16 ready.
	var q map[string]any
	waitFor(t, "counts", func() bool {
		e.get("/api/queues/%2F/jobs", &q)
		return q["messages_unacknowledged"] == 10.0 && q["messages_ready"] == 16.0
	})
	ms := q["message_stats"].(map[string]any)
	if q["messages"] != 26.0 || q["consumers"] != 1.0 || ms["publish"] != 30.0 || ms["deliver"] != 14.0 || ms["ack"] != 4.0 ||
		q["durable"] != true || q["arguments"].(map[string]any)["x-max-length"] != 1000.0 {
		t.Fatalf("queue: %v", q)
	}
	// Rates come from samples of the counters (every 100 ms here): while
	// messages flow, the publish rate is positive.
	rate := func() float64 {
		e.get("/api/queues/%2F/jobs", &q)
		return q["message_stats"].(map[string]any)["publish_details"].(map[string]any)["rate"].(float64)
	}
	pch := channel(t, c)
	seen := 0.0
	for i := 0; i < 100 && seen == 0; i++ {
		pch.PublishWithContext(context.Background(), "", "nowhere", false, false, amqp.Publishing{})
		for j := 0; j < 5; j++ {
			pch.PublishWithContext(context.Background(), "", "jobs", false, false, amqp.Publishing{Body: []byte("r")})
		}
		time.Sleep(20 * time.Millisecond)
		seen = rate()
	}
	if seen <= 0 {
		t.Fatal("publish rate stayed 0 while publishing")
	}
	waitFor(t, "rate back to 0", func() bool { return rate() == 0 })
	e.get("/api/queues/%2F/jobs", &q)
	extra := int(q["message_stats"].(map[string]any)["publish"].(float64)) - 30
	if q["messages_ready"] != float64(16+extra) {
		t.Fatalf("after rate publishes: %v ready, %d extra", q["messages_ready"], extra)
	}
	var ov map[string]any
	e.get("/api/overview", &ov)
	qt := ov["queue_totals"].(map[string]any)
	if qt["messages_ready"] != float64(16+extra) || qt["messages_unacknowledged"] != 10.0 {
		t.Fatalf("queue_totals: %v", qt)
	}
	if ov["object_totals"].(map[string]any)["consumers"] != 1.0 || ov["message_stats"].(map[string]any)["confirm"] != 30.0 ||
		ov["message_stats"].(map[string]any)["drop_unroutable"].(float64) < 1 {
		t.Fatalf("overview: %v", ov)
	}
	cch.Close()

	// get with requeue leaves the messages, flagged redelivered.
	var got []map[string]any
	out := e.do("POST", "/api/queues/%2F/jobs/get", map[string]any{"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"}, 200)
	json.Unmarshal(out, &got)
	if len(got) != 2 || got[0]["payload"] != "m4" || got[0]["payload_encoding"] != "string" ||
		got[0]["properties"].(map[string]any)["headers"].(map[string]any)["n"] != 4.0 {
		t.Fatalf("get: %s", out)
	}
	out = e.do("POST", "/api/queues/%2F/jobs/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false"}, 200)
	json.Unmarshal(out, &got)
	if len(got) != 1 || got[0]["redelivered"] != true {
		t.Fatalf("second get: %s", out)
	}
	e.get("/api/queues/%2F/jobs", &q)
	if q["messages"] != float64(25+extra) {
		t.Fatalf("after get: %v", q["messages"])
	}
	e.do("DELETE", "/api/queues/%2F/jobs/contents", nil, 204)
	e.get("/api/queues/%2F/jobs", &q)
	if q["messages"] != 0.0 {
		t.Fatalf("after purge: %v", q["messages"])
	}
	var list []map[string]any
	e.get("/api/queues?columns=name,messages", &list)
	if len(list) != 1 || len(list[0]) != 2 || list[0]["name"] != "jobs" {
		t.Fatalf("columns: %v", list)
	}
	var page map[string]any
	e.get("/api/queues/%2F?page=1&page_size=10", &page)
	if page["total_count"] != 1.0 || len(page["items"].([]any)) != 1 {
		t.Fatalf("page: %v", page)
	}
	e.do("DELETE", "/api/queues/%2F/jobs?if-empty=true", nil, 204)
	e.do("GET", "/api/queues/%2F/jobs", nil, 404)
}

func TestExchangesAndBindings(t *testing.T) {
	e := start(t)
	e.do("PUT", "/api/exchanges/%2F/orders", map[string]any{"type": "topic", "durable": true}, 201)
	e.do("PUT", "/api/exchanges/%2F/orders", map[string]any{"type": "topic", "durable": true}, 204)
	e.do("PUT", "/api/exchanges/%2F/orders", map[string]any{"type": "direct", "durable": true}, 400)
	e.do("PUT", "/api/exchanges/%2F/amq.mine", map[string]any{"type": "direct"}, 403)
	e.do("PUT", "/api/exchanges/%2F/bad", map[string]any{"type": "nosuchtype"}, 400)
	e.do("PUT", "/api/queues/%2F/a%2Fqueue", map[string]any{"durable": true}, 201)
	e.do("POST", "/api/bindings/%2F/e/orders/q/a%2Fqueue", map[string]any{"routing_key": "order.*", "arguments": map[string]any{}}, 201)
	e.do("POST", "/api/bindings/%2F/e/orders/q/a%2Fqueue", map[string]any{"routing_key": "x", "arguments": map[string]any{"k": "v"}}, 201)
	e.do("POST", "/api/bindings/%2F/e/orders/q/nosuchqueue", map[string]any{"routing_key": "x"}, 404)

	var bs []map[string]any
	e.get("/api/bindings/%2F", &bs)
	if len(bs) != 3 || bs[0]["source"] != "" || bs[0]["destination"] != "a/queue" || bs[0]["routing_key"] != "a/queue" {
		t.Fatalf("bindings: %v", bs)
	}
	e.get("/api/bindings/%2F/e/orders/q/a%2Fqueue", &bs)
	if len(bs) != 2 {
		t.Fatalf("bindings between: %v", bs)
	}
	for _, b := range bs {
		pk := b["properties_key"].(string)
		var one map[string]any
		e.get("/api/bindings/%2F/e/orders/q/a%2Fqueue/"+url.PathEscape(pk), &one)
		if one["routing_key"] != b["routing_key"] {
			t.Fatalf("binding by key %s: %v", pk, one)
		}
		e.do("DELETE", "/api/bindings/%2F/e/orders/q/a%2Fqueue/"+url.PathEscape(pk), nil, 204)
	}
	e.get("/api/exchanges/%2F/orders/bindings/source", &bs)
	if len(bs) != 0 {
		t.Fatalf("left: %v", bs)
	}
	// Routing through the API's publish.
	e.do("POST", "/api/bindings/%2F/e/orders/q/a%2Fqueue", map[string]any{"routing_key": "order.#"}, 201)
	out := e.do("POST", "/api/exchanges/%2F/orders/publish", map[string]any{"routing_key": "order.new", "payload": "hi",
		"payload_encoding": "string", "properties": map[string]any{"delivery_mode": 2, "headers": map[string]any{"a": 1}}}, 200)
	if !strings.Contains(string(out), `"routed":true`) {
		t.Fatalf("publish: %s", out)
	}
	var q map[string]any
	e.get("/api/queues/%2F/a%2Fqueue", &q)
	if q["messages"] != 1.0 {
		t.Fatalf("published message not there: %v", q["messages"])
	}
	var xs []map[string]any
	e.get("/api/exchanges/%2F", &xs)
	names := []string{}
	for _, x := range xs {
		names = append(names, x["name"].(string))
	}
	if strings.Join(names, ",") != ",amq.direct,amq.fanout,amq.headers,amq.match,amq.topic,orders" {
		t.Fatalf("exchanges: %v", names)
	}
	e.do("DELETE", "/api/exchanges/%2F/orders?if-unused=true", nil, 400)
	e.do("DELETE", "/api/exchanges/%2F/orders", nil, 204)
	e.do("DELETE", "/api/exchanges/%2F/orders", nil, 404)
	e.do("DELETE", "/api/exchanges/%2F/amq.direct", nil, 403)
}

// TestConnectionsChannelsConsumers lists an AMQP client's connection and
// closes it as the amqp091-go suite does: by the name found through its
// connection_name, URL-escaped.
func TestConnectionsChannelsConsumers(t *testing.T) {
	e := start(t)
	c := e.dial("guest", "guest", amqp.Table{"connection_name": "my-app"})
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := channel(t, c)
	ch.Qos(7, 0, false)
	if _, err := ch.QueueDeclare("q", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume("q", "ctag-1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	var conns []map[string]any
	e.get("/api/connections/", &conns)
	if len(conns) != 1 {
		t.Fatalf("connections: %v", conns)
	}
	cn := conns[0]
	name := cn["name"].(string)
	if cn["client_properties"].(map[string]any)["connection_name"] != "my-app" || cn["user"] != "guest" || cn["vhost"] != "/" ||
		cn["peer_host"] != "127.0.0.1" || cn["channels"] != 1.0 || !strings.Contains(name, " -> 127.0.0.1:") {
		t.Fatalf("connection: %v", cn)
	}
	var chans []map[string]any
	e.get("/api/channels", &chans)
	if len(chans) != 1 || chans[0]["prefetch_count"] != 7.0 || chans[0]["consumer_count"] != 1.0 ||
		chans[0]["name"] != name+" (1)" {
		t.Fatalf("channels: %v", chans)
	}
	var cons []map[string]any
	e.get("/api/consumers/%2F", &cons)
	if len(cons) != 1 || cons[0]["consumer_tag"] != "ctag-1" || cons[0]["queue"].(map[string]any)["name"] != "q" ||
		cons[0]["exclusive"] != false || cons[0]["ack_required"] != true || cons[0]["prefetch_count"] != 7.0 {
		t.Fatalf("consumers: %v", cons)
	}
	var q map[string]any
	e.get("/api/queues/%2F/q", &q)
	if q["owner_pid_details"].(map[string]any)["name"] != name {
		t.Fatalf("exclusive owner: %v", q)
	}
	// A management user sees only their own connections.
	e.do("PUT", "/api/users/mgmt", map[string]any{"password": "pw", "tags": "management"}, 201)
	code, body := e.call("GET", "/api/connections", "mgmt", "pw", nil)
	if code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("mgmt sees: %d %s", code, body)
	}
	if code, _ := e.call("DELETE", "/api/connections/"+url.PathEscape(name), "mgmt", "pw", nil); code != 404 {
		t.Fatalf("mgmt closes someone else's connection: %d", code)
	}

	e.do("DELETE", "/api/connections/"+url.PathEscape(name), nil, 204)
	select {
	case err := <-closed:
		if err == nil || err.Code != 320 || err.Reason != "CONNECTION_FORCED - Closed via management plugin" {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
	waitFor(t, "connection gone", func() bool {
		e.get("/api/connections", &conns)
		return len(conns) == 0
	})
	e.do("DELETE", "/api/connections/"+url.PathEscape(name), nil, 404)
}

func TestUsersVHostsPermissions(t *testing.T) {
	e := start(t)
	e.do("PUT", "/api/vhosts/shop", map[string]any{"description": "the shop", "tags": "prod,eu"}, 201)
	e.do("PUT", "/api/vhosts/shop", map[string]any{"description": "the shop"}, 204)
	var vh map[string]any
	e.get("/api/vhosts/shop", &vh)
	if vh["description"] != "the shop" {
		t.Fatalf("vhost: %v", vh)
	}
	// The creator got full permissions on the new vhost, as with RabbitMQ's API.
	var p map[string]any
	e.get("/api/permissions/shop/guest", &p)
	if p["configure"] != ".*" {
		t.Fatalf("creator permission: %v", p)
	}
	e.do("PUT", "/api/users/carol", map[string]any{"password": "pw", "tags": "management"}, 201)
	if _, err := e.dialVHost("carol", "pw", "shop"); err == nil {
		t.Fatal("carol opened shop without permission")
	}
	e.do("PUT", "/api/permissions/shop/carol", map[string]any{"configure": "^carol", "write": ".*", "read": ".*"}, 201)
	e.do("PUT", "/api/permissions/shop/nobody", map[string]any{"configure": ".*", "write": ".*", "read": ".*"}, 400)
	e.do("PUT", "/api/permissions/shop/carol", map[string]any{"configure": "(", "write": ".*", "read": ".*"}, 400)
	c, err := e.dialVHost("carol", "pw", "shop")
	if err != nil {
		t.Fatalf("carol: %v", err)
	}
	defer c.Close()
	// carol (management) sees shop but not "/", and may declare only
	// what her configure pattern allows, through the API too.
	var vhs []map[string]any
	code, body := e.call("GET", "/api/vhosts", "carol", "pw", nil)
	json.Unmarshal(body, &vhs)
	if code != 200 || len(vhs) != 1 || vhs[0]["name"] != "shop" {
		t.Fatalf("carol's vhosts: %d %s", code, body)
	}
	if code, _ := e.call("GET", "/api/queues/%2F", "carol", "pw", nil); code != 403 {
		t.Fatalf("carol lists /: %d", code)
	}
	if code, body := e.call("PUT", "/api/queues/shop/other", "carol", "pw", map[string]any{}); code != 403 ||
		!strings.Contains(string(body), "configure access to queue 'other' in vhost 'shop' refused for user 'carol'") {
		t.Fatalf("carol declares other: %d %s", code, body)
	}
	if code, _ := e.call("PUT", "/api/queues/shop/carol-q", "carol", "pw", map[string]any{}); code != 201 {
		t.Fatalf("carol declares carol-q: %d", code)
	}
	var perms []map[string]any
	e.get("/api/users/carol/permissions", &perms)
	if len(perms) != 1 || perms[0]["vhost"] != "shop" {
		t.Fatalf("carol's permissions: %v", perms)
	}
	e.do("DELETE", "/api/permissions/shop/carol", nil, 204)
	e.do("DELETE", "/api/permissions/shop/carol", nil, 404)
	// Deleting the vhost closes its connections with 320.
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	e.do("DELETE", "/api/vhosts/shop", nil, 204)
	select {
	case err := <-closed:
		if err == nil || err.Code != 320 {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection to deleted vhost not closed")
	}
	e.do("GET", "/api/vhosts/shop", nil, 404)
	e.do("DELETE", "/api/users/carol", nil, 204)
	e.do("GET", "/api/users/carol", nil, 404)
	var users []map[string]any
	e.get("/api/users", &users)
	if len(users) != 1 || users[0]["name"] != "guest" || users[0]["hashing_algorithm"] != "rabbit_password_hashing_sha256" {
		t.Fatalf("users: %v", users)
	}
}

func TestMetrics(t *testing.T) {
	e := start(t)
	c := e.dial("guest", "guest", nil)
	ch := channel(t, c)
	if _, err := ch.QueueDeclare("m", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	for i := 0; i < 5; i++ {
		ch.PublishWithContext(context.Background(), "", "m", false, false, amqp.Publishing{DeliveryMode: 2, Body: make([]byte, 1000)})
	}
	for i := 0; i < 5; i++ {
		<-confirms
	}
	code, body := e.call("GET", "/metrics", "", "", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	text := string(body)
	for _, want := range []string{
		`rabbitmq_queue_messages_ready{queue="m",vhost="/"} 5`,
		`rabbitmq_queue_messages_unacked{queue="m",vhost="/"} 0`,
		`rabbitmq_queue_messages_published_total{queue="m",vhost="/"} 5`,
		`rabbitmq_global_messages_received_total{protocol="amqp091"} 5`,
		`rabbitmq_global_messages_confirmed_total{protocol="amqp091"} 5`,
		`rabbitmq_global_messages_routed_total{protocol="amqp091"} 5`,
		"rabbitmq_connections 1",
		"rabbitmq_channels 1",
		"rabbitmq_queues 1",
		"warren_storage_segments 1",
		"# TYPE warren_storage_sync_round_seconds histogram",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "warren_storage_sync_round_seconds_count ") && line == "warren_storage_sync_round_seconds_count 0" {
			t.Errorf("no sync round counted: %s", line)
		}
		if strings.HasPrefix(line, "warren_storage_disk_bytes ") && line == "warren_storage_disk_bytes 0" {
			t.Errorf("no bytes on disk: %s", line)
		}
	}
}

func TestAlarms(t *testing.T) {
	e := start(t)
	e.do("GET", "/api/health/checks/alarms", nil, 200)
	e.do("PUT", "/api/warren/memory-high-watermark", map[string]any{"value": "absolute 1000"}, 204)
	code, body := e.call("GET", "/api/health/checks/alarms", "guest", "guest", nil)
	if code != 503 || !strings.Contains(string(body), `"resource":"memory"`) {
		t.Fatalf("alarms with a 1000-byte watermark: %d %s", code, body)
	}
	var nodes []map[string]any
	e.get("/api/nodes", &nodes)
	if nodes[0]["mem_alarm"] != true || nodes[0]["mem_limit"] != 1000.0 {
		t.Fatalf("node: %v", nodes[0])
	}
	_, metrics := e.call("GET", "/metrics", "", "", nil)
	if !strings.Contains(string(metrics), "rabbitmq_alarms_memory_used_watermark 1") {
		t.Fatal("/metrics does not show the memory alarm")
	}
	e.do("PUT", "/api/warren/memory-high-watermark", map[string]any{"value": "nonsense"}, 400)
	if code, _ := e.call("PUT", "/api/warren/memory-high-watermark", "mgmt", "pw", map[string]any{"value": "0.4"}); code != 401 {
		t.Fatalf("unknown user sets the watermark: %d", code)
	}
	e.do("PUT", "/api/warren/memory-high-watermark", map[string]any{"value": "0.4"}, 204)
	e.do("GET", "/api/health/checks/alarms", nil, 200)
}
