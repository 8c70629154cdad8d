// Command warrenctl is Warren's operator CLI, modelled on rabbitmqctl: the
// same command names, arguments and output, talking to the broker's
// management HTTP API as any client would. Without flags it talks to
// http://127.0.0.1:15672 as guest/guest, so on the broker's host it works
// bare, as rabbitmqctl does.
//
//	warrenctl [--url URL] [--username U] [--password P] [-p VHOST] [-q] [-s]
//	          [--formatter json] COMMAND [ARGS]
//
// The global flags may also be set as WARREN_URL, WARREN_USERNAME and
// WARREN_PASSWORD. Exit codes: 0 success, 64 usage, 69 the API cannot be
// reached (or the feature is not there), 77 the API refused the login, 1 the
// API refused the request.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes, as rabbitmqctl's (sysexits).
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 64
	exitUnavailable = 69
	exitNoPerm      = 77
)

// cliError is an error with the exit code it ends warrenctl with.
type cliError struct {
	code int
	msg  string
}

func (e *cliError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &cliError{exitUsage, fmt.Sprintf(format, args...)}
}

// options are the global flags.
type options struct {
	url, username, password string
	vhost                   string
	formatter               string // "" (table) or "json"
	timeout                 string // -t/--timeout: seconds, for the commands that wait
	quiet, silent, noHeader bool
	stdout, stderr          io.Writer
	stdin                   io.Reader
}

// command is one rabbitmqctl command.
type command struct {
	name, args, help string
	run              func(c *ctl, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// run parses the global flags (anywhere before or after the command, as
// rabbitmqctl accepts -p after the command) and runs the command.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o := options{url: envOr("WARREN_URL", "http://127.0.0.1:15672"), username: envOr("WARREN_USERNAME", "guest"),
		password: envOr("WARREN_PASSWORD", "guest"), vhost: "/", stdout: stdout, stderr: stderr, stdin: stdin}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		takes := func() (string, bool) {
			if hasVal {
				return val, true
			}
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			return "", false
		}
		var dst *string
		switch name {
		case "--url":
			dst = &o.url
		case "--username":
			dst = &o.username
		case "--password":
			dst = &o.password
		case "-p", "--vhost":
			dst = &o.vhost
		case "--formatter":
			dst = &o.formatter
		case "-t", "--timeout":
			dst = &o.timeout
		case "-n", "--node", "-l", "--longnames":
			if name == "-l" || name == "--longnames" {
				continue
			}
			var ignored string
			dst = &ignored // accepted for rabbitmqctl compatibility, not used
		case "-q", "--quiet":
			o.quiet = true
			continue
		case "-s", "--silent":
			o.quiet, o.silent = true, true
			continue
		case "--no-table-headers":
			o.noHeader = true
			continue
		case "-h", "--help":
			if len(rest) == 0 {
				usage(stdout)
				return exitOK
			}
			rest = append(rest, a)
			continue
		default:
			rest = append(rest, a)
			continue
		}
		v, ok := takes()
		if !ok {
			fmt.Fprintf(stderr, "Error: %s needs a value\n", name)
			return exitUsage
		}
		*dst = v
	}
	if len(rest) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch o.formatter {
	case "", "table", "json":
	default:
		fmt.Fprintf(stderr, "Error: unknown formatter %q (table or json)\n", o.formatter)
		return exitUsage
	}
	if rest[0] == "help" {
		usage(stdout)
		return exitOK
	}
	cmd := commands[rest[0]]
	if cmd == nil {
		fmt.Fprintf(stderr, "Error: command '%s' not found\n\n", rest[0])
		usage(stderr)
		return exitUsage
	}
	c := &ctl{opts: o, api: newClient(o.url, o.username, o.password)}
	if err := cmd.run(c, rest[1:]); err != nil {
		var ce *cliError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, "Error: "+err.Error())
			if ce.code == exitUsage {
				fmt.Fprintf(stderr, "Usage: warrenctl [global flags] %s %s\n", cmd.name, cmd.args)
			}
			return ce.code
		}
		fmt.Fprintln(stderr, "Error: "+err.Error())
		return exitFailed
	}
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: warrenctl [--url URL] [--username USER] [--password PASS] [-p VHOST]
                 [-q|--quiet] [-s|--silent] [--no-table-headers] [--formatter json]
                 COMMAND [ARGS]

warrenctl is Warren's operator CLI, modelled on rabbitmqctl. It talks to the
broker's management HTTP API (default http://127.0.0.1:15672 as guest/guest;
also WARREN_URL, WARREN_USERNAME, WARREN_PASSWORD).

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(c.name+" "+c.args), c.help)
	}
}
