package main

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Policies and operator policies, as rabbitmqctl's set_policy,
// clear_policy, list_policies and their operator_policy twins.

func init() {
	for _, op := range []bool{false, true} {
		kind, path, what := "policy", "/api/policies", "policies"
		if op {
			kind, path, what = "operator_policy", "/api/operator-policies", "operator policies"
		}
		register(&command{name: "set_" + kind, args: "[-p <vhost>] [--priority <n>] [--apply-to <queues|exchanges|all|classic_queues|quorum_queues|streams>] <name> <pattern> <definition>",
			help: "set a " + kind + " (definition in JSON) and apply it", run: setPolicy(kind, path)})
		register(&command{name: "clear_" + kind, args: "[-p <vhost>] <name>", help: "delete a " + kind,
			run: func(c *ctl, args []string) error {
				if len(args) != 1 {
					return usageErr("clear_%s takes one argument, the %s name", kind, kind)
				}
				c.info("Clearing %s \"%s\" on vhost \"%s\" ...", map[bool]string{false: "policy", true: "operator policy"}[op], args[0], c.opts.vhost)
				return c.api.do(http.MethodDelete, path+"/"+esc(c.opts.vhost)+"/"+esc(args[0]), nil, nil)
			}})
		l := &listing{what: what, perVHost: true, path: vhostPath(path),
			columns:  cols("vhost", "name", "pattern", "apply-to", "definition", "priority"),
			defaults: []string{"vhost", "name", "pattern", "apply-to", "definition", "priority"}}
		register(&command{name: "list_" + map[bool]string{false: "policies", true: "operator_policies"}[op], help: "list " + what, run: l.run})
	}
}

func setPolicy(kind, path string) func(c *ctl, args []string) error {
	return func(c *ctl, args []string) error {
		priority, applyTo := 0, "all"
		var pos []string
		for i := 0; i < len(args); i++ {
			switch args[i] {
			case "--priority", "--apply-to":
				if i+1 >= len(args) {
					return usageErr("%s needs a value", args[i])
				}
				if args[i] == "--priority" {
					n, err := strconv.Atoi(args[i+1])
					if err != nil {
						return usageErr("--priority must be an integer, got %q", args[i+1])
					}
					priority = n
				} else {
					applyTo = args[i+1]
				}
				i++
			default:
				pos = append(pos, args[i])
			}
		}
		if len(pos) != 3 {
			return usageErr("set_%s takes three arguments: name, pattern and definition", kind)
		}
		name, pattern, def := pos[0], pos[1], pos[2]
		if !json.Valid([]byte(def)) {
			return usageErr("the definition %q is not valid JSON", def)
		}
		c.info("Setting %s \"%s\" for pattern \"%s\" to \"%s\" with priority \"%d\" for vhost \"%s\" ...",
			map[string]string{"policy": "policy", "operator_policy": "operator policy"}[kind], name, pattern, def, priority, c.opts.vhost)
		return c.api.do(http.MethodPut, path+"/"+esc(c.opts.vhost)+"/"+esc(name), map[string]any{
			"pattern": pattern, "definition": json.RawMessage(def), "priority": priority, "apply-to": applyTo}, nil)
	}
}
