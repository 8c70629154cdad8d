package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RedeliveredHeader marks a migrated message that the source had delivered
// before (flagged redelivered there): after an interrupted migration it may
// be in Warren twice. Messages the source had never delivered do not get it.
const RedeliveredHeader = "x-warren-migrated-redelivered"

// migration moves a RabbitMQ node's definitions and messages into Warren.
type migration struct {
	c        *ctl
	from     *url.URL // source AMQP URL
	to       *url.URL // Warren AMQP URL
	srcAPI   *client
	vhost    string
	queues   *regexp.Regexp
	prefetch int
	progress io.Writer
	tty      bool
}

type queueResult struct {
	vhost, name string
	moved       int
	redelivered int
	took        time.Duration
}

func migrate(c *ctl, args []string) error {
	opts, pos, err := flagArgs(args, nil)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	for k := range opts {
		switch k {
		case "from", "from-api", "vhost", "queues", "to", "prefetch":
		default:
			return usageErr("unknown migrate option --%s", k)
		}
	}
	if opts["from"] == "" {
		return usageErr("--from amqp://user:pass@host:5672/ is required")
	}
	m := &migration{c: c, vhost: opts["vhost"], prefetch: 1000, progress: c.opts.stderr}
	if m.from, err = url.Parse(opts["from"]); err != nil || (m.from.Scheme != "amqp" && m.from.Scheme != "amqps") {
		return usageErr("--from must be an amqp:// URL")
	}
	srcUser, srcPass := "guest", "guest"
	if m.from.User != nil {
		srcUser = m.from.User.Username()
		srcPass, _ = m.from.User.Password()
	}
	fromAPI := opts["from-api"]
	if fromAPI == "" {
		fromAPI = "http://" + m.from.Hostname() + ":15672"
	}
	m.srcAPI = newClient(fromAPI, srcUser, srcPass)
	if to := opts["to"]; to != "" {
		if m.to, err = url.Parse(to); err != nil {
			return usageErr("bad --to URL: %v", err)
		}
	} else {
		api, err := url.Parse(c.opts.url)
		if err != nil {
			return usageErr("bad --url: %v", err)
		}
		m.to = &url.URL{Scheme: "amqp", Host: api.Hostname() + ":5672", User: url.UserPassword(c.opts.username, c.opts.password), Path: "/"}
	}
	re := ".*"
	if q, ok := opts["queues"]; ok {
		re = q
	}
	if m.queues, err = regexp.Compile(re); err != nil {
		return usageErr("bad --queues pattern: %v", err)
	}
	if p, ok := opts["prefetch"]; ok {
		if _, err := fmt.Sscan(p, &m.prefetch); err != nil || m.prefetch < 1 || m.prefetch > 65535 {
			return usageErr("--prefetch must be 1..65535")
		}
	}
	if f, ok := m.progress.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			m.tty = true
		}
	}
	return m.run()
}

func (m *migration) logf(format string, args ...any) {
	if !m.c.opts.quiet {
		fmt.Fprintf(m.progress, format+"\n", args...)
	}
}

func (m *migration) run() error {
	start := time.Now()
	// 1. Definitions: export from the source, import into Warren.
	var defs map[string]any
	if err := m.srcAPI.get("/api/definitions", &defs); err != nil {
		return fmt.Errorf("reading the source's definitions: %w", err)
	}
	if m.vhost != "" {
		filterVHost(defs, m.vhost)
	}
	raw, err := json.Marshal(defs)
	if err != nil {
		return err
	}
	if err := m.c.api.do(http.MethodPost, "/api/definitions", raw, nil); err != nil {
		return fmt.Errorf("importing the definitions into Warren: %w", err)
	}
	m.logf("Imported definitions: %d users, %d vhosts, %d exchanges, %d queues, %d bindings, %d policies",
		count(defs, "users"), count(defs, "vhosts"), count(defs, "exchanges"), count(defs, "queues"), count(defs, "bindings"),
		count(defs, "policies"))

	// 2. Messages, queue by queue.
	var results []queueResult
	qs, _ := defs["queues"].([]any)
	for _, x := range qs {
		q, _ := x.(map[string]any)
		name, _ := q["name"].(string)
		vh, _ := q["vhost"].(string)
		if vh == "" {
			vh = "/"
		}
		if !m.queues.MatchString(name) {
			continue
		}
		if isStream(q) {
			// Consuming a stream removes nothing and never ends: its
			// definition is imported, its messages are not moved.
			m.logf("Stream '%s' in vhost '%s': declared, messages not moved (replay them from the source)", name, vh)
			continue
		}
		res, err := m.moveQueue(vh, name)
		results = append(results, res)
		if err != nil {
			m.printResults(results, time.Since(start))
			return fmt.Errorf("queue '%s' in vhost '%s': %w (rerun to continue: nothing is lost)", name, vh, err)
		}
	}
	m.printResults(results, time.Since(start))
	return nil
}

// isStream reports whether a definitions queue entry is a stream.
func isStream(q map[string]any) bool {
	if q["type"] == "stream" {
		return true
	}
	args, _ := q["arguments"].(map[string]any)
	return args["x-queue-type"] == "stream"
}

func count(defs map[string]any, key string) int {
	l, _ := defs[key].([]any)
	return len(l)
}

// filterVHost keeps one vhost's objects, its permissions and the users.
func filterVHost(defs map[string]any, vhost string) {
	for _, key := range []string{"vhosts", "permissions", "queues", "exchanges", "bindings", "policies", "parameters"} {
		l, _ := defs[key].([]any)
		out := []any{}
		for _, x := range l {
			o, _ := x.(map[string]any)
			field := "vhost"
			if key == "vhosts" {
				field = "name"
			}
			if o[field] == vhost {
				out = append(out, x)
			}
		}
		defs[key] = out
	}
}

func (m *migration) printResults(rs []queueResult, took time.Duration) {
	if len(rs) == 0 {
		m.logf("No queue to move.")
		return
	}
	c := m.c
	c.info("Moved messages ...")
	rows := make([]map[string]any, len(rs))
	total := 0
	for i, r := range rs {
		rows[i] = map[string]any{"vhost": r.vhost, "name": r.name, "moved": r.moved, "redelivered": r.redelivered,
			"seconds": fmt.Sprintf("%.1f", r.took.Seconds())}
		total += r.moved
	}
	c.table(cols("vhost", "name", "moved", "redelivered", "seconds"), rows)
	if s := took.Seconds(); s > 0 {
		m.logf("%d messages in %.1f s (%.0f msg/s)", total, s, float64(total)/s)
	}
}

func vhostURL(u *url.URL, vhost string) string {
	v := *u
	v.Path = "/" + vhost
	v.RawPath = "/" + url.PathEscape(vhost)
	return v.String()
}

// moveQueue moves one queue's messages: consume from the source with a
// prefetch window, publish each to Warren's queue through the default
// exchange on a confirm channel, and ack the source only for what Warren
// confirmed. A crash at any point leaves every message in the source
// (unacked, so redelivered) or in Warren (confirmed), or both.
func (m *migration) moveQueue(vhost, name string) (res queueResult, err error) {
	res = queueResult{vhost: vhost, name: name}
	start := time.Now()
	defer func() { res.took = time.Since(start) }()
	src, err := amqp.DialConfig(vhostURL(m.from, vhost), amqp.Config{Properties: amqp.Table{"connection_name": "warrenctl migrate (source)"}})
	if err != nil {
		return res, fmt.Errorf("connecting to the source: %w", err)
	}
	defer src.Close()
	dst, err := amqp.DialConfig(vhostURL(m.to, vhost), amqp.Config{Properties: amqp.Table{"connection_name": "warrenctl migrate"}})
	if err != nil {
		return res, fmt.Errorf("connecting to Warren over AMQP (%s): %w", m.to.Redacted(), err)
	}
	defer dst.Close()

	sch, err := src.Channel()
	if err != nil {
		return res, err
	}
	info, err := sch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		return res, fmt.Errorf("source queue: %w", err)
	}
	total := info.Messages
	if err := sch.Qos(m.prefetch, 0, false); err != nil {
		return res, err
	}
	dch, err := dst.Channel()
	if err != nil {
		return res, err
	}
	if err := dch.Confirm(false); err != nil {
		return res, err
	}
	confirms := dch.NotifyPublish(make(chan amqp.Confirmation, m.prefetch+16))
	returns := dch.NotifyReturn(make(chan amqp.Return, 64)) // see settler
	dchClosed := dch.NotifyClose(make(chan *amqp.Error, 1))
	dstClosed := dst.NotifyClose(make(chan *amqp.Error, 1))
	srcClosed := src.NotifyClose(make(chan *amqp.Error, 1))
	deliveries, err := sch.Consume(name, "warrenctl-migrate", false, false, false, false, nil)
	if err != nil {
		return res, fmt.Errorf("consuming from the source: %w", err)
	}

	st := &settler{
		ack:  func(tag uint64) error { return sch.Ack(tag, false) },
		nack: func(tag uint64) { sch.Nack(tag, false, true) },
		errs: make(chan error, 1),
	}
	go st.run(confirms, returns)
	ackErr, mu := st.errs, &st.mu

	published := 0
	lastReport := time.Now()
	m.report(vhost, name, 0, int(total), start, false)
	idle := time.NewTimer(300 * time.Millisecond)
	defer idle.Stop()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return res, fmt.Errorf("the source closed the consumer")
			}
			pub := amqp.Publishing{Headers: d.Headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
				DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
				Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, UserId: d.UserId,
				AppId: d.AppId, Body: d.Body}
			if d.Redelivered {
				h := amqp.Table{}
				for k, v := range d.Headers {
					h[k] = v
				}
				h[RedeliveredHeader] = true
				pub.Headers = h
				res.redelivered++
			}
			st.published(d.DeliveryTag)
			if err := dch.PublishWithContext(context.Background(), "", name, true, false, pub); err != nil {
				return res, fmt.Errorf("publishing to Warren: %w", err)
			}
			published++
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(300 * time.Millisecond)
		case err := <-ackErr:
			mu.Lock()
			res.moved = st.confirmed
			mu.Unlock()
			return res, err
		case e := <-dchClosed:
			hint := ""
			if e != nil && strings.Contains(e.Reason, "user_id property") {
				hint = fmt.Sprintf("; the messages carry a user-id property naming another user: to move them as they are, give the Warren user '%s' the impersonator tag (set_user_tags)", m.to.User.Username())
			}
			return res, fmt.Errorf("Warren closed the channel: %v%s", e, hint)
		case e := <-dstClosed:
			return res, fmt.Errorf("Warren closed the connection: %v", e)
		case e := <-srcClosed:
			return res, fmt.Errorf("the source closed the connection: %v", e)
		case <-idle.C:
			mu.Lock()
			done := st.confirmed
			mu.Unlock()
			if done == published {
				// Everything moved so far is confirmed and acked: is the
				// source queue empty now?
				qch, err := src.Channel()
				if err != nil {
					return res, err
				}
				info, err := qch.QueueDeclarePassive(name, false, false, false, false, nil)
				qch.Close()
				if err != nil {
					return res, err
				}
				if info.Messages == 0 {
					res.moved = done
					sch.Cancel("warrenctl-migrate", false)
					m.report(vhost, name, done, int(total), start, true)
					return res, nil
				}
			}
			idle.Reset(300 * time.Millisecond)
		}
		if time.Since(lastReport) > m.reportEvery() {
			mu.Lock()
			done := st.confirmed
			mu.Unlock()
			res.moved = done
			m.report(vhost, name, done, int(total), start, false)
			lastReport = time.Now()
		}
	}
}

// settler acks each message at the source once Warren confirmed it, in
// publish order. Warren returns a mandatory publish it cannot route (its
// queue is gone) and then confirms it with an ack, as RabbitMQ does: the
// return comes first on the wire, and the client library hands it over
// before the ack, so run looks for returns before it acts on each confirm,
// and a returned message is never acked at the source. Returns run ahead of
// confirms, so once one came no later confirm can be matched to the message
// it was for: every message not yet settled goes back to the source queue
// (nacked with requeue), for a rerun to move.
type settler struct {
	ack  func(tag uint64) error
	nack func(tag uint64)
	errs chan error // the first failure; buffered 1

	mu        sync.Mutex
	tags      []uint64 // tags[i]: source tag of Warren publish firstSeq+i
	firstSeq  uint64
	confirmed int
}

// published records the source delivery tag of the next publish to Warren.
func (s *settler) published(tag uint64) {
	s.mu.Lock()
	if s.firstSeq == 0 {
		s.firstSeq = 1
	}
	s.tags = append(s.tags, tag)
	s.mu.Unlock()
}

func (s *settler) fail(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// run settles until confirms is closed.
func (s *settler) run(confirms <-chan amqp.Confirmation, returns <-chan amqp.Return) {
	returned := false
	noteReturn := func(r amqp.Return) {
		if !returned {
			returned = true
			s.fail(fmt.Errorf("Warren has no queue '%s' to take the message (%d %s); the messages not yet settled stay in the source", r.RoutingKey, r.ReplyCode, r.ReplyText))
		}
	}
	for {
		var c amqp.Confirmation
		select {
		case r := <-returns:
			noteReturn(r)
			continue
		case cc, ok := <-confirms:
			if !ok {
				return
			}
			c = cc
		}
	drain:
		for {
			select {
			case r := <-returns:
				noteReturn(r)
			default:
				break drain
			}
		}
		s.mu.Lock()
		i := int(c.DeliveryTag - s.firstSeq)
		if i < 0 || i >= len(s.tags) {
			s.mu.Unlock()
			continue
		}
		tag := s.tags[i]
		s.mu.Unlock()
		if !c.Ack || returned {
			s.nack(tag)
			if !c.Ack {
				s.fail(fmt.Errorf("Warren refused message %d (nack)", c.DeliveryTag))
			}
			continue
		}
		// Confirms arrive in order; ack the source once per confirm.
		if err := s.ack(tag); err != nil {
			s.fail(fmt.Errorf("acking the source: %w", err))
		}
		s.mu.Lock()
		s.confirmed++
		if i >= 4095 {
			// Forget the settled front so the window stays bounded.
			s.tags = append(s.tags[:0], s.tags[i+1:]...)
			s.firstSeq += uint64(i + 1)
		}
		s.mu.Unlock()
	}
}

func (m *migration) reportEvery() time.Duration {
	if m.tty {
		return 200 * time.Millisecond
	}
	return 5 * time.Second
}

// report draws the progress bar: in place on a terminal, as lines
// otherwise.
func (m *migration) report(vhost, name string, done, total int, start time.Time, final bool) {
	if m.c.opts.quiet {
		return
	}
	if total < done {
		total = done
	}
	const width = 30
	filled := width
	if total > 0 {
		filled = done * width / total
	}
	rate := 0.0
	if s := time.Since(start).Seconds(); s > 0 {
		rate = float64(done) / s
	}
	label := name
	if vhost != "/" {
		label = vhost + "/" + name
	}
	line := fmt.Sprintf("%-28s [%s%s] %d/%d %.0f msg/s", label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total, rate)
	switch {
	case m.tty && final:
		fmt.Fprintf(m.progress, "\r%s\n", line)
	case m.tty:
		fmt.Fprintf(m.progress, "\r%s", line)
	default:
		fmt.Fprintln(m.progress, line)
	}
}
