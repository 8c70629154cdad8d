package router

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata expectations with the actual output")

// TestDataDriven runs the command files in testdata/. Each case is one
// command line, a line "----", the expected output lines, and a blank
// line. Lines starting with '#' between cases are comments. Commands:
//
//	new                                           fresh NewTopology
//	declare NAME KIND [durable] [auto-delete] [internal] [ae=NAME] [arg=VALUE...]
//	bind SRC q:QUEUE|x:EXCHANGE KEY [arg=VALUE...]
//	unbind SRC q:QUEUE|x:EXCHANGE KEY [arg=VALUE...]
//	delete NAME [if-unused]
//	delete-queue QUEUE
//	route EXCHANGE KEY [header=VALUE...]
//	bindings [of=QUEUE | from=EXCHANGE | to=EXCHANGE]
//
// Words may be Go-quoted ("" is the empty key). VALUE is a string, or
// typed: i:7 (int32) l:7 (int64) b:7 (uint8) d:1.5 (float64) f:1.5
// (float32) t:true (bool) x:raw ([]byte) s:text (string) or void (nil).
func TestDataDriven(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runDataFile(t, f) })
	}
}

type ddCase struct {
	line      int
	cmd       string
	want, got []string
}

func runDataFile(t *testing.T, path string) {
	cases := parseDataFile(t, path)
	topo := NewTopology()
	for i := range cases {
		c := &cases[i]
		line := c.cmd[strings.LastIndexByte(c.cmd, '\n')+1:]
		if line == "new" {
			topo = NewTopology()
			c.got = []string{"ok"}
		} else {
			c.got = runCommand(topo, line)
		}
		if !*rewrite && !slices.Equal(c.got, c.want) {
			t.Errorf("%s:%d: %s\n got:\n  %s\nwant:\n  %s", path, c.line, line,
				strings.Join(c.got, "\n  "), strings.Join(c.want, "\n  "))
		}
	}
	if *rewrite {
		var sb strings.Builder
		for _, c := range cases {
			sb.WriteString(c.cmd + "\n----\n")
			for _, l := range c.got {
				sb.WriteString(l + "\n")
			}
			sb.WriteString("\n")
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parseDataFile reads the cases. Comments before a case are kept as the
// first lines of its cmd (runCommand runs only the last line) so that
// -rewrite preserves them.
func parseDataFile(t *testing.T, path string) []ddCase {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []ddCase
	var comments []string
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if len(comments) > 0 {
				comments = append(comments, "")
			}
			continue
		case strings.HasPrefix(line, "#"):
			comments = append(comments, line)
			continue
		}
		c := ddCase{line: n, cmd: line}
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s:%d: command %q not followed by ----", path, n, line)
		}
		n++
		for sc.Scan() {
			n++
			if sc.Text() == "" {
				break
			}
			c.want = append(c.want, sc.Text())
		}
		if len(comments) > 0 {
			c.cmd = strings.Join(comments, "\n") + "\n" + c.cmd
			comments = nil
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

func runCommand(topo *Topology, cmd string) []string {
	words, err := splitQuoted(cmd)
	if err != nil || len(words) == 0 {
		return []string{fmt.Sprintf("bad command: %v", err)}
	}
	args := words[1:]
	switch words[0] {
	case "declare":
		if len(args) < 2 {
			return []string{"usage: declare NAME KIND [flags]"}
		}
		kind, err := ParseKind(args[1])
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		x := Exchange{Name: args[0], Kind: kind}
		var table map[string]any
		for _, a := range args[2:] {
			switch a {
			case "durable":
				x.Durable = true
			case "auto-delete":
				x.AutoDelete = true
			case "internal":
				x.Internal = true
			default:
				if v, ok := strings.CutPrefix(a, "ae="); ok {
					a = AlternateExchangeArg + "=" + v
				}
				table = addArg(table, a)
			}
		}
		x.Args = table
		created, err := topo.DeclareExchange(x)
		switch {
		case err != nil:
			return []string{"error: " + err.Error()}
		case created:
			return []string{"created"}
		}
		return []string{"exists"}
	case "bind", "unbind":
		b, err := parseBinding(args)
		if err != nil {
			return []string{err.Error()}
		}
		if words[0] == "bind" {
			added, err := topo.Bind(b)
			switch {
			case err != nil:
				return []string{"error: " + err.Error()}
			case added:
				return []string{"added"}
			}
			return []string{"exists"}
		}
		found, removed, auto, err := topo.Unbind(b)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		out := []string{"missing"}
		if found {
			out = []string{"removed"}
		}
		return append(out, fmtRemoval(removed, auto)...)
	case "delete":
		if len(args) < 1 {
			return []string{"usage: delete NAME [if-unused]"}
		}
		removed, auto, err := topo.DeleteExchange(args[0], len(args) > 1 && args[1] == "if-unused")
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return append([]string{"deleted"}, fmtRemoval(removed, auto)...)
	case "delete-queue":
		if len(args) != 1 {
			return []string{"usage: delete-queue QUEUE"}
		}
		removed, auto := topo.RemoveQueue(args[0])
		return append([]string{"deleted"}, fmtRemoval(removed, auto)...)
	case "route":
		if len(args) < 2 {
			return []string{"usage: route EXCHANGE KEY [headers]"}
		}
		var headers map[string]any
		for _, a := range args[2:] {
			headers = addArg(headers, a)
		}
		got, ok := topo.Snapshot().Route(args[0], args[1], headers, nil)
		if !ok {
			return []string{"exchange not found"}
		}
		if len(got) == 0 {
			return []string{"(none)"}
		}
		return []string{strings.Join(got, " ")}
	case "bindings":
		var bs []Binding
		switch {
		case len(args) == 0:
			bs = topo.Bindings()
		case strings.HasPrefix(args[0], "of="):
			bs = topo.BindingsOf(args[0][3:])
		case strings.HasPrefix(args[0], "from="):
			bs = topo.BindingsFrom(args[0][5:])
		case strings.HasPrefix(args[0], "to="):
			bs = topo.BindingsTo(args[0][3:])
		}
		if len(bs) == 0 {
			return []string{"(none)"}
		}
		out := make([]string, len(bs))
		for i, b := range bs {
			out[i] = b.String()
		}
		return out
	case "exchanges":
		var out []string
		for _, x := range topo.Exchanges() {
			out = append(out, strconv.Quote(x.Name)+" "+x.Kind.String())
		}
		return out
	}
	return []string{"unknown command " + words[0]}
}

func fmtRemoval(removed []Binding, auto []string) []string {
	var out []string
	for _, b := range removed {
		out = append(out, "unbound "+b.String())
	}
	for _, x := range auto {
		out = append(out, "auto-deleted "+x)
	}
	return out
}

func parseBinding(args []string) (Binding, error) {
	if len(args) < 3 {
		return Binding{}, fmt.Errorf("usage: bind SRC q:QUEUE|x:EXCHANGE KEY [args]")
	}
	b := Binding{Source: args[0], Key: args[2]}
	switch {
	case strings.HasPrefix(args[1], "q:"):
		b.DestKind, b.Destination = DestQueue, args[1][2:]
	case strings.HasPrefix(args[1], "x:"):
		b.DestKind, b.Destination = DestExchange, args[1][2:]
	default:
		return Binding{}, fmt.Errorf("destination %q needs q: or x:", args[1])
	}
	for _, a := range args[3:] {
		b.Args = addArg(b.Args, a)
	}
	return b, nil
}

func addArg(m map[string]any, a string) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	k, v, _ := strings.Cut(a, "=")
	m[k] = parseValue(v)
	return m
}

func parseValue(v string) any {
	if v == "void" {
		return nil
	}
	tag, rest, ok := strings.Cut(v, ":")
	if !ok {
		return v
	}
	switch tag {
	case "i":
		n, _ := strconv.ParseInt(rest, 10, 32)
		return int32(n)
	case "l":
		n, _ := strconv.ParseInt(rest, 10, 64)
		return n
	case "b":
		n, _ := strconv.ParseUint(rest, 10, 8)
		return uint8(n)
	case "d":
		f, _ := strconv.ParseFloat(rest, 64)
		return f
	case "f":
		f, _ := strconv.ParseFloat(rest, 32)
		return float32(f)
	case "t":
		return rest == "true"
	case "x":
		return []byte(rest)
	case "s":
		return rest
	}
	return v
}

// splitQuoted splits at spaces; a word starting with '"' is Go-quoted.
func splitQuoted(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, err
			}
			w, _ := strconv.Unquote(q)
			out = append(out, w)
			s = s[len(q):]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out, nil
}
