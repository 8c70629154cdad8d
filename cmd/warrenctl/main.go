// Command warrenctl is Warren's operator CLI, modelled on rabbitmqctl: it will
// list queues, exchanges, bindings, connections and consumers, manage vhosts,
// users and permissions, and purge or delete queues through the broker's
// management API. Until the operations work lands it only answers --help.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	fs := flag.NewFlagSet("warrenctl", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: warrenctl [flags] COMMAND [ARGS]

warrenctl is Warren's operator CLI, modelled on rabbitmqctl. Planned commands:
  list_queues, list_exchanges, list_bindings, list_connections, list_consumers,
  add_vhost, delete_vhost, add_user, delete_user, set_permissions,
  purge_queue, delete_queue, status

No command is implemented yet: the management API it talks to is not built.
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	fs.Usage()
	fmt.Fprintln(os.Stderr, "warrenctl: not implemented yet")
	os.Exit(2)
}
