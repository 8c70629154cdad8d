package broker

import (
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// The consumer timeout, as RabbitMQ's consumer_timeout: a channel holding
// a delivery unacknowledged for longer than Config.ConsumerTimeout is
// closed with 406 PRECONDITION_FAILED, and its unacked deliveries go back
// to their queues. A checker goroutine looks at the oldest unacked
// delivery of every channel a few times per timeout.

// consumerTimeoutLoop runs the check until the server shuts down.
func (s *Server) consumerTimeoutLoop() {
	every := min(max(s.cfg.ConsumerTimeout/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopAlarms:
			return
		case <-t.C:
			s.expireConsumers(time.Now().UnixMilli() - s.cfg.ConsumerTimeout.Milliseconds())
		}
	}
}

// expireConsumers closes every channel whose oldest unacked delivery was
// made before the deadline (unix ms).
func (s *Server) expireConsumers(deadline int64) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.ownedMu.Lock()
		chans := make([]*channel, 0, len(c.live))
		for ch := range c.live {
			chans = append(chans, ch)
		}
		c.ownedMu.Unlock()
		for _, ch := range chans {
			ch.umu.Lock()
			late := len(ch.unacked) > 0 && ch.unacked[0].at < deadline
			ch.umu.Unlock()
			if late {
				ch.expire()
			}
		}
	}
}

// expire closes the channel for the consumer timeout. It runs beside the
// reader: it touches only what is safe from another goroutine (consumers,
// unacked deliveries, the writer) and leaves the reader's own state to the
// reader, which sees expired set.
func (ch *channel) expire() {
	if !ch.expired.CompareAndSwap(false, true) {
		return
	}
	ms := ch.c.s.cfg.ConsumerTimeout.Milliseconds()
	text := "PRECONDITION_FAILED - delivery acknowledgement on channel " + itoa(uint64(ch.id)) + " timed out. Timeout value used: " +
		itoa(uint64(ms)) + " ms. This timeout value can be configured, see consumers doc guide to learn more"
	ch.c.log.Warn().Uint16("channel", ch.id).Int64("timeout_ms", ms).Msg("consumer delivery acknowledgement timed out; closing the channel")
	ch.cmu.Lock()
	ch.confClosed = true
	ch.cmu.Unlock()
	ch.cancelConsumers()
	ch.requeueAll(false)
	ch.c.sendMethod(ch.id, &amqpwire.ChannelClose{ReplyCode: amqpwire.PreconditionFailed, ReplyText: text})
}
