// Command warrenperf is Warren's bundled load generator, in the spirit of
// RabbitMQ's PerfTest: producers and consumers against any AMQP 0-9-1 broker,
// with live rates and publish-to-deliver latency. Until the load-generator
// work lands it only answers --help.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	fs := flag.NewFlagSet("warrenperf", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: warrenperf [flags]
       warrenperf compare --a URI --b URI --scenarios FILE

warrenperf will run producers and consumers against any AMQP 0-9-1 broker and
report sent, confirmed and received rates with latency percentiles, and compare
two brokers scenario by scenario. It is not implemented yet.
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
	fmt.Fprintln(os.Stderr, "warrenperf: not implemented yet")
	os.Exit(2)
}
