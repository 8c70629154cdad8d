package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"

	"github.com/warrenmq/warren/amqpwire"
)

// Direct reply-to, as RabbitMQ serves it: an RPC client consumes from the
// pseudo-queue amq.rabbitmq.reply-to (automatic acks only, one such
// consumer per channel) and publishes requests with reply_to set to
// "amq.rabbitmq.reply-to" on the same channel; the broker rewrites that
// into a name of the channel's own, amq.rabbitmq.reply-to.<secret>, and a
// reply published to the default exchange with that name as routing key
// goes straight to the consumer, never through a queue. When the channel
// is gone the reply is unroutable.

const (
	replyToQueue  = "amq.rabbitmq.reply-to"
	replyToPrefix = "amq.rabbitmq.reply-to."
)

// replyTarget is a channel's direct reply-to consumer.
type replyTarget struct {
	ch   *channel
	name string // amq.rabbitmq.reply-to.<secret>
	tag  string
}

// replyConsume handles basic.consume on amq.rabbitmq.reply-to.
func (ch *channel) replyConsume(m *amqpwire.BasicConsume) error {
	if !m.NoAck {
		return amqpErr(amqpwire.PreconditionFailed, m, "reply consumer cannot acknowledge")
	}
	if ch.reply != nil {
		return amqpErr(amqpwire.PreconditionFailed, m, "reply consumer already set")
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
	var secret [24]byte
	rand.Read(secret[:])
	rt := &replyTarget{ch: ch, name: replyToPrefix + base64.RawURLEncoding.EncodeToString(secret[:]), tag: tag}
	ch.reply = rt
	ch.c.s.replies.Store(rt.name, rt)
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.BasicConsumeOk{ConsumerTag: tag})
	}
	return nil
}

// replyCancel removes the channel's reply consumer (basic.cancel of its
// tag, or the channel closing).
func (ch *channel) replyCancel() {
	if rt := ch.reply; rt != nil {
		ch.c.s.replies.Delete(rt.name)
		ch.reply = nil
	}
}

// rewriteReplyTo replaces reply_to "amq.rabbitmq.reply-to" by the channel's
// reply name, appending the new properties to arena; without a reply
// consumer on the channel it is RabbitMQ's 406.
func (ch *channel) rewriteReplyTo(props, arena []byte, m amqpwire.Method) ([]byte, []byte, error) {
	if len(props) < 2 || props[0]&byte(amqpwire.FlagReplyTo>>8) == 0 || !bytes.Contains(props, []byte(replyToQueue)) {
		return props, arena, nil
	}
	p, err := amqpwire.DecodeProperties(props)
	if err != nil || p.ReplyTo != replyToQueue {
		return props, arena, nil
	}
	if ch.reply == nil {
		return props, arena, amqpErr(amqpwire.PreconditionFailed, m, "fast reply consumer does not exist")
	}
	p.ReplyTo = ch.reply.name
	start := len(arena)
	arena = p.AppendTo(arena)
	return arena[start:len(arena):len(arena)], arena, nil
}

// deliverReply sends a reply to the channel whose reply name is key. It
// reports false when there is none (the reply is unroutable). A reply to
// a connection whose writer is far behind is dropped rather than queued
// without bound.
func (s *Server) deliverReply(key string, props, body []byte) bool {
	v, ok := s.replies.Load(key)
	if !ok {
		return false
	}
	rt := v.(*replyTarget)
	ch := rt.ch
	conn := ch.c
	if conn.backlogged.Load() {
		s.log.Warn().Str("reply_to", key).Msg("direct reply-to: reply dropped, the consumer's connection is not reading")
		return true
	}
	ch.umu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	conn.sendContent(ch.id, &amqpwire.BasicDeliver{ConsumerTag: rt.tag, DeliveryTag: tag, RoutingKey: key}, props, body)
	ch.umu.Unlock()
	s.totals.deliveredNoAck.Add(1)
	return true
}

// replyQueueDeclare answers queue.declare of the pseudo-queue or of a
// reply name: it exists (0 messages, 1 consumer) while its channel does.
func (ch *channel) replyQueueDeclare(m *amqpwire.QueueDeclare) (bool, error) {
	if m.Queue != replyToQueue && !strings.HasPrefix(m.Queue, replyToPrefix) {
		return false, nil
	}
	if m.Queue != replyToQueue {
		if _, ok := ch.c.s.replies.Load(m.Queue); !ok {
			return true, amqpErr(amqpwire.NotFound, m, "no queue '%s' in vhost '%s'", m.Queue, ch.c.vh.name)
		}
	}
	if !m.NoWait {
		ch.c.sendMethod(ch.id, &amqpwire.QueueDeclareOk{Queue: m.Queue, MessageCount: 0, ConsumerCount: 1})
	}
	return true, nil
}
