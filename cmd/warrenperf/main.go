// Command warrenperf is Warren's bundled load generator, in the spirit of
// RabbitMQ's PerfTest: producers and consumers against any AMQP 0-9-1 broker
// (Warren or RabbitMQ), with live rates and publish-to-deliver latency.
//
//	warrenperf [flags]
//	warrenperf --scenarios FILE|standard --scenario NAME [flags]
//	warrenperf compare --a URI --b URI --scenarios FILE|standard [--rounds N] [--plot FILE.svg]
//
// Progress goes to stderr once a second, the summary to stdout. Exit status
// is 0 on success, 1 when a run fails (unreachable broker, refused
// credentials, deleted queue, ...), 2 on bad usage and 130 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/warrenmq/warren/bench"
)

const usage = `Usage:
  warrenperf [flags]
  warrenperf --scenarios FILE|standard --scenario NAME|N [flags]
  warrenperf compare --a URI --b URI --scenarios FILE|standard [--scenario NAME|N ...]
                     [--rounds N] [-z SECONDS] [--client amqp091|fast]
                     [--plot FILE.svg] [--json FILE]

Runs producers and consumers against any AMQP 0-9-1 broker and reports sent,
confirmed, returned and received rates with publish-to-deliver latency.
"standard" names the built-in standard suite. Flags given after a scenario
override its options. --client fast drives producers and consumers with a
buffered raw-connection engine that costs far less client CPU per message.

Run flags:
`

func main() {
	// WARRENPERF_CPUPROFILE=FILE profiles the load generator itself, to
	// tell its own cost from the broker's.
	if path := os.Getenv("WARRENPERF_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && args[0] == "compare" {
		return compare(ctx, args[1:], stdout, stderr)
	}
	return single(ctx, args, stdout, stderr)
}

// outputs are the flags of a single run that are not run options.
type outputs struct {
	json, csv string
	scenarios string
	scenario  string
	quiet     bool
}

func bindOutputs(fs *flag.FlagSet, o *outputs) {
	fs.StringVar(&o.json, "json", "", "also write the result as JSON to `FILE` (- for stdout, replacing the table)")
	fs.StringVar(&o.csv, "csv", "", "also write the result as CSV to `FILE` (- for stdout, replacing the table)")
	fs.StringVar(&o.scenarios, "scenarios", "", "scenario `FILE` (or standard) to take options from")
	fs.StringVar(&o.scenario, "scenario", "", "scenario `NAME` or 1-based number within --scenarios")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
}

func single(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// First pass: find the scenario, if any, whose options come before the
	// command-line flags.
	var out outputs
	scratch := bench.DefaultConfig()
	pre := flag.NewFlagSet("warrenperf", flag.ContinueOnError)
	pre.SetOutput(stderr)
	pre.Usage = func() {
		fmt.Fprint(stderr, usage)
		pre.PrintDefaults()
	}
	bench.BindFlags(pre, &scratch)
	bindOutputs(pre, &out)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if pre.NArg() > 0 {
		fmt.Fprintf(stderr, "warrenperf: unexpected argument %q (did you mean \"compare\" first?)\n", pre.Arg(0))
		return 2
	}

	cfg := bench.DefaultConfig()
	if out.scenario != "" || out.scenarios != "" {
		if out.scenario == "" || out.scenarios == "" {
			fmt.Fprintln(stderr, "warrenperf: --scenario and --scenarios go together")
			return 2
		}
		all, err := bench.LoadScenariosOrStandard(out.scenarios)
		if err != nil {
			fmt.Fprintf(stderr, "warrenperf: %v\n", err)
			return 2
		}
		picked, err := bench.SelectScenarios(all, []string{out.scenario})
		if err != nil {
			fmt.Fprintf(stderr, "warrenperf: %v\n", err)
			return 2
		}
		if cfg, err = picked[0].Config(); err != nil {
			fmt.Fprintf(stderr, "warrenperf: %v\n", err)
			return 2
		}
	}
	fs := flag.NewFlagSet("warrenperf", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bench.BindFlags(fs, &cfg)
	bindOutputs(fs, &out)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "warrenperf: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "warrenperf: %v\n", err)
		return 2
	}
	if !out.quiet {
		cfg.Progress = stderr
	}

	res, err := bench.Run(ctx, cfg)
	interrupted := err != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		fmt.Fprintf(stderr, "warrenperf: %s\n", oneLine(err))
		return 1
	}
	if code := writeResult(&res, out, stdout, stderr); code != 0 {
		return code
	}
	if interrupted {
		fmt.Fprintln(stderr, "warrenperf: interrupted")
		return 130
	}
	return 0
}

func writeResult(res *bench.Result, out outputs, stdout, stderr io.Writer) int {
	table := true
	write := func(path string, fn func(io.Writer) error) bool {
		if path == "" {
			return true
		}
		if path == "-" {
			table = false
			if err := fn(stdout); err != nil {
				fmt.Fprintf(stderr, "warrenperf: %v\n", err)
				return false
			}
			return true
		}
		f, err := os.Create(path)
		if err == nil {
			err = fn(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "warrenperf: %v\n", err)
			return false
		}
		return true
	}
	if !write(out.json, func(w io.Writer) error { return bench.WriteJSON(w, res) }) ||
		!write(out.csv, func(w io.Writer) error { return bench.WriteCSV(w, res) }) {
		return 1
	}
	if table {
		if err := bench.WriteSummary(stdout, res); err != nil {
			fmt.Fprintf(stderr, "warrenperf: %v\n", err)
			return 1
		}
	}
	return 0
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func compare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		a, b, file, plot, jsonOut string
		rounds                    int
		seconds, dialTimeout      string
		clientEngine              string
		names                     listFlag
		quiet                     bool
	)
	fs := flag.NewFlagSet("warrenperf compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: warrenperf compare --a URI --b URI --scenarios FILE|standard [flags]\n\n"+
			"Runs each scenario against broker A and B alternately (A, B, A, B, ...) and prints\n"+
			"scenario, A median rate, B median rate, A/B, A p99 and B p99.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&a, "a", "", "broker A `URI`")
	fs.StringVar(&b, "b", "", "broker B `URI`")
	fs.StringVar(&file, "scenarios", "", "scenario `FILE`, or standard for the built-in suite")
	fs.Var(&names, "scenario", "run only these scenarios (`NAME` or 1-based number; repeatable or comma-separated)")
	fs.IntVar(&rounds, "rounds", 3, "rounds per scenario (each round runs A then B)")
	for _, n := range []string{"z", "time"} {
		fs.StringVar(&seconds, n, "", "override each scenario's run time, in `seconds`")
	}
	fs.StringVar(&dialTimeout, "dial-timeout", "", "connect and handshake timeout in `seconds`")
	fs.StringVar(&clientEngine, "client", "", "client `engine` for every run: amqp091 or fast (default: the scenario's, else amqp091)")
	fs.StringVar(&plot, "plot", "", "write an SVG bar chart of rates and p99 latencies to `FILE`")
	fs.StringVar(&jsonOut, "json", "", "write the comparison as JSON to `FILE` (- for stdout)")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if a == "" || b == "" || file == "" {
		fmt.Fprintln(stderr, "warrenperf compare: --a, --b and --scenarios are required")
		return 2
	}
	all, err := bench.LoadScenariosOrStandard(file)
	if err == nil {
		all, err = bench.SelectScenarios(all, names)
	}
	if err != nil {
		fmt.Fprintf(stderr, "warrenperf compare: %v\n", err)
		return 2
	}
	cc := bench.CompareConfig{A: a, B: b, Scenarios: all, Rounds: rounds, Options: map[string]any{}}
	if seconds != "" {
		cc.Options["time"] = seconds
	}
	if dialTimeout != "" {
		cc.Options["dial-timeout"] = dialTimeout
	}
	if clientEngine != "" {
		cc.Options["client"] = clientEngine
	}
	if !quiet {
		cc.Progress = stderr
	}
	cr, runErr := bench.Compare(ctx, cc)
	if len(cr.Rows) > 0 || runErr == nil {
		if jsonOut == "-" {
			if err := bench.WriteCompareJSON(stdout, &cr); err != nil {
				fmt.Fprintf(stderr, "warrenperf compare: %v\n", err)
				return 1
			}
		} else if err := bench.WriteCompareTable(stdout, &cr); err != nil {
			fmt.Fprintf(stderr, "warrenperf compare: %v\n", err)
			return 1
		}
		if jsonOut != "" && jsonOut != "-" {
			if err := writeFile(jsonOut, func(w io.Writer) error { return bench.WriteCompareJSON(w, &cr) }); err != nil {
				fmt.Fprintf(stderr, "warrenperf compare: %v\n", err)
				return 1
			}
		}
		if plot != "" {
			if err := writeFile(plot, func(w io.Writer) error { return bench.WriteCompareSVG(w, &cr) }); err != nil {
				fmt.Fprintf(stderr, "warrenperf compare: %v\n", err)
				return 1
			}
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "warrenperf compare: %s\n", oneLine(runErr))
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = fn(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
