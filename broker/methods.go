package broker

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"sort"
	"strings"

	"github.com/warrenmq/warren/amqpwire"
)

// ---- exchange class ----

func (ch *channel) exchangeDeclare(m *amqpwire.ExchangeDeclare) error {
	vh := ch.c.vh
	if m.Passive {
		if _, ok := vh.exchange(m.Exchange); !ok {
			return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", m.Exchange, vh.name)
		}
		if !m.NoWait {
			ch.c.sendMethod(ch.id, &amqpwire.ExchangeDeclareOk{})
		}
		return nil
	}
	if m.Exchange == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if err := ch.c.checkPerm(permConfigure, "exchange", m.Exchange, m); err != nil {
		return err
	}
	if _, ok := vh.exchange(m.Exchange); !ok {
		if strings.HasPrefix(m.Exchange, "amq.") {
			return amqpErr(amqpwire.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", m.Exchange)
		}
		if err := checkTargetExchange(ch.c.checkPerm, m.Arguments, "alternate-exchange", "exchange", m.Exchange, vh.name, m); err != nil {
			return err
		}
	}
	if err := vh.declareExchange(m); err != nil {
		return err
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.ExchangeDeclareOk{})
	}
	return nil
}

func (ch *channel) exchangeDelete(m *amqpwire.ExchangeDelete) error {
	vh := ch.c.vh
	if m.Exchange == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if strings.HasPrefix(m.Exchange, "amq.") {
		return amqpErr(amqpwire.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", m.Exchange)
	}
	if err := ch.c.checkPerm(permConfigure, "exchange", m.Exchange, m); err != nil {
		return err
	}
	if err := vh.deleteExchange(m, m.Exchange, m.IfUnused); err != nil {
		return err
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.ExchangeDeleteOk{})
	}
	return nil
}

// exchangeBind handles exchange.bind and exchange.unbind.
func (ch *channel) exchangeBind(m amqpwire.Method, bind bool) error {
	var dst, src, key string
	var args amqpwire.Table
	var nowait bool
	switch m := m.(type) {
	case *amqpwire.ExchangeBind:
		dst, src, key, args, nowait = m.Destination, m.Source, m.RoutingKey, m.Arguments, m.NoWait
	case *amqpwire.ExchangeUnbind:
		dst, src, key, args, nowait = m.Destination, m.Source, m.RoutingKey, m.Arguments, m.NoWait
	}
	vh := ch.c.vh
	if src == "" || dst == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if err := ch.c.checkPerm(permWrite, "exchange", dst, m); err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "exchange", src, m); err != nil {
		return err
	}
	var err error
	if bind {
		err = vh.bind(m, src, dst, true, key, args)
	} else {
		err = vh.unbind(m, src, dst, true, key, args)
	}
	if err != nil {
		return err
	}
	if !nowait {
		if bind {
			ch.c.sendMethod(ch.id, &amqpwire.ExchangeBindOk{})
		} else {
			ch.c.sendMethod(ch.id, &amqpwire.ExchangeUnbindOk{})
		}
	}
	return nil
}

// ---- queue class ----

func (ch *channel) queueDeclare(m *amqpwire.QueueDeclare) error {
	vh := ch.c.vh
	if handled, err := ch.replyQueueDeclare(m); handled {
		return err
	}
	name := m.Queue
	if m.Passive {
		if err := ch.lastQueue(m, &name); err != nil {
			return err
		}
		q := vh.queueByName(name)
		if q == nil {
			return amqpErr(amqpwire.NotFound, m, "no queue '%s' in vhost '%s'", name, vh.name)
		}
		if err := q.checkOwner(ch.c, m); err != nil {
			return err
		}
		ch.lastDeclared = name
		msgs, cons := q.counts()
		if !m.NoWait {
			ch.c.sendMethod(ch.id, &amqpwire.QueueDeclareOk{Queue: name, MessageCount: msgs, ConsumerCount: cons})
		}
		return nil
	}
	if name == "" {
		if k := declaredType(m.Arguments, vh.defaultKind(), m.Durable, m.Exclusive, m.AutoDelete); k != kindClassic {
			return amqpErr(amqpwire.PreconditionFailed, m, "Cannot declare a server-named queue for type %s", k.module())
		}
		name = "amq.gen-" + randomID()
	} else if strings.HasPrefix(name, "amq.") {
		return amqpErr(amqpwire.AccessRefused, m, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	if err := ch.c.checkPerm(permConfigure, "queue", name, m); err != nil {
		return err
	}
	if vh.queueByName(name) == nil {
		if err := checkTargetExchange(ch.c.checkPerm, m.Arguments, "x-dead-letter-exchange", "queue", name, vh.name, m); err != nil {
			return err
		}
	}
	q, err := vh.declareQueue(ch.c, m, name)
	if err != nil {
		return err
	}
	ch.lastDeclared = name
	msgs, cons := q.counts()
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.QueueDeclareOk{Queue: name, MessageCount: msgs, ConsumerCount: cons})
	}
	return nil
}

// checkOwner refuses access to another connection's exclusive queue.
func (q *queue) checkOwner(c *conn, m amqpwire.Method) error {
	if q.exclusive && q.owner != c {
		return amqpErr(amqpwire.ResourceLocked, m, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. "+
			"It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
			q.name, q.vh.name)
	}
	return nil
}

// lastQueue applies RabbitMQ's shortcut: an empty queue name means the
// queue the channel declared last.
func (ch *channel) lastQueue(m amqpwire.Method, name *string) error {
	if *name != "" {
		return nil
	}
	if ch.lastDeclared == "" {
		return amqpErr(amqpwire.NotFound, m, "no previously declared queue")
	}
	*name = ch.lastDeclared
	return nil
}

// lookupQueue resolves a queue name for a method.
func (ch *channel) lookupQueue(m amqpwire.Method, name string) (*queue, error) {
	vh := ch.c.vh
	q := vh.queueByName(name)
	if q == nil {
		return nil, amqpErr(amqpwire.NotFound, m, "no queue '%s' in vhost '%s'", name, vh.name)
	}
	if err := q.checkOwner(ch.c, m); err != nil {
		return nil, err
	}
	return q, nil
}

func (ch *channel) queueBind(m *amqpwire.QueueBind) error {
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	if strings.HasPrefix(m.Queue, replyToPrefix) {
		return amqpErr(amqpwire.AccessRefused, m, "cannot bind or unbind to a volatile (direct reply-to) queue")
	}
	vh := ch.c.vh
	if m.Exchange == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	q, err := ch.lookupQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.c.checkPerm(permWrite, "queue", m.Queue, m); err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "exchange", m.Exchange, m); err != nil {
		return err
	}
	if err := vh.bind(m, m.Exchange, q.name, false, m.RoutingKey, m.Arguments); err != nil {
		return err
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.QueueBindOk{})
	}
	return nil
}

func (ch *channel) queueUnbind(m *amqpwire.QueueUnbind) error {
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	if strings.HasPrefix(m.Queue, replyToPrefix) {
		return amqpErr(amqpwire.AccessRefused, m, "cannot bind or unbind to a volatile (direct reply-to) queue")
	}
	vh := ch.c.vh
	if m.Exchange == "" {
		return amqpErr(amqpwire.AccessRefused, m, "operation not permitted on the default exchange")
	}
	q, err := ch.lookupQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.c.checkPerm(permWrite, "queue", m.Queue, m); err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "exchange", m.Exchange, m); err != nil {
		return err
	}
	if err := vh.unbind(m, m.Exchange, q.name, false, m.RoutingKey, m.Arguments); err != nil {
		return err
	}
	ch.c.sendMethod(ch.id, &amqpwire.QueueUnbindOk{})
	return nil
}

func (ch *channel) queuePurge(m *amqpwire.QueuePurge) error {
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	q, err := ch.lookupQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "queue", m.Queue, m); err != nil {
		return err
	}
	if q.kind == kindStream {
		return amqpErr(amqpwire.NotImplemented, m, "queue.purge not supported by stream queues queue '%s' in vhost '%s'", q.name, q.vh.name)
	}
	n := q.purge()
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.QueuePurgeOk{MessageCount: uint32(n)})
	}
	return nil
}

func (ch *channel) queueDelete(m *amqpwire.QueueDelete) error {
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	vh := ch.c.vh
	q := vh.queueByName(m.Queue)
	if q == nil {
		// Deleting a missing queue succeeds, as in RabbitMQ.
		if !m.NoWait {
			ch.c.sendMethod(ch.id, &amqpwire.QueueDeleteOk{})
		}
		return nil
	}
	if err := q.checkOwner(ch.c, m); err != nil {
		return err
	}
	if err := ch.c.checkPerm(permConfigure, "queue", m.Queue, m); err != nil {
		return err
	}
	msgs, cons := q.counts()
	if m.IfUnused && cons > 0 {
		return amqpErr(amqpwire.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", q.name, vh.name)
	}
	if m.IfEmpty && msgs > 0 {
		return amqpErr(amqpwire.PreconditionFailed, m, "queue '%s' in vhost '%s' is not empty", q.name, vh.name)
	}
	n, err := vh.deleteQueue(q, "deleted by client")
	if err != nil {
		return err
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.QueueDeleteOk{MessageCount: uint32(n)})
	}
	return nil
}

// ---- basic class ----

func (ch *channel) basicQos(m *amqpwire.BasicQos) error {
	if m.PrefetchSize != 0 {
		return amqpErr(amqpwire.NotImplemented, m, "prefetch_size!=0 (%d)", m.PrefetchSize)
	}
	if m.Global {
		ch.globalPrefetch.Store(int32(m.PrefetchCount))
	} else {
		ch.prefetch = m.PrefetchCount
		ch.infoPrefetch.Store(uint32(m.PrefetchCount))
	}
	ch.c.sendMethod(ch.id, &amqpwire.BasicQosOk{})
	// A raised limit may free credit.
	for _, q := range ch.consumerQueues() {
		q.kick()
	}
	return nil
}

func (ch *channel) consumerQueues() []*queue {
	ch.consMu.Lock()
	defer ch.consMu.Unlock()
	qs := make([]*queue, 0, len(ch.consumers))
	for _, c := range ch.consumers {
		qs = append(qs, c.q)
	}
	return qs
}

func (ch *channel) basicConsume(m *amqpwire.BasicConsume) error {
	if m.Queue == replyToQueue {
		return ch.replyConsume(m)
	}
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	q, err := ch.lookupQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "queue", m.Queue, m); err != nil {
		return err
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = "amq.ctag-" + randomID()
	}
	ch.consMu.Lock()
	_, dup := ch.consumers[tag]
	ch.consMu.Unlock()
	if dup {
		return amqpErr(amqpwire.NotAllowed, m, "attempt to reuse consumer tag '%s'", tag)
	}
	if max := ch.c.s.cfg.MaxConsumers; ch.c.consumers.Load() >= int64(max) {
		return amqpErr(amqpwire.PreconditionFailed, m, "reached maximum (%d) of consumers per connection", max)
	}
	c := &consumer{tag: tag, ch: ch, q: q, noAck: m.NoAck, exclusive: m.Exclusive,
		prefetch: int32(ch.prefetch), args: m.Arguments}
	if err := checkConsumeArgs(m, q); err != nil {
		return err
	}
	if p, ok := m.Arguments["x-priority"]; ok {
		n, _ := intArg(p)
		c.priority = int32(n)
	}
	if q.kind == kindStream {
		start, err := ch.checkStreamConsume(m, q)
		if err != nil {
			return err
		}
		c.start = start
	}
	ch.consMu.Lock()
	ch.consumers[tag] = c
	ch.consMu.Unlock()
	ch.c.consumers.Add(1)
	// consume-ok goes out once the queue accepted the consumer, and before
	// its first delivery.
	var ack func()
	if !m.NoWait {
		ack = func() { ch.c.sendMethod(ch.id, &amqpwire.BasicConsumeOk{ConsumerTag: tag}) }
	}
	ok, exclusiveUse := q.addConsumer(c, ack)
	if !ok {
		ch.consMu.Lock()
		delete(ch.consumers, tag)
		ch.consMu.Unlock()
		ch.c.consumers.Add(-1)
		if exclusiveUse {
			return amqpErr(amqpwire.AccessRefused, m, "queue '%s' in vhost '%s' in exclusive use", q.name, q.vh.name)
		}
		return amqpErr(amqpwire.NotFound, m, "no queue '%s' in vhost '%s'", q.name, q.vh.name)
	}
	return nil
}

func (ch *channel) basicCancel(m *amqpwire.BasicCancel) error {
	if ch.reply != nil && ch.reply.tag == m.ConsumerTag {
		ch.replyCancel()
		if !m.NoWait {
			ch.c.sendMethod(ch.id, &amqpwire.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
		return nil
	}
	ch.consMu.Lock()
	c := ch.consumers[m.ConsumerTag]
	delete(ch.consumers, m.ConsumerTag)
	ch.consMu.Unlock()
	if c != nil {
		ch.c.consumers.Add(-1)
		c.q.removeConsumer(c, true)
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.BasicCancelOk{ConsumerTag: m.ConsumerTag})
	}
	return nil
}

// serverCancel removes a consumer whose queue went away and tells the client
// if it asked for consumer_cancel_notify.
func (ch *channel) serverCancel(c *consumer) {
	ch.consMu.Lock()
	if ch.consumers[c.tag] != c {
		ch.consMu.Unlock()
		return
	}
	delete(ch.consumers, c.tag)
	ch.consMu.Unlock()
	ch.c.consumers.Add(-1)
	if ch.c.capCancelNotify {
		ch.c.sendMethod(ch.id, &amqpwire.BasicCancel{ConsumerTag: c.tag, NoWait: true})
	}
}

func (ch *channel) basicGet(m *amqpwire.BasicGet) error {
	if err := ch.lastQueue(m, &m.Queue); err != nil {
		return err
	}
	q, err := ch.lookupQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.c.checkPerm(permRead, "queue", m.Queue, m); err != nil {
		return err
	}
	if q.kind == kindStream {
		return amqpErr(amqpwire.NotImplemented, m, "basic.get not supported by stream queues queue '%s' in vhost '%s'", q.name, q.vh.name)
	}
	if c := ch.c; !m.NoAck && c.unacked.Load() >= c.s.cfg.MaxUnacked {
		// The connection's bound on unacked deliveries holds for basic.get
		// too: the client sees an empty queue, as a consumer at the bound
		// gets nothing more, until it acks.
		if !c.unackedCapped.Swap(true) {
			c.log.Warn().Int64("max_unacked", c.s.cfg.MaxUnacked).Str("queue", q.name).
				Msg("basic.get answered empty: the connection holds --max-unacked deliveries awaiting an ack")
		}
		ch.c.sendMethod(ch.id, &amqpwire.BasicGetEmpty{})
		return nil
	}
	ok, msg := q.get(ch, m.NoAck)
	if ok == nil {
		ch.c.sendMethod(ch.id, &amqpwire.BasicGetEmpty{})
		return nil
	}
	ch.c.sendContent(ch.id, ok, msg.Record.Props, msg.Record.Body)
	return nil
}

func (ch *channel) basicRecover(m amqpwire.Method, requeue bool) error {
	if !requeue {
		return amqpErr(amqpwire.NotImplemented, m, "requeue=false")
	}
	ch.requeueAll(false)
	if _, ok := m.(*amqpwire.BasicRecover); ok {
		ch.c.sendMethod(ch.id, &amqpwire.BasicRecoverOk{})
	}
	return nil
}

// sendReturn sends basic.return with the message content.
func (c *conn) sendReturn(ch uint16, code uint16, text, exchange, key string, props, body []byte) {
	c.sendContent(ch, &amqpwire.BasicReturn{ReplyCode: code, ReplyText: text, Exchange: exchange, RoutingKey: key}, props, body)
}

// randomID makes the random part of server-generated names, as RabbitMQ's
// amq.gen-... and amq.ctag-... (22 URL-safe base64 characters).
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkConsumeArgs checks basic.consume arguments as RabbitMQ 4.x does
// (rabbit_amqqueue:check_consume_arguments): x-priority must be an
// integer, and an argument only another queue type supports is refused.
func checkConsumeArgs(m *amqpwire.BasicConsume, q *queue) error {
	rs := "queue '" + q.name + "' in vhost '" + q.vh.name + "'"
	supported := consumerArgs[q.kind]
	if v, ok := m.Arguments["x-priority"]; ok && slices.Contains(supported, "x-priority") {
		if term := checkInt(v, nil); term != "" {
			return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg 'x-priority' for %s: %s", rs, term)
		}
	}
	if v, ok := m.Arguments["x-consumer-timeout"]; ok && slices.Contains(supported, "x-consumer-timeout") {
		if term := checkNonNegInt(v, nil); term != "" {
			return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg 'x-consumer-timeout' for %s: %s", rs, term)
		}
	}
	keys := make([]string, 0, len(m.Arguments))
	for k := range m.Arguments {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(supported, k) {
			continue
		}
		for _, other := range consumerArgs {
			if slices.Contains(other, k) {
				return amqpErr(amqpwire.PreconditionFailed, m, "invalid arg '%s' for %s of queue type %s", k, rs, q.kind.module())
			}
		}
	}
	return nil
}

// intArg reads an integer-valued argument of any AMQP integer type.
func intArg(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case uint8:
		return int64(n), true
	case int16:
		return int64(n), true
	case uint16:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}
