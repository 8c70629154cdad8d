package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Result is what one run measured. Rates are messages per second over the
// whole run; latencies are publish-to-deliver, in milliseconds.
type Result struct {
	// ID is the run label.
	ID string `json:"id"`
	// Config holds the run's parameters, passwords redacted.
	Config Config `json:"parameters"`
	// Start is when the load started (after connecting).
	Start time.Time `json:"start"`
	// Elapsed is the length of the load phase in seconds.
	Elapsed float64 `json:"elapsed_seconds"`

	// Sent, Confirmed, Nacked, Returned and Received count messages.
	Sent      uint64 `json:"sent"`
	Confirmed uint64 `json:"confirmed"`
	Nacked    uint64 `json:"nacked"`
	Returned  uint64 `json:"returned"`
	Received  uint64 `json:"received"`

	// SentRate, ConfirmedRate and ReceivedRate are the average rates.
	SentRate      float64 `json:"sent_per_second"`
	ConfirmedRate float64 `json:"confirmed_per_second"`
	ReceivedRate  float64 `json:"received_per_second"`

	// Latency summarises publish-to-deliver latency over the run.
	Latency Latency `json:"latency_ms"`
	// Samples holds one entry per progress interval.
	Samples []Sample `json:"samples"`
	// Backlog is set for backlog runs.
	Backlog *BacklogResult `json:"backlog,omitempty"`
	// Churn is set for runs with churn workers.
	Churn *ChurnResult `json:"churn,omitempty"`
	// Broker is set when Config.BrokerPID names the broker's process.
	Broker *BrokerResult `json:"broker,omitempty"`

	// ClientCPUSeconds is the CPU time warrenperf itself used during the
	// load phase, and ClientCPUMicrosPerMessage that time divided by the
	// messages sent plus received.
	ClientCPUSeconds          float64 `json:"client_cpu_seconds"`
	ClientCPUMicrosPerMessage float64 `json:"client_cpu_us_per_message"`
}

// Latency summarises a latency histogram in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// Sample is one progress interval.
type Sample struct {
	// Time is the end of the interval in seconds since the start.
	Time float64 `json:"time"`
	// SentRate, ConfirmedRate, ReturnedRate and ReceivedRate are msgs/s
	// over the interval.
	SentRate      float64 `json:"sent"`
	ConfirmedRate float64 `json:"confirmed"`
	ReturnedRate  float64 `json:"returned"`
	ReceivedRate  float64 `json:"received"`
	// P50, P95 and P99 are the interval's latencies in milliseconds.
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// BacklogResult reports the two phases of a backlog run.
type BacklogResult struct {
	// Messages is how many messages were published (confirmed, with
	// confirms) before the drain.
	Messages int64 `json:"messages"`
	// PublishSeconds and PublishRate cover the publish phase.
	PublishSeconds float64 `json:"publish_seconds"`
	PublishRate    float64 `json:"publish_per_second"`
	// Slices is the publish rate of each successive slice of the backlog,
	// which should not fall as the backlog grows.
	Slices []SliceRate `json:"slices"`
	// Drained, DrainSeconds and DrainRate cover the drain phase.
	Drained      uint64  `json:"drained"`
	DrainSeconds float64 `json:"drain_seconds"`
	DrainRate    float64 `json:"drain_per_second"`
}

// SliceRate is the publish rate while the backlog grew from From to To.
type SliceRate struct {
	From int64   `json:"from"`
	To   int64   `json:"to"`
	Rate float64 `json:"rate"`
}

// Throughput is the run's headline rate: the drain rate of a backlog run,
// else the received rate when there are consumers, else the confirmed rate
// with confirms, else the sent rate; for a churn-only run, cycles per second.
func (r *Result) Throughput() float64 {
	switch {
	case r.Churn != nil && r.Config.Producers == 0 && r.Config.Consumers == 0:
		return r.Churn.Rate
	case r.Backlog != nil && r.Config.Consumers > 0:
		return r.Backlog.DrainRate
	case r.Backlog != nil:
		return r.Backlog.PublishRate
	case r.Config.Consumers > 0:
		return r.ReceivedRate
	case r.Config.Confirm > 0:
		return r.ConfirmedRate
	}
	return r.SentRate
}

func (c Config) redacted() Config {
	c.URIs = append([]string(nil), c.URIs...)
	for i, u := range c.URIs {
		c.URIs[i] = Redact(u)
	}
	c.Progress = nil
	return c
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func latencyOf(h *Histogram) Latency {
	return Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1e6,
		P50:   ms(h.Quantile(0.50)),
		P95:   ms(h.Quantile(0.95)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// totals sums the client counters.
type totals struct {
	sent, confirmed, nacked, returned, received uint64
}

func (r *runner) totals() totals {
	var t totals
	for _, p := range r.producers {
		t.sent += p.sent.Load()
		t.confirmed += p.confirmed.Load()
		t.nacked += p.nacked.Load()
		t.returned += p.returned.Load()
	}
	for _, c := range r.consumers {
		t.received += c.received.Load()
	}
	return t
}

// reporter samples counters and latencies once per interval, prints the
// progress line and keeps the run's latency histogram.
type reporter struct {
	r        *runner
	begin    time.Time
	interval *Histogram
	total    *Histogram
	samples  []Sample
	lastT    time.Time
	last     totals
	quit     chan struct{}
	wg       sync.WaitGroup
}

func newReporter(r *runner) *reporter {
	return &reporter{r: r, interval: NewHistogram(), total: NewHistogram(), quit: make(chan struct{})}
}

func (rep *reporter) start(t time.Time) {
	rep.begin, rep.lastT = t, t
	rep.wg.Go(func() {
		tk := time.NewTicker(rep.r.cfg.Interval)
		defer tk.Stop()
		for {
			select {
			case now := <-tk.C:
				rep.sample(now, true)
			case <-rep.quit:
				return
			}
		}
	})
}

// collect moves the consumers' latencies into rep.interval and rep.total.
func (rep *reporter) collect() {
	rep.interval.Reset()
	for _, c := range rep.r.consumers {
		c.mu.Lock()
		c.cur, c.spare = c.spare, c.cur
		c.mu.Unlock()
		rep.interval.Merge(c.spare)
		c.spare.Reset()
	}
	rep.total.Merge(rep.interval)
}

func (rep *reporter) sample(now time.Time, print bool) {
	rep.collect()
	t := rep.r.totals()
	dt := now.Sub(rep.lastT).Seconds()
	if dt <= 0 {
		return
	}
	rate := func(a, b uint64) float64 { return float64(a-b) / dt }
	s := Sample{
		Time:          now.Sub(rep.begin).Seconds(),
		SentRate:      rate(t.sent, rep.last.sent),
		ConfirmedRate: rate(t.confirmed, rep.last.confirmed),
		ReturnedRate:  rate(t.returned, rep.last.returned),
		ReceivedRate:  rate(t.received, rep.last.received),
		P50:           ms(rep.interval.Quantile(0.50)),
		P95:           ms(rep.interval.Quantile(0.95)),
		P99:           ms(rep.interval.Quantile(0.99)),
	}
	rep.samples = append(rep.samples, s)
	rep.last, rep.lastT = t, now
	if print && rep.r.cfg.Progress != nil {
		fmt.Fprintf(rep.r.cfg.Progress,
			"id: %s, time: %.1f s, sent: %.0f msg/s, confirmed: %.0f msg/s, returned: %.0f msg/s, received: %.0f msg/s, latency median/95th/99th: %.3f/%.3f/%.3f ms\n",
			rep.r.cfg.ID, s.Time, s.SentRate, s.ConfirmedRate, s.ReturnedRate, s.ReceivedRate, s.P50, s.P95, s.P99)
	}
}

// finish stops sampling and takes the last, partial interval.
func (rep *reporter) finish(end time.Time) {
	close(rep.quit)
	rep.wg.Wait()
	if end.Sub(rep.lastT) >= rep.r.cfg.Interval/10 {
		rep.sample(end, false)
	} else {
		rep.collect()
	}
}

func (rep *reporter) fill(res *Result) {
	t := rep.r.totals()
	res.Sent, res.Confirmed, res.Nacked, res.Returned, res.Received = t.sent, t.confirmed, t.nacked, t.returned, t.received
	if res.Elapsed > 0 {
		res.SentRate = float64(t.sent) / res.Elapsed
		res.ConfirmedRate = float64(t.confirmed) / res.Elapsed
		res.ReceivedRate = float64(t.received) / res.Elapsed
	}
	res.Latency = latencyOf(rep.total)
	res.Samples = rep.samples
}

// Parameters returns the run's notable options as "name=value" pairs, named
// like the long flags, for summaries.
func (c *Config) Parameters() []string {
	p := []string{
		"uri=" + strings.Join(c.redacted().URIs, ","),
		"producers=" + strconv.Itoa(c.Producers),
		"consumers=" + strconv.Itoa(c.Consumers),
	}
	if c.QueuePattern != "" {
		p = append(p, "queue-pattern="+c.QueuePattern, "queue-count="+strconv.Itoa(c.QueueCount))
	} else {
		p = append(p, "queue="+c.Queue)
	}
	if c.Exchange != "" {
		p = append(p, "exchange="+c.Exchange, "type="+c.ExchangeType)
	}
	if c.RoutingKey != "" {
		p = append(p, "routing-key="+c.RoutingKey)
	}
	if c.TopicBindings > 0 {
		p = append(p, "topic-bindings="+strconv.Itoa(c.TopicBindings))
	}
	p = append(p, "size="+strconv.Itoa(c.Size), "body-kind="+string(c.BodyKind))
	if c.ProducerMessages > 0 {
		p = append(p, "pmessages="+strconv.FormatInt(c.ProducerMessages, 10))
	}
	if c.ConsumerMessages > 0 {
		p = append(p, "cmessages="+strconv.FormatInt(c.ConsumerMessages, 10))
	}
	if c.Duration > 0 {
		p = append(p, "time="+strconv.FormatFloat(c.Duration.Seconds(), 'f', -1, 64))
	}
	if c.Rate > 0 {
		p = append(p, "rate="+strconv.FormatFloat(c.Rate, 'f', -1, 64))
	}
	p = append(p, "confirm="+strconv.Itoa(c.Confirm),
		"persistent="+strconv.FormatBool(c.Persistent),
		"durable="+strconv.FormatBool(c.durable()),
		"autoack="+strconv.FormatBool(c.AutoAck))
	if c.Mandatory {
		p = append(p, "mandatory=true")
	}
	if c.Prefetch > 0 {
		p = append(p, "qos="+strconv.Itoa(c.Prefetch))
	}
	if c.MultiAckEvery > 1 {
		p = append(p, "multi-ack-every="+strconv.Itoa(c.MultiAckEvery))
	}
	if len(c.QueueArgs) > 0 {
		p = append(p, "queue-args="+(&queueArgsValue{dst: &c.QueueArgs}).String())
	}
	if c.Predeclared {
		p = append(p, "predeclared=true")
	}
	if c.Backlog > 0 {
		p = append(p, "backlog="+strconv.FormatInt(c.Backlog, 10))
	}
	return p
}

// WriteSummary writes the human-readable summary table of res.
func WriteSummary(w io.Writer, res *Result) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "warrenperf run %q: %.1f s\n", res.ID, res.Elapsed)
	fmt.Fprintf(w, "parameters: %s\n", strings.Join(res.Config.Parameters(), " "))
	fmt.Fprintln(tw, "\tmessages\tmsg/s\t")
	fmt.Fprintf(tw, "sent\t%d\t%.0f\t\n", res.Sent, res.SentRate)
	if res.Config.Confirm > 0 {
		fmt.Fprintf(tw, "confirmed\t%d\t%.0f\t\n", res.Confirmed, res.ConfirmedRate)
		fmt.Fprintf(tw, "nacked\t%d\t\t\n", res.Nacked)
	}
	if res.Config.Mandatory {
		fmt.Fprintf(tw, "returned\t%d\t\t\n", res.Returned)
	}
	fmt.Fprintf(tw, "received\t%d\t%.0f\t\n", res.Received, res.ReceivedRate)
	if err := tw.Flush(); err != nil {
		return err
	}
	l := res.Latency
	fmt.Fprintf(tw, "latency ms\tmin\tp50\tp95\tp99\tp99.9\tmax\tmean\t\n")
	fmt.Fprintf(tw, "(%d samples)\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", l.Count, l.Min, l.P50, l.P95, l.P99, l.P999, l.Max, l.Mean)
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := res.Backlog; b != nil {
		fmt.Fprintf(w, "backlog: published %d in %.1f s (%.0f msg/s), drained %d in %.1f s (%.0f msg/s)\n",
			b.Messages, b.PublishSeconds, b.PublishRate, b.Drained, b.DrainSeconds, b.DrainRate)
		for _, s := range b.Slices {
			fmt.Fprintf(tw, "  publish %d..%d\t%.0f msg/s\t\n", s.From, s.To, s.Rate)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if c := res.Churn; c != nil {
		l := c.Latency
		fmt.Fprintf(w, "churn: %d workers, %d declare-bind-delete cycles, %.0f cycles/s; cycle ms p50 %.3f p99 %.3f max %.3f (mean %.3f)\n",
			c.Workers, c.Cycles, c.Rate, l.P50, l.P99, l.Max, l.Mean)
	}
	if b := res.Broker; b != nil {
		writeBroker(w, b)
	}
	_, err := fmt.Fprintf(w, "client cpu: %.2f s, %.2f µs/msg\n", res.ClientCPUSeconds, res.ClientCPUMicrosPerMessage)
	return err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// writeBroker writes the broker's figures: memory, files, CPU, disk.
func writeBroker(w io.Writer, b *BrokerResult) {
	fmt.Fprintf(w, "broker pid %d: %d connections, %d queues\n", b.PID, b.Connections, b.Queues)
	line := func(name string, s BrokerSample) {
		fmt.Fprintf(w, "  %-9s rss %8.1f MiB  fds %6d  cpu %8.2f s", name, mib(s.RSSBytes), s.FDs, s.CPUSeconds)
		if s.DiskBytes > 0 || name == "base" && b.Base.DiskBytes > 0 {
			fmt.Fprintf(w, "  disk %9.1f MiB", mib(s.DiskBytes))
		}
		fmt.Fprintln(w)
	}
	line("base", b.Base)
	line("connected", b.Connected)
	line("end", b.End)
	if b.Idle != nil {
		line("idle", *b.Idle)
	}
	grown := b.Connected.RSSBytes - b.Base.RSSBytes
	fmt.Fprintf(w, "  connected: %+.1f MiB", mib(grown))
	if b.Connections > 0 {
		fmt.Fprintf(w, ", %.1f KiB per connection", float64(grown)/1024/float64(b.Connections))
	}
	if b.Queues > 0 {
		fmt.Fprintf(w, ", %.1f KiB per queue", float64(grown)/1024/float64(b.Queues))
	}
	fmt.Fprintln(w)
	if b.Idle != nil {
		kept := b.Idle.RSSBytes - b.Base.RSSBytes
		fmt.Fprintf(w, "  idle after the load: %+.1f MiB over base", mib(kept))
		if b.Queues > 0 {
			fmt.Fprintf(w, ", %.1f KiB per queue", float64(kept)/1024/float64(b.Queues))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  peak rss during the load %.1f MiB (process peak %.1f MiB)", mib(b.LoadPeakRSSBytes), mib(max(b.End.PeakRSSBytes, b.Connected.PeakRSSBytes)))
	if b.CPUMicrosPerMessage > 0 {
		fmt.Fprintf(w, ", broker cpu %.2f µs/msg", b.CPUMicrosPerMessage)
	}
	fmt.Fprintln(w)
}

// WriteJSON writes res as indented JSON.
func WriteJSON(w io.Writer, res *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// csvHeader is the column list of WriteCSV.
var csvHeader = []string{
	"id", "elapsed_s", "producers", "consumers", "queues", "size", "confirm", "persistent", "rate",
	"sent", "confirmed", "nacked", "returned", "received",
	"sent_per_s", "confirmed_per_s", "received_per_s",
	"latency_min_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_p99_9_ms", "latency_max_ms",
	"client_cpu_s", "client_cpu_us_per_msg", "parameters",
}

// WriteCSV writes a header and one row per result.
func WriteCSV(w io.Writer, results ...*Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, r := range results {
		c := r.Config
		row := []string{
			r.ID, f(r.Elapsed), strconv.Itoa(c.Producers), strconv.Itoa(c.Consumers), strconv.Itoa(len(c.QueueNames())),
			strconv.Itoa(c.Size), strconv.Itoa(c.Confirm), strconv.FormatBool(c.Persistent), f(c.Rate),
			u(r.Sent), u(r.Confirmed), u(r.Nacked), u(r.Returned), u(r.Received),
			f(r.SentRate), f(r.ConfirmedRate), f(r.ReceivedRate),
			f(r.Latency.Min), f(r.Latency.P50), f(r.Latency.P95), f(r.Latency.P99), f(r.Latency.P999), f(r.Latency.Max),
			f(r.ClientCPUSeconds), f(r.ClientCPUMicrosPerMessage), strings.Join(c.Parameters(), " "),
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
