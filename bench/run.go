package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// stopGrace is how long clients get to close cleanly once the run stops
// before their sockets are closed under them.
const stopGrace = 3 * time.Second

// Run executes one load-generation run described by cfg and returns its
// result. It declares the topology (unless cfg.Predeclared), connects the
// producers and consumers, runs until cfg.Duration elapses, the message
// counts are reached, ctx ends or a client fails, then deletes what it
// declared (unless cfg.KeepTopology).
//
// The error wraps ErrConfig, ErrConnect, ErrTopology, ErrBroker or
// ErrCancelled; on failure the Result still holds what was measured. When ctx
// ends the run stops early and Run returns the result with ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{Config: cfg.redacted()}, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.BacklogSlice == 0 {
		cfg.BacklogSlice = 100_000
	}
	if cfg.ID == "" {
		cfg.ID = "warrenperf-" + time.Now().Format("150405")
	}
	r := newRunner(cfg)
	return r.run(ctx)
}

type runner struct {
	cfg    Config
	queues []string
	keys   []string // topic routing keys, nil unless TopicBindings

	stop     chan struct{} // closed when the load phase ends
	stopOnce sync.Once
	stopping atomic.Bool

	errMu sync.Mutex
	err   error

	producers []*producer
	consumers []*consumer
	churners  []*churner
	admins    []*client

	// shared holds the connections producers and consumers share with
	// ChannelsPerConnection, by group name.
	sharedMu sync.Mutex
	shared   map[string]*sharedConn

	broker *brokerWatch

	backlogDone   atomic.Int64 // messages published (confirmed, with confirms) in backlog mode
	backlogMu     sync.Mutex
	backlogMarks  []time.Time // time each slice boundary was crossed
	backlogStart  time.Time
	publishedDone chan struct{} // closed when every producer finished its share

	rep *reporter
}

func newRunner(cfg Config) *runner {
	r := &runner{
		cfg:           cfg,
		queues:        cfg.QueueNames(),
		stop:          make(chan struct{}),
		publishedDone: make(chan struct{}),
		shared:        map[string]*sharedConn{},
		broker:        newBrokerWatch(cfg.BrokerPID, cfg.BrokerDir),
	}
	if cfg.TopicBindings > 0 {
		r.keys = make([]string, cfg.TopicBindings)
		for i := range r.keys {
			r.keys[i] = topicKey(i)
		}
	}
	return r
}

// topicPattern and topicKey define the --topic-bindings topology: binding i
// matches key i and no other key.
func topicPattern(i int) string {
	if i%2 == 0 {
		return "stock." + strconv.Itoa(i) + ".*"
	}
	return "#." + strconv.Itoa(i)
}

func topicKey(i int) string {
	if i%2 == 0 {
		return "stock." + strconv.Itoa(i) + ".quote"
	}
	return "trade.eu." + strconv.Itoa(i)
}

// fail records the first error and stops the run.
func (r *runner) fail(err error) {
	if err == nil {
		return
	}
	r.errMu.Lock()
	if r.err == nil && !r.stopping.Load() {
		r.err = err
	}
	r.errMu.Unlock()
	r.halt()
}

func (r *runner) halt() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		close(r.stop)
	})
}

func (r *runner) firstErr() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *runner) setupTimeout() time.Duration {
	return max(30*time.Second, 10*r.cfg.DialTimeout)
}

func (r *runner) run(ctx context.Context) (Result, error) {
	res := Result{ID: r.cfg.ID, Config: r.cfg.redacted()}

	// Stop on the caller's context.
	ctxDone := make(chan struct{})
	defer close(ctxDone)
	go func() {
		select {
		case <-ctx.Done():
			r.halt()
		case <-ctxDone:
		}
	}()

	var bres *BrokerResult
	if r.broker != nil {
		bres = &BrokerResult{PID: r.cfg.BrokerPID, Base: r.broker.sample()}
		res.Broker = bres
	}
	if err := r.setupTopology(ctx); err != nil {
		r.closeAdmins()
		return res, err
	}
	defer r.cleanupTopology()

	r.rep = newReporter(r)
	for i := range r.cfg.Producers {
		r.producers = append(r.producers, newProducer(r, i))
	}
	for j := range r.cfg.Consumers {
		r.consumers = append(r.consumers, newConsumer(r, j))
	}
	for k := range r.cfg.Churn {
		r.churners = append(r.churners, newChurner(r, k))
	}

	backlog := r.cfg.Backlog > 0
	clients := make([]starter, 0, len(r.producers)+len(r.consumers)+len(r.churners))
	if r.cfg.ExclusiveQueues {
		// Producers publish to the consumers' queues: those come first.
		if err := r.connectAll(consumersAsStarters(r.consumers)); err != nil {
			r.halt()
			r.shutdown()
			return res, err
		}
	}
	for _, p := range r.producers {
		clients = append(clients, p)
	}
	if !backlog && !r.cfg.ExclusiveQueues {
		for _, c := range r.consumers {
			clients = append(clients, c)
		}
	}
	for _, c := range r.churners {
		clients = append(clients, c)
	}
	if err := r.connectAll(clients); err != nil {
		r.halt()
		r.shutdown()
		return res, err
	}
	if bres != nil {
		bres.Connected = r.broker.sample()
		bres.Connections = r.connections()
		bres.Queues = len(r.queues)
		if r.cfg.Predeclared {
			bres.Queues = 0
		}
		if r.cfg.ExclusiveQueues {
			bres.Queues += len(r.consumers)
		}
	}

	startCPU := cpuTime()
	start := time.Now()
	res.Start = start
	r.rep.start(start)
	if r.broker != nil {
		r.broker.watchLoad(start)
	}
	if r.cfg.Duration > 0 {
		t := time.AfterFunc(r.cfg.Duration, r.halt)
		defer t.Stop()
	}

	var prodWG, consWG sync.WaitGroup
	for _, p := range r.producers {
		prodWG.Go(func() { r.fail(p.loop()) })
	}
	if !backlog {
		for _, c := range r.consumers {
			consWG.Go(func() { r.fail(c.loop(0)) })
		}
	}
	for _, c := range r.churners {
		consWG.Go(func() { r.fail(c.loop()) })
	}

	var drainStart, drainEnd time.Time
	var published time.Time
	if backlog {
		r.backlogStart = start
		prodWG.Wait()
		published = time.Now()
		if !r.stopping.Load() && len(r.consumers) > 0 {
			target, err := r.drainTarget()
			if err != nil {
				r.fail(err)
			} else if err := r.connectAll(consumersAsStarters(r.consumers)); err != nil {
				r.fail(err)
			} else {
				drainStart = time.Now()
				for _, c := range r.consumers {
					consWG.Go(func() { r.fail(c.loop(-1)) })
				}
				drainEnd = r.waitDrained(target)
			}
		}
		r.halt()
	} else {
		go func() {
			prodWG.Wait()
			consWG.Wait()
			r.halt()
		}()
		<-r.stop
	}
	end := time.Now()
	if drainEnd.IsZero() {
		drainEnd = end
	}
	cpu := cpuTime() - startCPU
	if bres != nil {
		bres.LoadPeakRSSBytes = r.broker.stopLoad()
		bres.End = r.broker.sample()
	}
	prodWG.Wait()
	if r.cfg.Settle > 0 && bres != nil && ctx.Err() == nil {
		// The load has stopped; the connections stay open and idle.
		t := time.NewTimer(r.cfg.Settle)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		idle := r.broker.sample()
		bres.Idle = &idle
	}

	r.shutdown()
	prodWG.Wait()
	consWG.Wait()
	r.rep.finish(end)

	res.Elapsed = end.Sub(start).Seconds()
	r.rep.fill(&res)
	res.ClientCPUSeconds = cpu.Seconds()
	if n := res.Sent + res.Received; n > 0 && cpu > 0 {
		res.ClientCPUMicrosPerMessage = float64(cpu.Microseconds()) / float64(n)
	}
	if backlog {
		res.Backlog = r.backlogResult(start, published, drainStart, drainEnd, res.Received)
	}
	if len(r.churners) > 0 {
		res.Churn = r.churnResult(res.Elapsed)
	}
	if bres != nil {
		if n := res.Sent + res.Received; n > 0 {
			bres.CPUMicrosPerMessage = (bres.End.CPUSeconds - bres.Connected.CPUSeconds) * 1e6 / float64(n)
		}
	}

	if err := r.firstErr(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: run interrupted: %w", err)
	}
	return res, nil
}

func consumersAsStarters(cs []*consumer) []starter {
	out := make([]starter, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// distribute splits total into n shares differing by at most one.
func distribute(total int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = total / int64(n)
		if int64(i) < total%int64(n) {
			out[i]++
		}
	}
	return out
}

// starter is a producer or consumer that connects before the run starts.
type starter interface {
	connect() error
	close(force bool)
}

// connectAll connects clients, at most 16 at a time, and returns the first
// failure.
func (r *runner) connectAll(cs []starter) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, c := range cs {
		sem <- struct{}{}
		if r.stopping.Load() {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.connect(); err != nil {
				once.Do(func() { first = err })
				r.fail(err)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := r.firstErr(); err != nil {
		return err
	}
	return nil
}

// shutdown closes every client: politely first, then by closing sockets
// still open after stopGrace.
func (r *runner) shutdown() {
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, p := range r.producers {
		wg.Go(func() { p.close(false) })
	}
	for _, c := range r.consumers {
		wg.Go(func() { c.close(false) })
	}
	for _, c := range r.churners {
		wg.Go(func() { c.close(false) })
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		for _, p := range r.producers {
			p.close(true)
		}
		for _, c := range r.consumers {
			c.close(true)
		}
		for _, c := range r.churners {
			c.close(true)
		}
		<-done
	}
	r.sharedMu.Lock()
	shared := r.shared
	r.shared = map[string]*sharedConn{}
	r.sharedMu.Unlock()
	var swg sync.WaitGroup
	for _, sc := range shared {
		if sc.err == nil {
			swg.Go(func() { sc.c.close(false) })
		}
	}
	swg.Wait()
}

// client is one AMQP connection with one channel, as every producer and
// consumer has.
type client struct {
	r      *runner
	name   string
	uri    string
	conn   *amqp.Connection
	raw    net.Conn
	ch     *amqp.Channel
	connC  chan *amqp.Error
	chanC  chan *amqp.Error
	closed atomic.Bool
	mu     sync.Mutex // guards raw during connect

	// wire is the connection of a producer or consumer of the fast engine;
	// wireDone, when not nil, closes when its reader goroutine ends.
	wire     *wireConn
	wireDone <-chan struct{}

	// group, when set, names the connection this client shares with
	// others (ChannelsPerConnection): it opens only a channel on it.
	group  string
	shared *sharedConn
}

// sharedConn is one connection that several producers or consumers use, a
// channel each.
type sharedConn struct {
	once sync.Once
	c    *client // its connection, dialled once
	err  error
}

func (r *runner) newClient(name, uri string) *client {
	return &client{r: r, name: name, uri: uri}
}

// groupOf names the shared connection of the i-th producer or consumer
// (role), or "" when each has a connection of its own.
func (r *runner) groupOf(role string, i int) string {
	if r.cfg.ChannelsPerConnection <= 1 {
		return ""
	}
	return fmt.Sprintf("%s-%ss-%d", r.cfg.ID, role, i/r.cfg.ChannelsPerConnection)
}

// connections counts the connections the run's producers, consumers and
// churn workers open.
func (r *runner) connections() int {
	n := len(r.churners)
	if cpc := r.cfg.ChannelsPerConnection; cpc > 1 {
		n += (len(r.producers)+cpc-1)/cpc + (len(r.consumers)+cpc-1)/cpc
	} else {
		n += len(r.producers) + len(r.consumers)
	}
	return n
}

// open dials the broker (or joins the client's shared connection) and
// opens one channel, all within the dial timeout and the setup timeout.
func (c *client) open() error {
	if c.group == "" {
		return c.dial(true)
	}
	c.r.sharedMu.Lock()
	sc := c.r.shared[c.group]
	if sc == nil {
		sc = &sharedConn{c: c.r.newClient(c.group, c.uri)}
		c.r.shared[c.group] = sc
	}
	c.r.sharedMu.Unlock()
	sc.once.Do(func() { sc.err = sc.c.dial(false) })
	if sc.err != nil {
		return sc.err
	}
	c.shared = sc
	c.conn = sc.c.conn
	c.connC = c.conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("%w to %s: open channel: %s", ErrConnect, Redact(c.uri), oneLine(err))
	}
	c.ch = ch
	c.chanC = ch.NotifyClose(make(chan *amqp.Error, 1))
	return nil
}

// dial connects, and opens a channel when withChannel.
func (c *client) dial(withChannel bool) error {
	cfg := c.r.cfg
	props := amqp.NewConnectionProperties()
	props["connection_name"] = c.name
	props["product"] = "warrenperf"
	amqpCfg := amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: cfg.DialTimeout}
			nc, err := d.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			if err := nc.SetDeadline(time.Now().Add(cfg.DialTimeout)); err != nil {
				nc.Close()
				return nil, err
			}
			c.mu.Lock()
			c.raw = nc
			c.mu.Unlock()
			return nc, nil
		},
	}
	conn, err := amqp.DialConfig(c.uri, amqpCfg)
	if err != nil {
		return fmt.Errorf("%w to %s: %s", ErrConnect, Redact(c.uri), oneLine(err))
	}
	c.conn = conn
	c.connC = conn.NotifyClose(make(chan *amqp.Error, 1))
	if !withChannel {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return fmt.Errorf("%w to %s: open channel: %s", ErrConnect, Redact(c.uri), oneLine(err))
	}
	c.ch = ch
	c.chanC = ch.NotifyClose(make(chan *amqp.Error, 1))
	return nil
}

// guard closes the socket if fn has not returned within the setup timeout,
// which unblocks any AMQP call waiting for a reply.
func (c *client) guard(what string, fn func() error) error {
	var expired atomic.Bool
	t := time.AfterFunc(c.r.setupTimeout(), func() {
		expired.Store(true)
		c.close(true)
	})
	err := fn()
	t.Stop()
	if err != nil && expired.Load() {
		return fmt.Errorf("%w: %s: no reply from %s within %s", ErrTopology, what, Redact(c.uri), c.r.setupTimeout())
	}
	return err
}

// reason turns a failed call into an error naming why the broker closed the
// channel or connection, waiting briefly for the close notification.
func (c *client) reason(what string, err error) error {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case e, ok := <-c.chanC:
		if ok && e != nil {
			return fmt.Errorf("%w: %s on %s: %s", ErrBroker, what, Redact(c.uri), oneLine(e))
		}
	case e, ok := <-c.connC:
		if ok && e != nil {
			return fmt.Errorf("%w: %s on %s: connection: %s", ErrBroker, what, Redact(c.uri), oneLine(e))
		}
	case <-t.C:
	}
	if err == nil {
		err = errors.New("channel closed")
	}
	return fmt.Errorf("%w: %s on %s: %s", ErrBroker, what, Redact(c.uri), oneLine(err))
}

// close closes the connection; force closes the socket without a handshake.
// A client on a shared connection closes its channel (force closes the
// shared socket); runner.shutdown closes the shared connections.
func (c *client) close(force bool) {
	if c.wire != nil {
		c.wire.closeConn(force, c.wireDone)
		return
	}
	if c.shared != nil {
		if force {
			c.shared.c.close(true)
			return
		}
		if !c.closed.Swap(true) && c.ch != nil {
			_ = c.ch.Close()
		}
		return
	}
	if force {
		c.mu.Lock()
		raw := c.raw
		c.mu.Unlock()
		if raw != nil {
			raw.Close()
		}
		return
	}
	if c.closed.Swap(true) || c.conn == nil {
		return
	}
	_ = c.conn.CloseDeadline(time.Now().Add(stopGrace))
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// setupTopology opens one admin connection per distinct broker and declares
// exchanges, queues and bindings on each, purging the declared queues.
func (r *runner) setupTopology(ctx context.Context) error {
	seen := map[string]bool{}
	for _, u := range r.cfg.URIs {
		if seen[u] {
			continue
		}
		seen[u] = true
		a := r.newClient(r.cfg.ID+"-admin", u)
		if err := a.open(); err != nil {
			return err
		}
		r.admins = append(r.admins, a)
		if ctx.Err() != nil {
			return fmt.Errorf("bench: run interrupted: %w", ctx.Err())
		}
		if r.cfg.Predeclared {
			continue
		}
		if err := a.guard("declare", func() error { return r.declare(a) }); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) declaresExchange() bool {
	return r.cfg.Exchange != "" && !strings.HasPrefix(r.cfg.Exchange, "amq.")
}

func (r *runner) declare(a *client) error {
	cfg := r.cfg
	durable := cfg.durable()
	wrap := func(what string, err error) error {
		e := a.reason(what, err)
		return fmt.Errorf("%w: %w", ErrTopology, e)
	}
	if r.declaresExchange() {
		if err := a.ch.ExchangeDeclare(cfg.Exchange, cfg.ExchangeType, durable, false, false, false, nil); err != nil {
			return wrap("declare exchange "+strconv.Quote(cfg.Exchange), err)
		}
	}
	// Thousands of queues are declared without waiting for each reply; a
	// failure closes the channel, which the last, synchronous call sees.
	noWait := len(r.queues) > manyQueues
	for _, q := range r.queues {
		if noWait {
			if _, err := a.ch.QueueDeclare(q, durable, false, false, true, amqp.Table(cfg.QueueArgs)); err != nil {
				return wrap("declare queue "+strconv.Quote(q), err)
			}
		} else if _, err := a.ch.QueueDeclare(q, durable, false, false, false, amqp.Table(cfg.QueueArgs)); err != nil {
			return wrap("declare queue "+strconv.Quote(q), err)
		}
		if !cfg.stream() { // a stream cannot be purged
			if _, err := a.ch.QueuePurge(q, noWait); err != nil {
				return wrap("purge queue "+strconv.Quote(q), err)
			}
		}
		if cfg.Exchange == "" || cfg.TopicBindings > 0 {
			continue
		}
		key := cfg.RoutingKey
		if key == "" {
			key = q
		}
		if err := a.ch.QueueBind(q, key, cfg.Exchange, noWait, nil); err != nil {
			return wrap("bind queue "+strconv.Quote(q), err)
		}
	}
	for i := range cfg.TopicBindings {
		q := r.queues[i%len(r.queues)]
		if err := a.ch.QueueBind(q, topicPattern(i), cfg.Exchange, false, nil); err != nil {
			return wrap("bind queue "+strconv.Quote(q), err)
		}
	}
	if noWait {
		q := r.queues[len(r.queues)-1]
		if _, err := a.ch.QueueDeclarePassive(q, durable, false, false, false, amqp.Table(cfg.QueueArgs)); err != nil {
			return wrap("declare queues", err)
		}
	}
	return nil
}

// manyQueues is the queue count above which topology calls do not wait for
// each reply.
const manyQueues = 1000

// drainTarget returns the messages ready in the run's queues on every
// broker: what the consumers of a backlog run drain.
func (r *runner) drainTarget() (int64, error) {
	if r.cfg.stream() {
		// A stream keeps everything, and RabbitMQ 3.x does not count it
		// in queue.declare-ok: the consumers replay what was published.
		return r.cfg.Backlog, nil
	}
	var total int64
	for _, a := range r.admins {
		err := a.guard("inspect", func() error {
			for _, q := range r.queues {
				st, err := a.ch.QueueDeclarePassive(q, r.cfg.durable(), false, false, false, amqp.Table(r.cfg.QueueArgs))
				if err != nil {
					return fmt.Errorf("%w: %w", ErrTopology, a.reason("inspect queue "+strconv.Quote(q), err))
				}
				total += int64(st.Messages)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

// waitDrained polls the consumers until they received target messages or the
// run stops, and returns when that happened.
func (r *runner) waitDrained(target int64) time.Time {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		var got uint64
		for _, c := range r.consumers {
			got += c.received.Load()
		}
		if int64(got) >= target {
			return time.Now()
		}
		select {
		case <-t.C:
		case <-r.stop:
			return time.Now()
		}
	}
}

// cleanupTopology deletes what setupTopology declared, best effort, and
// closes the admin connections.
func (r *runner) cleanupTopology() {
	defer r.closeAdmins()
	if r.cfg.Predeclared || r.cfg.KeepTopology {
		return
	}
	for _, a := range r.admins {
		_ = a.guard("delete", func() error {
			for _, q := range r.queues {
				if a.ch.IsClosed() {
					ch, err := a.conn.Channel()
					if err != nil {
						return err
					}
					a.ch = ch
				}
				_, _ = a.ch.QueueDelete(q, false, false, len(r.queues) > manyQueues)
			}
			if len(r.queues) > manyQueues && !a.ch.IsClosed() {
				// Wait for the deletes sent without waiting.
				_, _ = a.ch.QueueDeclarePassive("amq.gen-warrenperf-none", false, false, false, false, nil)
			}
			if r.declaresExchange() && !a.ch.IsClosed() {
				_ = a.ch.ExchangeDelete(r.cfg.Exchange, false, false)
			}
			return nil
		})
	}
}

func (r *runner) closeAdmins() {
	for _, a := range r.admins {
		a.close(false)
	}
}

// producer publishes on its own connection from one goroutine.
type producer struct {
	*client
	id       int
	exchange string
	key      string
	limit    int64
	rng      *rand.Rand
	body     *bodyWriter
	confirms chan amqp.Confirmation
	returns  chan amqp.Return
	fast     *fastProducer // the fast engine's state, nil with amqp091

	sent      atomic.Uint64
	confirmed atomic.Uint64
	nacked    atomic.Uint64
	returned  atomic.Uint64
	_         [64]byte // keep hot counters of neighbours apart
}

func newProducer(r *runner, i int) *producer {
	cfg := r.cfg
	uri := cfg.URIs[i%len(cfg.URIs)]
	p := &producer{
		client:   r.newClient(fmt.Sprintf("%s-producer-%d", cfg.ID, i), uri),
		id:       i,
		exchange: cfg.Exchange,
		key:      cfg.RoutingKey,
		limit:    cfg.ProducerMessages,
		rng:      rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano()))),
	}
	p.group = r.groupOf("producer", i)
	if p.key == "" {
		p.key = r.queues[i%len(r.queues)]
	}
	if cfg.Backlog > 0 {
		p.limit = distribute(cfg.Backlog, cfg.Producers)[i]
	}
	p.body = newBodyWriter(cfg.BodyKind, cfg.Size, uint32(i), p.rng)
	return p
}

func (p *producer) connect() error {
	if p.r.cfg.fast() {
		return p.connectFast()
	}
	if err := p.open(); err != nil {
		return err
	}
	return p.guard("set up producer", func() error {
		if p.r.cfg.Confirm > 0 {
			if err := p.ch.Confirm(false); err != nil {
				return p.reason("confirm.select", err)
			}
			// At most Confirm publishes are unconfirmed and the library
			// delivers one Confirmation per tag, so this never fills up.
			p.confirms = p.ch.NotifyPublish(make(chan amqp.Confirmation, p.r.cfg.Confirm+1))
		}
		if p.r.cfg.Mandatory {
			p.returns = p.ch.NotifyReturn(make(chan amqp.Return, 256))
			go func() {
				for range p.returns {
					p.returned.Add(1)
				}
			}()
		}
		return nil
	})
}

func (p *producer) confirm(c amqp.Confirmation) {
	if c.Ack {
		p.confirmed.Add(1)
		if p.r.cfg.Backlog > 0 {
			p.r.backlogPublished(1)
		}
	} else {
		p.nacked.Add(1)
	}
}

// loop publishes until its limit, the end of the run or a failure.
func (p *producer) loop() error {
	if p.fast != nil {
		return p.loopFast()
	}
	cfg := p.r.cfg
	stop := p.r.stop
	window := cfg.Confirm
	mode := amqp.Transient
	if cfg.Persistent {
		mode = amqp.Persistent
	}
	pub := amqp.Publishing{DeliveryMode: mode}
	if cfg.BodyKind == BodyJSON {
		pub.ContentType = "application/json"
	}
	var pace *pacer
	if cfg.Rate > 0 {
		pace = newPacer(cfg.Rate)
	}
	outstanding := 0
	for n := int64(0); p.limit == 0 || n < p.limit; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		if pace != nil && !pace.wait(stop) {
			return nil
		}
		if window > 0 {
		drain:
			for {
				select {
				case c, ok := <-p.confirms:
					if !ok {
						return p.stopped("publish", nil)
					}
					outstanding--
					p.confirm(c)
					continue
				default:
				}
				if outstanding < window {
					break drain
				}
				select {
				case c, ok := <-p.confirms:
					if !ok {
						return p.stopped("publish", nil)
					}
					outstanding--
					p.confirm(c)
				case <-stop:
					return nil
				}
			}
		}
		key := p.key
		if p.r.keys != nil {
			key = p.r.keys[p.rng.IntN(len(p.r.keys))]
		} else if cs := p.r.consumers; cfg.ExclusiveQueues && len(cs) > 0 {
			// Replies to the RPC clients' queues, each in turn.
			key = cs[(p.id+int(n))%len(cs)].queue
		}
		pub.Body = p.body.stamp(time.Now().UnixNano())
		if cfg.Priorities > 0 {
			pub.Priority = uint8(n % int64(cfg.Priorities))
		}
		if err := p.ch.Publish(p.exchange, key, cfg.Mandatory, false, pub); err != nil {
			return p.stopped("publish", err)
		}
		p.sent.Add(1)
		if window > 0 {
			outstanding++
		} else if cfg.Backlog > 0 {
			p.r.backlogPublished(1)
		}
	}
	// Limited run: wait for the last confirms.
	for outstanding > 0 {
		select {
		case c, ok := <-p.confirms:
			if !ok {
				return p.stopped("publish", nil)
			}
			outstanding--
			p.confirm(c)
		case <-stop:
			return nil
		}
	}
	return nil
}

// stopped classifies a failed call: nil when the run is stopping anyway,
// else the broker's reason.
func (c *client) stopped(what string, err error) error {
	if c.r.stopping.Load() {
		return nil
	}
	return c.reason(what, err)
}

// backlogPublished counts n published backlog messages and stamps the slice
// boundaries they cross.
func (r *runner) backlogPublished(n int64) {
	after := r.backlogDone.Add(n)
	before := after - n
	s := r.cfg.BacklogSlice
	if s <= 0 || before/s == after/s {
		return
	}
	now := time.Now()
	r.backlogMu.Lock()
	for k := before/s + 1; k <= after/s; k++ {
		r.backlogMarks = append(r.backlogMarks, now)
	}
	r.backlogMu.Unlock()
}

func (r *runner) backlogResult(start, published, drainStart, drainEnd time.Time, received uint64) *BacklogResult {
	b := &BacklogResult{Messages: r.backlogDone.Load()}
	if !published.IsZero() {
		b.PublishSeconds = published.Sub(start).Seconds()
		if b.PublishSeconds > 0 {
			b.PublishRate = float64(b.Messages) / b.PublishSeconds
		}
	}
	r.backlogMu.Lock()
	prev := start
	for i, t := range r.backlogMarks {
		d := t.Sub(prev).Seconds()
		sl := SliceRate{From: int64(i) * r.cfg.BacklogSlice, To: int64(i+1) * r.cfg.BacklogSlice}
		if d > 0 {
			sl.Rate = float64(r.cfg.BacklogSlice) / d
		}
		b.Slices = append(b.Slices, sl)
		prev = t
	}
	r.backlogMu.Unlock()
	if !drainStart.IsZero() {
		b.DrainSeconds = drainEnd.Sub(drainStart).Seconds()
		b.Drained = received
		if b.DrainSeconds > 0 {
			b.DrainRate = float64(received) / b.DrainSeconds
		}
	}
	return b
}

// consumer consumes one queue on its own connection from one goroutine.
type consumer struct {
	*client
	id       int
	queue    string
	tag      string
	cancels  chan string
	delivery <-chan amqp.Delivery
	fast     *fastConsumer // the fast engine's state, nil with amqp091

	mu    sync.Mutex // guards cur
	cur   *Histogram // latencies being recorded
	spare *Histogram // owned by the reporter

	received atomic.Uint64
	_        [64]byte
}

func newConsumer(r *runner, j int) *consumer {
	cfg := r.cfg
	c := &consumer{
		client: r.newClient(fmt.Sprintf("%s-consumer-%d", cfg.ID, j), cfg.URIs[j%len(cfg.URIs)]),
		id:     j,
		queue:  r.queues[j%len(r.queues)],
		tag:    fmt.Sprintf("warrenperf-%d", j),
		cur:    NewHistogram(),
		spare:  NewHistogram(),
	}
	c.group = r.groupOf("consumer", j)
	return c
}

func (c *consumer) connect() error {
	if c.r.cfg.fast() {
		return c.connectFast()
	}
	if err := c.open(); err != nil {
		return err
	}
	return c.guard("set up consumer", func() error {
		cfg := c.r.cfg
		if cfg.Prefetch > 0 {
			if err := c.ch.Qos(cfg.Prefetch, 0, false); err != nil {
				return c.reason("basic.qos", err)
			}
		}
		if cfg.ExclusiveQueues {
			q, err := c.ch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrTopology, c.reason("declare an exclusive queue", err))
			}
			c.queue = q.Name
		}
		c.cancels = c.ch.NotifyCancel(make(chan string, 1))
		d, err := c.ch.Consume(c.queue, c.tag, cfg.AutoAck, false, false, false, amqp.Table(cfg.ConsumerArgs))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrTopology, c.reason("consume from queue "+strconv.Quote(c.queue), err))
		}
		c.delivery = d
		return nil
	})
}

// loop consumes until limit messages (0: cfg.ConsumerMessages, itself 0 for
// unlimited; negative: unlimited), the end of the run or a failure.
func (c *consumer) loop(limit int64) error {
	if c.fast != nil {
		return c.loopFast(limit)
	}
	cfg := c.r.cfg
	if limit == 0 {
		limit = cfg.ConsumerMessages
	}
	limit = max(limit, 0)
	stop := c.r.stop
	every := uint64(max(cfg.MultiAckEvery, 1))
	var pace *pacer
	if cfg.ConsumerRate > 0 {
		pace = newPacer(cfg.ConsumerRate)
	}
	var n uint64
	for limit == 0 || int64(n) < limit {
		if pace != nil && !pace.wait(stop) {
			return nil
		}
		select {
		case d, ok := <-c.delivery:
			if !ok {
				if c.r.stopping.Load() {
					return nil
				}
				select {
				case <-c.cancels:
					return fmt.Errorf("%w: consumer %d on %s: queue %q was deleted or cancelled",
						ErrCancelled, c.id, Redact(c.uri), c.queue)
				default:
				}
				return c.reason("consume from queue "+strconv.Quote(c.queue), nil)
			}
			now := time.Now().UnixNano()
			if ts, ok := publishTime(cfg.BodyKind, d.Body); ok {
				c.mu.Lock()
				c.cur.Record(now - ts)
				c.mu.Unlock()
			}
			n++
			c.received.Add(1)
			if !cfg.AutoAck && (n%every == 0 || (limit > 0 && int64(n) == limit)) {
				if err := d.Ack(every > 1); err != nil {
					return c.stopped("ack", err)
				}
			}
		case <-stop:
			return nil
		}
	}
	_ = c.ch.Cancel(c.tag, false)
	return nil
}
