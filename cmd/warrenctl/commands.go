package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// ctl is one warrenctl invocation.
type ctl struct {
	opts options
	api  *client
}

func (c *ctl) info(format string, args ...any) {
	if !c.opts.quiet && c.opts.formatter != "json" {
		fmt.Fprintf(c.opts.stdout, format+"\n", args...)
	}
}

// column maps a rabbitmqctl info item to the API object's field.
type column struct {
	name string
	get  func(m map[string]any) any
}

func field(path string) func(map[string]any) any {
	return func(m map[string]any) any {
		var v any = m
		for _, k := range strings.Split(path, ".") {
			mm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = mm[k]
		}
		return v
	}
}

func constant(v any) func(map[string]any) any { return func(map[string]any) any { return v } }

// listing is a list_* command: where its rows come from, its info items
// and the ones shown by default.
type listing struct {
	what     string // "queues", for "Listing queues ..."
	perVHost bool
	path     func(c *ctl) string
	columns  []column
	defaults []string
}

func (l *listing) run(c *ctl, args []string) error {
	cols := args
	if len(cols) == 0 {
		cols = l.defaults
	}
	byName := map[string]column{}
	for _, col := range l.columns {
		byName[col.name] = col
	}
	var sel []column
	for _, name := range cols {
		col, ok := byName[name]
		if !ok {
			names := make([]string, 0, len(l.columns))
			for _, c := range l.columns {
				names = append(names, c.name)
			}
			return usageErr("Info key(s) %s are not supported. Supported keys: %s", name, strings.Join(names, ", "))
		}
		sel = append(sel, col)
	}
	rows, err := c.api.list(l.path(c))
	if err != nil {
		return err
	}
	if l.perVHost {
		c.info("Listing %s for vhost %s ...", l.what, c.opts.vhost)
	} else {
		c.info("Listing %s ...", l.what)
	}
	return c.table(sel, rows)
}

// table prints rows as rabbitmqctl does: a header line and tab-separated
// values, or a JSON array of objects with --formatter json.
func (c *ctl) table(cols []column, rows []map[string]any) error {
	w := c.opts.stdout
	if c.opts.formatter == "json" {
		out := make([]map[string]any, 0, len(rows))
		for _, r := range rows {
			o := make(map[string]any, len(cols))
			for _, col := range cols {
				o[col.name] = col.get(r)
			}
			out = append(out, o)
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	if !c.opts.silent && !c.opts.noHeader {
		names := make([]string, len(cols))
		for i, col := range cols {
			names[i] = col.name
		}
		fmt.Fprintln(w, strings.Join(names, "\t"))
	}
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, col := range cols {
			vals[i] = format(col.get(r))
		}
		fmt.Fprintln(w, strings.Join(vals, "\t"))
	}
	return nil
}

// format renders a value as rabbitmqctl's table formatter: tables as
// [{"key",value}], lists as [a, b], strings bare.
func format(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return fmt.Sprint(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("{%q,%s}", k, formatInner(x[k]))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = format(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

func formatInner(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return format(v)
}

func vhostPath(prefix string) func(c *ctl) string {
	return func(c *ctl) string { return prefix + "/" + esc(c.opts.vhost) }
}

func cols(names ...string) []column {
	out := make([]column, len(names))
	for i, n := range names {
		out[i] = column{n, field(n)}
	}
	return out
}

func init() {
	listings := map[string]*listing{
		"list_queues": {what: "queues", perVHost: true, path: vhostPath("/api/queues"),
			columns: append(cols("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "policy", "state", "type",
				"messages", "messages_ready", "messages_unacknowledged", "consumers", "consumer_utilisation",
				"exclusive_consumer_tag", "single_active_consumer_tag"),
				column{"pid", field("name")}, column{"owner_pid", field("owner_pid_details.name")},
				column{"messages_ready_ram", field("messages_ready")}, column{"messages_unacknowledged_ram", field("messages_unacknowledged")},
				column{"messages_persistent", field("messages")}, column{"consumer_capacity", field("consumer_capacity")}),
			defaults: []string{"name", "messages"}},
		"list_exchanges": {what: "exchanges", perVHost: true, path: vhostPath("/api/exchanges"),
			columns:  cols("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments", "policy"),
			defaults: []string{"name", "type"}},
		"list_bindings": {what: "bindings", perVHost: true, path: vhostPath("/api/bindings"),
			columns: []column{{"source_name", field("source")}, {"source_kind", constant("exchange")},
				{"destination_name", field("destination")}, {"destination_kind", field("destination_type")},
				{"routing_key", field("routing_key")}, {"arguments", field("arguments")}, {"vhost", field("vhost")}},
			defaults: []string{"source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"}},
		"list_connections": {what: "connections", path: func(*ctl) string { return "/api/connections" },
			columns: append(cols("name", "user", "vhost", "host", "port", "peer_host", "peer_port", "state", "channels",
				"protocol", "auth_mechanism", "ssl", "type", "timeout", "frame_max", "channel_max", "client_properties",
				"connected_at", "recv_oct", "send_oct", "user_who_performed_action"), column{"pid", field("name")}),
			defaults: []string{"user", "peer_host", "peer_port", "state"}},
		"list_channels": {what: "channels", path: func(*ctl) string { return "/api/channels" },
			columns: append(cols("name", "number", "user", "vhost", "consumer_count", "messages_unacknowledged",
				"messages_unconfirmed", "messages_uncommitted", "acks_uncommitted", "prefetch_count", "global_prefetch_count",
				"confirm", "transactional", "state"),
				column{"pid", field("name")}, column{"connection", field("connection_details.name")}),
			defaults: []string{"pid", "user", "consumer_count", "messages_unacknowledged"}},
		"list_consumers": {what: "consumers", perVHost: true, path: vhostPath("/api/consumers"),
			columns: []column{{"queue_name", field("queue.name")}, {"channel_pid", field("channel_details.name")},
				{"consumer_tag", field("consumer_tag")}, {"ack_required", field("ack_required")},
				{"prefetch_count", field("prefetch_count")}, {"active", field("active")},
				{"activity_status", field("activity_status")}, {"exclusive", field("exclusive")},
				{"arguments", field("arguments")}},
			defaults: []string{"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"}},
		"list_vhosts": {what: "vhosts", path: func(*ctl) string { return "/api/vhosts" },
			columns:  cols("name", "description", "tags", "default_queue_type", "tracing", "cluster_state", "messages"),
			defaults: []string{"name"}},
		"list_users": {what: "users", path: func(*ctl) string { return "/api/users" },
			columns:  []column{{"user", field("name")}, {"tags", field("tags")}},
			defaults: []string{"user", "tags"}},
		"list_permissions": {what: "permissions", perVHost: true, path: func(c *ctl) string { return "/api/vhosts/" + esc(c.opts.vhost) + "/permissions" },
			columns:  cols("user", "configure", "write", "read"),
			defaults: []string{"user", "configure", "write", "read"}},
	}
	for name, l := range listings {
		l := l
		args := "[<column> ...]"
		if name == "list_permissions" || name == "list_users" {
			args = ""
		}
		register(&command{name: name, args: args, help: "list " + l.what, run: l.run})
	}
	register(&command{name: "list_user_permissions", args: "<username>", help: "list a user's permissions in every vhost",
		run: func(c *ctl, args []string) error {
			if len(args) != 1 {
				return usageErr("list_user_permissions takes one argument, the user name")
			}
			rows, err := c.api.list("/api/users/" + esc(args[0]) + "/permissions")
			if err != nil {
				return err
			}
			c.info("Listing permissions for user \"%s\" ...", args[0])
			return c.table(cols("vhost", "configure", "write", "read"), rows)
		}})
	register(&command{name: "status", help: "show the node's status", run: status})
	register(&command{name: "ping", help: "check that the broker answers", run: func(c *ctl, args []string) error {
		var h map[string]any
		if err := c.api.get("/api/healthchecks/node", &h); err != nil {
			return err
		}
		c.info("Ping succeeded")
		return nil
	}})
	register(&command{name: "await_startup", args: "[--timeout SECONDS]", help: "wait until the broker answers (default 300 s)",
		run: awaitStartup})
	register(&command{name: "add_vhost", args: "<vhost> [--description D] [--tags T] [--default-queue-type classic]", help: "create a vhost",
		run: addVHost})
	register(&command{name: "delete_vhost", args: "<vhost>", help: "delete a vhost with everything in it",
		run: func(c *ctl, args []string) error {
			if len(args) != 1 {
				return usageErr("delete_vhost takes one argument, the vhost name")
			}
			c.info("Deleting vhost \"%s\" ...", args[0])
			return c.api.do(http.MethodDelete, "/api/vhosts/"+esc(args[0]), nil, nil)
		}})
	register(&command{name: "add_user", args: "<username> <password>", help: "create a user", run: addUser})
	register(&command{name: "delete_user", args: "<username>", help: "delete a user",
		run: func(c *ctl, args []string) error {
			if len(args) != 1 {
				return usageErr("delete_user takes one argument, the user name")
			}
			c.info("Deleting user \"%s\" ...", args[0])
			return c.api.do(http.MethodDelete, "/api/users/"+esc(args[0]), nil, nil)
		}})
	register(&command{name: "change_password", args: "<username> <password>", help: "change a user's password", run: changePassword})
	register(&command{name: "set_user_tags", args: "<username> <tag> [...]", help: "set a user's tags (none: clear them)", run: setUserTags})
	register(&command{name: "set_permissions", args: "[-p <vhost>] <username> <conf> <write> <read>", help: "set a user's permissions in a vhost",
		run: func(c *ctl, args []string) error {
			if len(args) != 4 {
				return usageErr("set_permissions takes four arguments: user, configure, write and read patterns")
			}
			c.info("Setting permissions for user \"%s\" in vhost \"%s\" ...", args[0], c.opts.vhost)
			return c.api.do(http.MethodPut, "/api/permissions/"+esc(c.opts.vhost)+"/"+esc(args[0]), map[string]string{
				"configure": args[1], "write": args[2], "read": args[3]}, nil)
		}})
	register(&command{name: "clear_permissions", args: "[-p <vhost>] <username>", help: "remove a user's permissions in a vhost",
		run: func(c *ctl, args []string) error {
			if len(args) != 1 {
				return usageErr("clear_permissions takes one argument, the user name")
			}
			c.info("Clearing permissions for user \"%s\" in vhost \"%s\" ...", args[0], c.opts.vhost)
			return c.api.do(http.MethodDelete, "/api/permissions/"+esc(c.opts.vhost)+"/"+esc(args[0]), nil, nil)
		}})
	register(&command{name: "purge_queue", args: "[-p <vhost>] <queue>", help: "drop a queue's ready messages",
		run: func(c *ctl, args []string) error {
			if len(args) != 1 {
				return usageErr("purge_queue takes one argument, the queue name")
			}
			c.info("Purging queue '%s' in vhost '%s' ...", args[0], c.opts.vhost)
			return c.api.do(http.MethodDelete, "/api/queues/"+esc(c.opts.vhost)+"/"+esc(args[0])+"/contents", nil, nil)
		}})
	register(&command{name: "delete_queue", args: "[-p <vhost>] <queue> [--if-empty|-e] [--if-unused|-u]", help: "delete a queue",
		run: deleteQueue})
	register(&command{name: "close_connection", args: "<connection name> <explanation>", help: "close a connection (320 CONNECTION_FORCED)",
		run: func(c *ctl, args []string) error {
			if len(args) != 2 {
				return usageErr("close_connection takes two arguments: the connection name (as list_connections name shows it) and an explanation")
			}
			c.info("Closing connection %s, reason: %s...", args[0], args[1])
			return c.api.do(http.MethodDelete, "/api/connections/"+esc(args[0]), nil, nil, "X-Reason", args[1])
		}})
	register(&command{name: "export_definitions", args: "<file|->", help: "write the definitions (RabbitMQ's format) to a file",
		run: exportDefinitions})
	register(&command{name: "import_definitions", args: "<file|->", help: "import definitions (RabbitMQ's format) from a file",
		run: importDefinitions})
	register(&command{name: "set_vm_memory_high_watermark", args: "<fraction> | absolute <size>",
		help: "set the memory high watermark (publishers are blocked above it)",
		run:  setLimit("set_vm_memory_high_watermark", "/api/warren/memory-high-watermark", "Setting memory threshold on %s to %s ...")})
	register(&command{name: "set_disk_free_limit", args: "<size> | mem_relative <factor>",
		help: "set the free disk space limit (publishers are blocked below it)",
		run:  setLimit("set_disk_free_limit", "/api/warren/disk-free-limit", "Setting disk free limit on %s to %s ...")})
	register(&command{name: "migrate", args: "--from amqp://user:pass@host:5672/ [--from-api http://host:15672] [--vhost V] [--queues REGEX] [--to amqp://...]",
		help: "import a running RabbitMQ's definitions and move its messages into Warren", run: migrate})
}

// setLimit sets an alarm threshold through Warren's API (RabbitMQ's has no
// endpoint for it; rabbitmqctl talks to the node directly).
func setLimit(name, path, msg string) func(c *ctl, args []string) error {
	return func(c *ctl, args []string) error {
		if len(args) == 0 || len(args) > 2 {
			return usageErr("%s takes a value", name)
		}
		v := strings.Join(args, " ")
		c.info(msg, "the node", v)
		return c.api.do(http.MethodPut, path, map[string]string{"value": v}, nil)
	}
}

func status(c *ctl, args []string) error {
	var ov map[string]any
	if err := c.api.get("/api/overview", &ov); err != nil {
		return err
	}
	var nodes []map[string]any
	if err := c.api.get("/api/nodes", &nodes); err != nil {
		nodes = nil // monitoring tag needed; the overview is enough
	}
	if c.opts.formatter == "json" {
		out := map[string]any{"overview": ov}
		if len(nodes) > 0 {
			out["node"] = nodes[0]
		}
		return json.NewEncoder(c.opts.stdout).Encode(out)
	}
	w := c.opts.stdout
	c.info("Status of node %v ...", ov["node"])
	fmt.Fprintf(w, "Runtime\n\nProduct name: %v\nProduct version: %v\nRabbitMQ API version: %v\n", ov["product_name"], ov["product_version"], ov["rabbitmq_version"])
	if up, ok := ov["uptime"].(json.Number); ok {
		ms, _ := up.Int64()
		fmt.Fprintf(w, "Uptime (seconds): %d\n", ms/1000)
	}
	fmt.Fprintf(w, "\nListeners\n\n")
	if ls, ok := ov["listeners"].([]any); ok {
		for _, l := range ls {
			m := l.(map[string]any)
			fmt.Fprintf(w, "Interface: %v, port: %v, protocol: %v, purpose: AMQP 0-9-1 and AMQP 1.0\n", m["ip_address"], m["port"], m["protocol"])
		}
	}
	fmt.Fprintf(w, "Interface: %s, protocol: http, purpose: HTTP API\n", c.api.base)
	if ot, ok := ov["object_totals"].(map[string]any); ok {
		fmt.Fprintf(w, "\nTotals\n\nConnection count: %v\nChannel count: %v\nQueue count: %v\nConsumer count: %v\n",
			ot["connections"], ot["channels"], ot["queues"], ot["consumers"])
	}
	if qt, ok := ov["queue_totals"].(map[string]any); ok {
		fmt.Fprintf(w, "Messages: %v (ready %v, unacknowledged %v)\n", qt["messages"], qt["messages_ready"], qt["messages_unacknowledged"])
	}
	if len(nodes) > 0 {
		if st, ok := nodes[0]["warren_storage"].(map[string]any); ok {
			fmt.Fprintf(w, "\nStorage\n\nSegments: %v\nBytes on disk: %v\n", st["segments"], st["disk_bytes"])
		}
		fmt.Fprintf(w, "\nAlarms\n\n")
		alarms := 0
		for _, a := range []struct{ key, name string }{{"mem_alarm", "memory"}, {"disk_free_alarm", "free disk space"}} {
			if nodes[0][a.key] == true {
				fmt.Fprintf(w, "%s alarm on node %v\n", a.name, nodes[0]["name"])
				alarms++
			}
		}
		if alarms == 0 {
			fmt.Fprintln(w, "(none)")
		}
		fmt.Fprintf(w, "\nMemory\n\nUsed: %v bytes, high watermark: %v bytes\n\nFree disk space\n\nAvailable: %v bytes, low watermark: %v bytes\n",
			nodes[0]["mem_used"], nodes[0]["mem_limit"], nodes[0]["disk_free"], nodes[0]["disk_free_limit"])
	}
	return nil
}

func awaitStartup(c *ctl, args []string) error {
	timeout := 300 * time.Second
	if t := c.opts.timeout; t != "" {
		// rabbitmqctl's -t/--timeout, taken as a global flag anywhere.
		var s int
		if _, err := fmt.Sscan(t, &s); err != nil || s < 0 {
			return usageErr("bad --timeout %q", t)
		}
		timeout = time.Duration(s) * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		var h map[string]any
		err := c.api.get("/api/healthchecks/node", &h)
		if err == nil {
			return nil
		}
		if ce, ok := err.(*cliError); ok && ce.code != exitUnavailable {
			return err
		}
		if time.Now().After(deadline) {
			return &cliError{exitUnavailable, fmt.Sprintf("the broker did not start within %s: %v", timeout, err)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flagArgs splits --name value and --name=value options from positional
// arguments; boolean flags are listed in bools.
func flagArgs(args []string, bools map[string]string) (map[string]string, []string, error) {
	opts := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, has := strings.Cut(a, "=")
		if long, ok := bools[name]; ok {
			opts[long] = "true"
			continue
		}
		if !has {
			if i+1 >= len(args) {
				return nil, nil, usageErr("%s needs a value", name)
			}
			i++
			val = args[i]
		}
		opts[strings.TrimLeft(name, "-")] = val
	}
	return opts, pos, nil
}

func addVHost(c *ctl, args []string) error {
	opts, pos, err := flagArgs(args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("add_vhost takes one argument, the vhost name")
	}
	body := map[string]any{}
	if v, ok := opts["description"]; ok {
		body["description"] = v
	}
	if v, ok := opts["tags"]; ok {
		body["tags"] = v
	}
	if v, ok := opts["default-queue-type"]; ok {
		body["default_queue_type"] = v
	}
	c.info("Adding vhost \"%s\" ...", pos[0])
	return c.api.do(http.MethodPut, "/api/vhosts/"+esc(pos[0]), body, nil)
}

func addUser(c *ctl, args []string) error {
	if len(args) != 2 {
		return usageErr("add_user takes two arguments: user name and password")
	}
	var existing map[string]any
	if err := c.api.get("/api/users/"+esc(args[0]), &existing); err == nil {
		return &cliError{exitFailed, fmt.Sprintf("user \"%s\" already exists", args[0])}
	}
	c.info("Adding user \"%s\" ...", args[0])
	return c.api.do(http.MethodPut, "/api/users/"+esc(args[0]), map[string]any{"password": args[1], "tags": ""}, nil)
}

func (c *ctl) user(name string) (map[string]any, error) {
	var u map[string]any
	if err := c.api.get("/api/users/"+esc(name), &u); err != nil {
		if ce, ok := err.(*cliError); ok && ce.code == exitFailed {
			return nil, &cliError{exitFailed, fmt.Sprintf("user \"%s\" does not exist", name)}
		}
		return nil, err
	}
	return u, nil
}

func changePassword(c *ctl, args []string) error {
	if len(args) != 2 {
		return usageErr("change_password takes two arguments: user name and new password")
	}
	u, err := c.user(args[0])
	if err != nil {
		return err
	}
	c.info("Changing password for user \"%s\" ...", args[0])
	return c.api.do(http.MethodPut, "/api/users/"+esc(args[0]), map[string]any{"password": args[1], "tags": u["tags"]}, nil)
}

func setUserTags(c *ctl, args []string) error {
	if len(args) < 1 {
		return usageErr("set_user_tags takes a user name and tags")
	}
	if _, err := c.user(args[0]); err != nil {
		return err
	}
	tags := args[1:]
	if tags == nil {
		tags = []string{}
	}
	c.info("Setting tags for user \"%s\" to [%s] ...", args[0], strings.Join(tags, ", "))
	// Without a password the API keeps the user's current one.
	return c.api.do(http.MethodPut, "/api/users/"+esc(args[0]), map[string]any{"tags": strings.Join(tags, ",")}, nil)
}

func deleteQueue(c *ctl, args []string) error {
	opts, pos, err := flagArgs(args, map[string]string{"--if-empty": "if-empty", "-e": "if-empty", "--if-unused": "if-unused", "-u": "if-unused"})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("delete_queue takes one argument, the queue name")
	}
	q := ""
	if opts["if-empty"] == "true" {
		q += "&if-empty=true"
	}
	if opts["if-unused"] == "true" {
		q += "&if-unused=true"
	}
	if q != "" {
		q = "?" + q[1:]
	}
	c.info("Deleting queue '%s' on vhost '%s' ...", pos[0], c.opts.vhost)
	return c.api.do(http.MethodDelete, "/api/queues/"+esc(c.opts.vhost)+"/"+esc(pos[0])+q, nil, nil)
}

func exportDefinitions(c *ctl, args []string) error {
	if len(args) != 1 {
		return usageErr("export_definitions takes one argument: a file path, or - for standard output")
	}
	var raw []byte
	if err := c.api.get("/api/definitions", &raw); err != nil {
		return err
	}
	if args[0] == "-" {
		_, err := c.opts.stdout.Write(raw)
		return err
	}
	if err := os.WriteFile(args[0], raw, 0o600); err != nil {
		return &cliError{exitFailed, fmt.Sprintf("writing %s: %v", args[0], err)}
	}
	c.info("Exported definitions to %s", args[0])
	return nil
}

func importDefinitions(c *ctl, args []string) error {
	if len(args) != 1 {
		return usageErr("import_definitions takes one argument: a file path, or - for standard input")
	}
	var raw []byte
	var err error
	if args[0] == "-" {
		raw, err = io.ReadAll(c.opts.stdin)
	} else {
		raw, err = os.ReadFile(args[0])
	}
	if err != nil {
		return &cliError{exitFailed, fmt.Sprintf("reading %s: %v", args[0], err)}
	}
	if !json.Valid(raw) {
		return &cliError{exitFailed, fmt.Sprintf("%s is not a JSON document", args[0])}
	}
	c.info("Importing definitions from %s ...", args[0])
	return c.api.do(http.MethodPost, "/api/definitions", raw, nil)
}
