package broker

import (
	"encoding/binary"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/segment"
)

// maxBatch bounds how many publishes a channel gathers before handing them to
// the queues even if the socket still has more to read.
const (
	maxBatchMsgs  = 1024
	maxBatchBytes = 4 << 20
)

// channel is one AMQP channel. Everything but the delivery bookkeeping
// (umu), the consumer set (consMu) and confirms (cmu) is owned by the
// connection's reader goroutine.
type channel struct {
	id      uint16
	c       *conn
	closing bool // channel.close sent, waiting for close-ok
	// expired is set by the consumer-timeout check, which closes the
	// channel from another goroutine; the reader then drops its own state.
	expired atomic.Bool
	dirty   bool

	// Content assembly of the publish in progress.
	pub struct {
		active     bool
		header     bool // header frame seen
		exchange   string
		key        string
		mandatory  bool
		bodySize   uint64
		propsStart int
		propsEnd   int
		bodyStart  int
		// large holds the body of a message of at least
		// segment.LargeBody bytes, in a buffer of its own that the
		// queues' logs may keep until written (no copy on the way to
		// disk); nil for smaller bodies, which go to the arena.
		large []byte
	}
	arena []byte // props and bodies of the batch being gathered

	// The batch: routed publishes waiting for flush.
	batch      []pendingPub
	batchBytes int
	qbatch     map[*queue]*queueBatch
	qorder     []*queue
	routeBuf   []string

	lastDeclared string       // the queue named by an empty queue name
	reply        *replyTarget // the direct reply-to consumer, reader-owned
	acks         map[*queue]*ackBatch
	aorder       []*queue

	// Consumers of this channel.
	consMu         sync.Mutex
	consumers      map[string]*consumer
	prefetch       uint16 // for consumers created from now on
	globalPrefetch atomic.Int32
	unackedN       atomic.Int32 // deliveries not yet acked, for the global limit
	// Copies of reader-owned state for the management API.
	infoPrefetch atomic.Uint32
	infoMode     atomic.Uint32 // modeConfirm or modeTx

	// Delivery bookkeeping: tags are assigned under umu, in order.
	umu     sync.Mutex
	nextTag uint64
	unacked []delivery // a window of ubuf: acks reslice its front away
	ubuf    []delivery // the whole backing array, reused by pushUnackedLocked
	acked   int        // tombstones in unacked

	// Publisher confirms.
	confirm    bool
	pubSeq     uint64
	cmu        sync.Mutex
	confClosed bool   // the channel is gone: late confirms are dropped
	confNext   uint64 // lowest sequence not yet confirmed
	confDone   []confirmRange
	txMode     bool
	txPubs     []pendingPub
	txAcks     []txAck
	txAcked    map[uint64]bool // tags settled in the open transaction
	txBlock    []byte          // the block tx publishes are copied into
}

// Channel modes shown by the management API.
const (
	modeConfirm = 1
	modeTx      = 2
)

type pendingPub struct {
	exchange, key string
	extra         []string // CC and BCC routing keys
	props, body   []byte
	persistent    bool
	mandatory     bool
	owned         bool   // body is a buffer of its own, never reused
	seq           uint64 // confirm sequence (0 without confirms)
}

type queueBatch struct {
	recs []segment.Record
	pubs []int32 // index in the channel's batch of each record
}

type ackBatch struct {
	acks     []uint64
	discards []uint64
	requeues []uint64
	fails    []uint64 // requeued after a failed delivery (basic.reject)
	cons     []*consumer
}

type delivery struct {
	tag   uint64
	q     *queue
	seq   uint64
	cons  *consumer
	at    int64 // unix ms when delivered, for the consumer timeout
	acked bool
}

type confirmRange struct {
	lo, hi uint64
	nack   bool
}

// txAck is one delivery settled inside a transaction, applied at commit.
type txAck struct {
	tag                   uint64
	nack, requeue, reject bool
}

func newChannel(c *conn, id uint16) *channel {
	ch := &channel{
		id:        id,
		c:         c,
		qbatch:    make(map[*queue]*queueBatch),
		acks:      make(map[*queue]*ackBatch),
		consumers: make(map[string]*consumer),
		confNext:  1,
	}
	c.ownedMu.Lock()
	c.live[ch] = struct{}{}
	c.ownedMu.Unlock()
	return ch
}

// handleFrame runs one frame through the channel's state machine. Soft errors
// close the channel here; hard errors are returned to the connection.
func (ch *channel) handleFrame(f amqpwire.Frame) error {
	if !ch.closing && ch.expired.Load() {
		// Closed by the consumer timeout: forget what the reader held.
		ch.closing = true
		ch.pub.active = false
		clear(ch.batch)
		ch.batch, ch.batchBytes = ch.batch[:0], 0
		ch.resetArena()
		ch.dropTx()
	}
	if ch.closing {
		if f.Type == amqpwire.FrameMethod {
			m, err := ch.c.dec.Decode(f.Payload)
			if err != nil {
				return nil
			}
			switch m.(type) {
			case *amqpwire.ChannelCloseOk:
				ch.c.channels[ch.id] = nil
				ch.release()
			case *amqpwire.ChannelClose:
				ch.c.sendMethod(ch.id, &amqpwire.ChannelCloseOk{})
			}
		}
		return nil
	}
	var err error
	var m amqpwire.Method
	switch f.Type {
	case amqpwire.FrameMethod:
		if ch.pub.active {
			return amqpErr(amqpwire.UnexpectedFrame, nil, "expected content header for class 60, got non content header frame instead")
		}
		m, err = ch.c.dec.Decode(f.Payload)
		if err != nil {
			return err
		}
		err = ch.handleMethod(m)
	case amqpwire.FrameHeader:
		err = ch.handleHeader(f.Payload)
	case amqpwire.FrameBody:
		err = ch.handleBody(f.Payload)
	default:
		return amqpErr(amqpwire.FrameError, nil, "unknown frame type %d", f.Type)
	}
	if err == nil {
		return nil
	}
	e := asAMQPError(err, m)
	if e.Hard() {
		return e
	}
	ch.softError(e)
	return nil
}

// softError closes the channel with a soft error, as RabbitMQ does: the
// channel's consumers and unacked deliveries are released at once.
func (ch *channel) softError(e *amqpwire.Error) {
	ch.c.log.Info().Uint16("channel", ch.id).Uint16("code", e.Code).Str("text", e.Text).Msg("channel error")
	ch.flush()
	ch.closing = true
	ch.pub.active = false
	ch.teardown()
	ch.c.sendMethod(ch.id, &amqpwire.ChannelClose{ReplyCode: e.Code, ReplyText: e.Text, FailedClassID: e.ClassID, FailedMethodID: e.MethodID})
}

func (ch *channel) release() {
	ch.c.ownedMu.Lock()
	delete(ch.c.live, ch)
	ch.c.ownedMu.Unlock()
}

func (ch *channel) handleMethod(m amqpwire.Method) error {
	// Publishes and acks batch; anything else first flushes the batch so
	// that its effects are seen in order.
	switch m := m.(type) {
	case *amqpwire.BasicPublish:
		return ch.startPublish(m)
	case *amqpwire.BasicAck:
		return ch.ack(m, m.DeliveryTag, m.Multiple, false, false, false)
	case *amqpwire.BasicNack:
		return ch.ack(m, m.DeliveryTag, m.Multiple, true, m.Requeue, false)
	case *amqpwire.BasicReject:
		return ch.ack(m, m.DeliveryTag, false, true, m.Requeue, true)
	}
	ch.flush()
	switch m := m.(type) {
	case *amqpwire.ChannelClose:
		ch.teardown()
		ch.c.channels[ch.id] = nil
		ch.release()
		ch.c.sendMethod(ch.id, &amqpwire.ChannelCloseOk{})
		return nil
	case *amqpwire.ChannelCloseOk:
		return nil
	case *amqpwire.ChannelOpen:
		return amqpErr(amqpwire.ChannelError, m, "second 'channel.open' seen")
	case *amqpwire.ChannelFlow:
		if !m.Active {
			return amqpErr(amqpwire.NotImplemented, m, "active=false")
		}
		ch.c.sendMethod(ch.id, &amqpwire.ChannelFlowOk{Active: true})
		return nil
	case *amqpwire.ChannelFlowOk:
		return nil
	case *amqpwire.ExchangeDeclare:
		return ch.exchangeDeclare(m)
	case *amqpwire.ExchangeDelete:
		return ch.exchangeDelete(m)
	case *amqpwire.ExchangeBind:
		return ch.exchangeBind(m, true)
	case *amqpwire.ExchangeUnbind:
		return ch.exchangeBind(m, false)
	case *amqpwire.QueueDeclare:
		return ch.queueDeclare(m)
	case *amqpwire.QueueBind:
		return ch.queueBind(m)
	case *amqpwire.QueueUnbind:
		return ch.queueUnbind(m)
	case *amqpwire.QueuePurge:
		return ch.queuePurge(m)
	case *amqpwire.QueueDelete:
		return ch.queueDelete(m)
	case *amqpwire.BasicQos:
		return ch.basicQos(m)
	case *amqpwire.BasicConsume:
		return ch.basicConsume(m)
	case *amqpwire.BasicCancel:
		return ch.basicCancel(m)
	case *amqpwire.BasicGet:
		return ch.basicGet(m)
	case *amqpwire.BasicRecover:
		return ch.basicRecover(m, m.Requeue)
	case *amqpwire.BasicRecoverAsync:
		return ch.basicRecover(m, m.Requeue)
	case *amqpwire.ConfirmSelect:
		if ch.txMode {
			return amqpErr(amqpwire.PreconditionFailed, m, "cannot switch from tx to confirm mode")
		}
		ch.confirm = true
		ch.infoMode.Store(modeConfirm)
		if !m.NoWait {
			ch.c.sendMethod(ch.id, &amqpwire.ConfirmSelectOk{})
		}
		return nil
	case *amqpwire.TxSelect:
		if ch.confirm {
			return amqpErr(amqpwire.PreconditionFailed, m, "cannot switch from confirm to tx mode")
		}
		ch.txMode = true
		ch.infoMode.Store(modeTx)
		ch.c.sendMethod(ch.id, &amqpwire.TxSelectOk{})
		return nil
	case *amqpwire.TxCommit:
		return ch.txCommit(m)
	case *amqpwire.TxRollback:
		return ch.txRollback(m)
	}
	if m.ClassID() == amqpwire.ClassConnection {
		return amqpErr(amqpwire.CommandInvalid, m, "connection method '%s' on channel %d", m.Name(), ch.id)
	}
	return amqpErr(amqpwire.CommandInvalid, m, "unexpected method '%s' from client", m.Name())
}

// ---- publishing ----

func (ch *channel) startPublish(m *amqpwire.BasicPublish) error {
	if m.Immediate {
		return amqpErr(amqpwire.NotImplemented, m, "immediate=true")
	}
	vh := ch.c.vh
	if m.Exchange != "" {
		ex, ok := vh.exchange(m.Exchange)
		if !ok {
			return amqpErr(amqpwire.NotFound, m, "no exchange '%s' in vhost '%s'", m.Exchange, vh.name)
		}
		if ex.Internal {
			return amqpErr(amqpwire.AccessRefused, m, "cannot publish to internal exchange '%s' in vhost '%s'", m.Exchange, vh.name)
		}
	}
	if err := ch.c.checkPerm(permWrite, "exchange", m.Exchange, m); err != nil {
		return err
	}
	p := &ch.pub
	p.active, p.header = true, false
	p.exchange, p.key, p.mandatory = m.Exchange, m.RoutingKey, m.Mandatory
	if ch.c.s.alarmed.Load() {
		ch.c.mustBlock = true // a resource alarm: stop reading this publisher
	}
	return nil
}

func (ch *channel) handleHeader(payload []byte) error {
	p := &ch.pub
	if !p.active || p.header {
		return amqpErr(amqpwire.UnexpectedFrame, nil, "unexpected content header frame on channel %d", ch.id)
	}
	h, err := amqpwire.DecodeContentHeader(payload)
	if err != nil {
		return err
	}
	if h.ClassID != amqpwire.ClassBasic {
		return amqpErr(amqpwire.CommandInvalid, nil, "content header for class %d", h.ClassID)
	}
	if h.BodySize > ch.c.s.cfg.MaxMessageSize {
		p.active = false
		return &amqpwire.Error{Code: amqpwire.PreconditionFailed, Text: "PRECONDITION_FAILED - message size " +
			itoa(h.BodySize) + " is larger than configured max size " + itoa(ch.c.s.cfg.MaxMessageSize),
			ClassID: amqpwire.ClassBasic, MethodID: amqpwire.MethodBasicPublish}
	}
	p.header = true
	p.bodySize = h.BodySize
	p.propsStart = len(ch.arena)
	ch.arena = append(ch.arena, h.RawProps...)
	p.propsEnd = len(ch.arena)
	p.bodyStart = p.propsEnd
	p.large = nil
	if h.BodySize >= segment.LargeBody && !ch.txMode {
		p.large = make([]byte, 0, h.BodySize)
	}
	if h.BodySize == 0 {
		return ch.finishPublish()
	}
	return nil
}

func (ch *channel) handleBody(payload []byte) error {
	p := &ch.pub
	if !p.active || !p.header {
		return amqpErr(amqpwire.UnexpectedFrame, nil, "unexpected content body frame on channel %d", ch.id)
	}
	got := uint64(len(ch.arena)-p.bodyStart) + uint64(len(payload))
	if p.large != nil {
		got = uint64(len(p.large)) + uint64(len(payload))
	}
	if got > p.bodySize {
		return amqpErr(amqpwire.FrameError, nil, "content body exceeds the %d bytes announced in the header", p.bodySize)
	}
	if p.large != nil {
		if n := len(p.large); cap(p.large) > n && unsafe.SliceData(payload) == unsafe.SliceData(p.large[n:cap(p.large)]) {
			p.large = p.large[:n+len(payload)] // read in place (conn.bodySink)
		} else {
			p.large = append(p.large, payload...)
		}
	} else {
		ch.arena = append(ch.arena, payload...)
	}
	if got == p.bodySize {
		return ch.finishPublish()
	}
	return nil
}

// finishPublish routes a complete message and adds it to the batch.
func (ch *channel) finishPublish() error {
	p := &ch.pub
	p.active = false
	props := ch.arena[p.propsStart:p.propsEnd:p.propsEnd]
	body := ch.arena[p.bodyStart:len(ch.arena):len(ch.arena)]
	owned := p.large != nil
	if owned {
		body, p.large = p.large, nil
	}
	persistent := amqpwire.PeekDeliveryMode(props) == 2
	if len(props) >= 2 && binary.BigEndian.Uint16(props)&amqpwire.FlagUserID != 0 && !ch.c.impersonator {
		// As RabbitMQ: a user-id property must name the authenticated
		// user, so consumers can trust it.
		if id, _ := amqpwire.PeekUserID(props); string(id) != ch.c.userName {
			ch.arena = ch.arena[:p.propsStart]
			return &amqpwire.Error{Code: amqpwire.PreconditionFailed, Text: "PRECONDITION_FAILED - user_id property set to '" +
				string(id) + "' but authenticated user was '" + ch.c.userName + "'", ClassID: amqpwire.ClassBasic, MethodID: amqpwire.MethodBasicPublish}
		}
	}
	pm := &amqpwire.BasicPublish{}
	var err error
	if props, ch.arena, err = ch.rewriteReplyTo(props, ch.arena, pm); err != nil {
		return err
	}
	var extra []string
	if extra, props, ch.arena, err = senderSelected(props, pm, ch.arena); err != nil {
		return err
	}
	if ch.txMode {
		size := len(props) + len(body)
		if max := ch.c.s.cfg.MaxTxBytes; ch.c.txBytes+size > max {
			ch.arena = ch.arena[:p.propsStart]
			return &amqpwire.Error{Code: amqpwire.PreconditionFailed, Text: "PRECONDITION_FAILED - uncommitted transactional publishes of this connection would exceed " +
				itoa(uint64(max)) + " bytes; commit more often", ClassID: amqpwire.ClassBasic, MethodID: amqpwire.MethodBasicPublish}
		}
		ch.c.txBytes += size
		// Copied into blocks of 1 MiB, so the held memory stays close
		// to the bytes published (no doubling slice).
		if cap(ch.txBlock)-len(ch.txBlock) < size {
			ch.txBlock = make([]byte, 0, max(size, 1<<20))
		}
		ch.txBlock = append(ch.txBlock, props...)
		ch.txBlock = append(ch.txBlock, body...)
		n := len(ch.txBlock)
		ch.txPubs = append(ch.txPubs, pendingPub{exchange: p.exchange, key: p.key, extra: extra,
			props: ch.txBlock[n-size : n-len(body) : n-len(body)], body: ch.txBlock[n-len(body) : n : n],
			persistent: persistent, mandatory: p.mandatory})
		ch.arena = ch.arena[:p.propsStart]
		return nil
	}
	var seq uint64
	if ch.confirm {
		ch.pubSeq++
		seq = ch.pubSeq
	}
	ch.batch = append(ch.batch, pendingPub{exchange: p.exchange, key: p.key, extra: extra, props: props, body: body,
		persistent: persistent, mandatory: p.mandatory, owned: owned, seq: seq})
	ch.batchBytes += len(props) + len(body)
	ch.c.markDirty(ch)
	if len(ch.batch) >= maxBatchMsgs || ch.batchBytes >= maxBatchBytes {
		ch.flush()
	}
	return nil
}

// flush routes the gathered publishes to their queues (one append per queue
// per batch), then applies the gathered acks.
func (ch *channel) flush() {
	ch.dirty = false
	if len(ch.batch) > 0 {
		ch.flushPublishes()
	}
	if len(ch.aorder) > 0 {
		ch.flushAcks()
	}
}

func (ch *channel) flushPublishes() {
	var round *confirmRound
	if ch.confirm {
		round = &confirmRound{lo: ch.batch[0].seq, hi: ch.batch[len(ch.batch)-1].seq, settled: ch.settleRound}
	}
	ch.publishBatch(round)
	clear(ch.batch)
	ch.batch = ch.batch[:0]
	ch.batchBytes = 0
	ch.resetArena()
}

// publishBatch routes ch.batch and hands each destination queue its records
// in one append. round, if set, is settled once every append has reported
// (durable ones after their sync round).
func (ch *channel) publishBatch(round *confirmRound) {
	vh := ch.c.vh
	snap := vh.routes()
	now := time.Now().UnixMilli()
	var routedN, returnedN uint64
	for i := range ch.batch {
		pp := &ch.batch[i]
		if len(pp.extra) > 0 {
			ch.routeBuf = vh.routeKeys(snap, pp.exchange, pp.key, pp.extra, pp.props, ch.routeBuf[:0])
		} else {
			ch.routeBuf = vh.route(snap, pp.exchange, pp.key, pp.props, ch.routeBuf[:0])
		}
		routed := false
		for _, qname := range ch.routeBuf {
			q := vh.queueByName(qname)
			if q == nil {
				// The default exchange names queues that may not exist,
				// or a direct reply-to consumer.
				if pp.exchange == "" && strings.HasPrefix(qname, replyToPrefix) && ch.c.s.deliverReply(qname, pp.props, pp.body) {
					routed = true
				}
				continue
			}
			routed = true
			qb := ch.qbatch[q]
			if qb == nil {
				qb = &queueBatch{}
				ch.qbatch[q] = qb
			}
			if len(qb.recs) == 0 {
				ch.qorder = append(ch.qorder, q)
			}
			var flags uint8
			if pp.persistent {
				flags = segment.FlagPersistent
			}
			qb.recs = append(qb.recs, segment.Record{Timestamp: now, Exchange: pp.exchange, RoutingKey: pp.key,
				Props: pp.props, Body: pp.body, Flags: flags, Owned: pp.owned})
			qb.pubs = append(qb.pubs, int32(i))
		}
		switch {
		case routed:
			routedN++
		case pp.mandatory:
			returnedN++
			ch.c.sendReturn(ch.id, amqpwire.NoRoute, "NO_ROUTE", pp.exchange, pp.key, pp.props, pp.body)
		}
	}
	t := &ch.c.s.totals
	n := uint64(len(ch.batch))
	t.received.Add(n)
	if ch.confirm {
		t.receivedConfirm.Add(n)
	}
	t.routed.Add(routedN)
	if returnedN > 0 {
		t.unroutableReturned.Add(returnedN)
	}
	if dropped := n - routedN - returnedN; dropped > 0 {
		t.unroutableDropped.Add(dropped)
	}
	if round != nil {
		round.pending.Store(1) // held until every append is issued
	}
	for _, q := range ch.qorder {
		qb := ch.qbatch[q]
		var cb func(error)
		if round != nil {
			// Every append reports, so that a failed one is nacked; only
			// durable ones wait for the sync round.
			round.pending.Add(1)
			cb = round.done
		}
		// Records a full queue refuses (x-overflow reject-publish) are
		// nacked to a confirming publisher, and dropped otherwise.
		for _, i := range q.publish(qb.recs, cb) {
			if round != nil {
				if seq := ch.batch[qb.pubs[i]].seq; seq != 0 {
					round.nacked = append(round.nacked, seq)
				}
			}
		}
		clear(qb.recs)
		qb.recs, qb.pubs = qb.recs[:0], qb.pubs[:0]
	}
	clear(ch.qorder)
	ch.qorder = ch.qorder[:0]
	if round != nil {
		round.done(nil)
	}
	if len(ch.qbatch) > 64 {
		clear(ch.qbatch) // forget queues of old batches
	}
}

// shrinkArena drops the arena of an idle channel (the connection's reader
// found it quiet) when it is larger than over bytes, and returns its size;
// the next publish grows a new one.
func (ch *channel) shrinkArena(over int) int {
	n := cap(ch.arena)
	if len(ch.batch) == 0 && !ch.pub.active && n > over {
		ch.arena = nil
		return n
	}
	return 0
}

// resetArena empties the arena once the batch is handed to the queues,
// keeping the message still being assembled (a flush can fall between its
// body frames) at the front.
func (ch *channel) resetArena() {
	p := &ch.pub
	keep := []byte(nil)
	if p.active && p.header {
		keep = ch.arena[p.propsStart:]
	}
	if cap(ch.arena) > 16<<20 && len(keep) < 1<<20 {
		fresh := make([]byte, len(keep), max(len(keep), 64<<10))
		copy(fresh, keep)
		ch.arena = fresh
	} else {
		n := copy(ch.arena, keep)
		ch.arena = ch.arena[:n]
	}
	if p.active && p.header {
		p.propsEnd -= p.propsStart
		p.bodyStart -= p.propsStart
		p.propsStart = 0
	}
}

// confirmRound tracks one batch's appends until each has reported; then
// settled runs once with the batch's confirm sequences.
type confirmRound struct {
	lo, hi  uint64
	settled func(r *confirmRound)
	pending atomic.Int32
	failed  atomic.Bool
	// nacked lists the sequences a queue refused (reject-publish), in
	// order; written before the batch's last done, read by settled.
	nacked []uint64
}

func (r *confirmRound) done(err error) {
	if err != nil {
		r.failed.Store(true)
	}
	if r.pending.Add(-1) == 0 {
		r.settled(r)
	}
}

// settleRound confirms a round: basic.nack for all of it when an append
// failed, else basic.ack with a basic.nack for each refused message, in
// sequence order.
func (ch *channel) settleRound(r *confirmRound) {
	if r.failed.Load() || len(r.nacked) == 0 {
		ch.confirmed(r.lo, r.hi, r.failed.Load())
		return
	}
	nacked := r.nacked
	slices.Sort(nacked)
	nacked = slices.Compact(nacked)
	lo := r.lo
	for _, n := range nacked {
		if n > lo {
			ch.confirmed(lo, n-1, false)
		}
		ch.confirmed(n, n, true)
		lo = n + 1
	}
	if lo <= r.hi {
		ch.confirmed(lo, r.hi, false)
	}
}

// confirmed records that sequences lo..hi are settled and sends acks (or
// nacks) for the longest settled prefix, so that multiple=true never covers
// a message that is not yet durable.
func (ch *channel) confirmed(lo, hi uint64, nack bool) {
	ch.cmu.Lock()
	defer ch.cmu.Unlock()
	if ch.confClosed {
		return // the channel number may already belong to a new channel
	}
	if lo != ch.confNext {
		i := sort.Search(len(ch.confDone), func(i int) bool { return ch.confDone[i].lo > lo })
		ch.confDone = append(ch.confDone, confirmRange{})
		copy(ch.confDone[i+1:], ch.confDone[i:])
		ch.confDone[i] = confirmRange{lo, hi, nack}
		return
	}
	ch.sendConfirm(lo, hi, nack)
	for len(ch.confDone) > 0 && ch.confDone[0].lo == ch.confNext {
		r := ch.confDone[0]
		ch.confDone = ch.confDone[1:]
		ch.sendConfirm(r.lo, r.hi, r.nack)
	}
}

func (ch *channel) sendConfirm(lo, hi uint64, nack bool) {
	ch.confNext = hi + 1
	multiple := hi > lo
	if nack {
		ch.c.sendMethod(ch.id, &amqpwire.BasicNack{DeliveryTag: hi, Multiple: multiple})
	} else {
		ch.c.s.totals.confirmed.Add(hi - lo + 1)
		ch.c.sendMethod(ch.id, &amqpwire.BasicAck{DeliveryTag: hi, Multiple: multiple})
	}
}

// ---- acknowledgements ----

// ack settles deliveries: ack (nack=false), or nack/reject with requeue or
// discard; reject marks a basic.reject (a failed delivery, for quorum
// queues' delivery counts). The queue side is batched until flush.
func (ch *channel) ack(m amqpwire.Method, tag uint64, multiple, nack, requeue, reject bool) error {
	if ch.txMode {
		return ch.txSettle(m, tag, multiple, nack, requeue, reject)
	}
	return ch.settle(m, tag, multiple, nack, requeue, reject)
}

// txSettle records acks, nacks and rejects of a transaction. Tags are
// checked now, as RabbitMQ does, so that an unknown or twice-settled tag
// fails before commit; multiple is expanded to the tags outstanding now.
func (ch *channel) txSettle(m amqpwire.Method, tag uint64, multiple, nack, requeue, reject bool) error {
	ch.umu.Lock()
	defer ch.umu.Unlock()
	if ch.txAcked == nil {
		ch.txAcked = make(map[uint64]bool)
	}
	if !multiple || tag != 0 {
		if i := ch.findLocked(tag); i < 0 || ch.txAcked[tag] {
			return amqpErr(amqpwire.PreconditionFailed, m, "unknown delivery tag %d", tag)
		}
	}
	if !multiple {
		ch.txAcked[tag] = true
		ch.txAcks = append(ch.txAcks, txAck{tag: tag, nack: nack, requeue: requeue, reject: reject})
		return nil
	}
	for i := range ch.unacked {
		d := &ch.unacked[i]
		if d.acked || ch.txAcked[d.tag] || (tag != 0 && d.tag > tag) {
			continue
		}
		ch.txAcked[d.tag] = true
		ch.txAcks = append(ch.txAcks, txAck{tag: d.tag, nack: nack, requeue: requeue})
	}
	return nil
}

func (ch *channel) findLocked(tag uint64) int {
	i := sort.Search(len(ch.unacked), func(i int) bool { return ch.unacked[i].tag >= tag })
	if i < len(ch.unacked) && ch.unacked[i].tag == tag && !ch.unacked[i].acked {
		return i
	}
	return -1
}

func (ch *channel) settle(m amqpwire.Method, tag uint64, multiple, nack, requeue, reject bool) error {
	ch.umu.Lock()
	var from, to int
	if multiple {
		to = sort.Search(len(ch.unacked), func(i int) bool { return ch.unacked[i].tag > tag })
		if tag == 0 {
			to = len(ch.unacked)
		} else if ch.findLocked(tag) < 0 {
			// As RabbitMQ: the tag itself must be outstanding.
			ch.umu.Unlock()
			return amqpErr(amqpwire.PreconditionFailed, m, "unknown delivery tag %d", tag)
		}
	} else {
		i := ch.findLocked(tag)
		if i < 0 {
			ch.umu.Unlock()
			return amqpErr(amqpwire.PreconditionFailed, m, "unknown delivery tag %d", tag)
		}
		from, to = i, i+1
	}
	settled := 0
	for i := from; i < to; i++ {
		d := &ch.unacked[i]
		if d.acked {
			continue
		}
		d.acked = true
		ch.acked++
		ab := ch.acks[d.q]
		if ab == nil {
			ab = &ackBatch{}
			ch.acks[d.q] = ab
		}
		if len(ab.acks) == 0 && len(ab.discards) == 0 && len(ab.requeues) == 0 && len(ab.fails) == 0 && len(ab.cons) == 0 {
			ch.aorder = append(ch.aorder, d.q)
		}
		switch {
		case nack && requeue && reject:
			ab.fails = append(ab.fails, d.seq)
		case nack && requeue:
			ab.requeues = append(ab.requeues, d.seq)
		case nack:
			ab.discards = append(ab.discards, d.seq)
		default:
			ab.acks = append(ab.acks, d.seq)
		}
		if d.cons != nil {
			d.cons.unacked.Add(-1)
			ab.cons = append(ab.cons, d.cons)
		}
		settled++
	}
	ch.unackedN.Add(-int32(settled))
	ch.c.unacked.Add(-int64(settled))
	ch.compactLocked()
	ch.umu.Unlock()
	ch.c.markDirty(ch)
	return nil
}

// pushUnackedLocked records a delivery awaiting its ack. When the window
// reaches the end of its array and the front is mostly dead (acked away),
// it slides back to the start instead of growing a new array, so a steady
// prefetch window allocates nothing.
func (ch *channel) pushUnackedLocked(d delivery) {
	if n := len(ch.unacked); n == cap(ch.unacked) && n > 0 && cap(ch.ubuf) >= 2*n {
		copy(ch.ubuf[:n], ch.unacked)
		clear(ch.ubuf[n:cap(ch.ubuf)])
		ch.unacked = ch.ubuf[:n]
	}
	full := len(ch.unacked) == cap(ch.unacked)
	ch.unacked = append(ch.unacked, d)
	if full {
		ch.ubuf = ch.unacked[:0:cap(ch.unacked)] // append moved to a new array
	}
}

// compactLocked drops settled deliveries from the front and, when they are
// many, from the middle.
func (ch *channel) compactLocked() {
	n := 0
	for n < len(ch.unacked) && ch.unacked[n].acked {
		n++
	}
	if n > 0 {
		// Reslice rather than copy: with a prefetch of thousands, acks in
		// order would otherwise move the whole window on every ack.
		// pushUnackedLocked reuses the dead front.
		ch.acked -= n
		clear(ch.unacked[:n])
		ch.unacked = ch.unacked[n:]
		if len(ch.unacked) == 0 {
			ch.unacked = ch.ubuf[:0]
		}
	}
	if ch.acked > 32 && ch.acked*2 > len(ch.unacked) {
		w := 0
		for _, d := range ch.unacked {
			if !d.acked {
				ch.unacked[w] = d
				w++
			}
		}
		clear(ch.unacked[w:])
		ch.unacked = ch.unacked[:w]
		ch.acked = 0
	}
}

func (ch *channel) flushAcks() {
	for _, q := range ch.aorder {
		ab := ch.acks[q]
		q.settle(ab.acks, ab.discards, ab.requeues, ab.fails)
		clear(ab.cons)
		ab.acks, ab.discards, ab.requeues, ab.fails, ab.cons = ab.acks[:0], ab.discards[:0], ab.requeues[:0], ab.fails[:0], ab.cons[:0]
	}
	clear(ch.aorder)
	ch.aorder = ch.aorder[:0]
	if len(ch.acks) > 64 {
		clear(ch.acks)
	}
	if ch.c.unackedCapped.Swap(false) {
		// Credit freed under the connection's limit may unblock any
		// queue this connection consumes from.
		ch.c.resumeDelivery()
		return
	}
	ch.kickIfGlobalLimit()
}

// kickIfGlobalLimit runs a delivery round on every queue the channel
// consumes from when a channel-wide prefetch limit is set: credit freed by
// acks on one queue may unblock another.
func (ch *channel) kickIfGlobalLimit() {
	if ch.globalPrefetch.Load() == 0 {
		return
	}
	for _, q := range ch.consumerQueues() {
		q.kick()
	}
}

// ---- transactions ----

func (ch *channel) txCommit(m *amqpwire.TxCommit) error {
	if !ch.txMode {
		return amqpErr(amqpwire.PreconditionFailed, m, "channel is not transactional")
	}
	pubs, acks := ch.txPubs, ch.txAcks
	ch.dropTx()
	// Publishes go through the batch path; commit-ok waits until every
	// append has reported, persistent ones after their sync round.
	ch.flush()
	ch.batch = append(ch.batch, pubs...)
	settled := make(chan bool, 1)
	ch.publishBatch(&confirmRound{settled: func(r *confirmRound) { settled <- r.failed.Load() }})
	clear(ch.batch)
	ch.batch = ch.batch[:0]
	failed := <-settled
	clear(ch.txAcked)
	for _, a := range acks {
		// A tag recovered (requeued) since it was settled in the
		// transaction is no longer outstanding; skip it.
		ch.umu.Lock()
		outstanding := ch.findLocked(a.tag) >= 0
		ch.umu.Unlock()
		if outstanding {
			if err := ch.settle(m, a.tag, false, a.nack, a.requeue, a.reject); err != nil {
				return err
			}
		}
	}
	ch.flush()
	if failed {
		return amqpErr(amqpwire.InternalError, m, "commit failed to persist messages")
	}
	ch.c.sendMethod(ch.id, &amqpwire.TxCommitOk{})
	return nil
}

func (ch *channel) txRollback(m *amqpwire.TxRollback) error {
	if !ch.txMode {
		return amqpErr(amqpwire.PreconditionFailed, m, "channel is not transactional")
	}
	ch.dropTx()
	ch.umu.Lock()
	clear(ch.txAcked)
	ch.umu.Unlock()
	ch.c.sendMethod(ch.id, &amqpwire.TxRollbackOk{})
	return nil
}

// dropTx forgets the open transaction's publishes and acks.
func (ch *channel) dropTx() {
	for _, p := range ch.txPubs {
		ch.c.txBytes -= len(p.props) + len(p.body)
	}
	ch.txPubs, ch.txAcks, ch.txBlock = nil, nil, nil
}

// ---- teardown ----

// teardown cancels the channel's consumers and requeues its unacked
// deliveries, in order.
func (ch *channel) teardown() {
	ch.flush()
	ch.dropTx()
	ch.cmu.Lock()
	ch.confClosed = true
	ch.cmu.Unlock()
	ch.cancelConsumers()
	ch.replyCancel()
	ch.requeueAll(true)
	ch.release()
}

// cancelConsumers removes every consumer of the channel from its queue.
func (ch *channel) cancelConsumers() {
	ch.consMu.Lock()
	cons := make([]*consumer, 0, len(ch.consumers))
	for _, c := range ch.consumers {
		cons = append(cons, c)
	}
	clear(ch.consumers)
	ch.c.consumers.Add(-int64(len(cons)))
	ch.consMu.Unlock()
	for _, c := range cons {
		c.q.removeConsumer(c, true)
	}
}

// requeueAll returns every unacked delivery of the channel to its queue;
// failed says the deliveries failed (the channel closed holding them), which
// quorum queues count.
func (ch *channel) requeueAll(failed bool) {
	ch.umu.Lock()
	byQ := make(map[*queue][]uint64)
	var order []*queue
	n := 0
	for i := range ch.unacked {
		d := &ch.unacked[i]
		if d.acked {
			continue
		}
		if _, ok := byQ[d.q]; !ok {
			order = append(order, d.q)
		}
		byQ[d.q] = append(byQ[d.q], d.seq)
		if d.cons != nil {
			d.cons.unacked.Add(-1)
		}
		n++
	}
	clear(ch.ubuf)
	ch.unacked = ch.ubuf[:0]
	ch.acked = 0
	ch.unackedN.Store(0)
	ch.c.unacked.Add(-int64(n))
	ch.umu.Unlock()
	for _, q := range order {
		if failed {
			q.settle(nil, nil, nil, byQ[q])
		} else {
			q.settle(nil, nil, byQ[q], nil)
		}
	}
	ch.kickIfGlobalLimit()
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
