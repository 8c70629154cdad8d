package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/amqpwire"
)

// TestServerRandomOperations drives one broker with random sequences of
// valid and invalid methods over real connections, for
// WARREN_PROPERTY_SECONDS (default 3) with seed WARREN_PROPERTY_SEED
// (default: random, logged):
//   - raw connections send syntactically valid methods with random
//     fields on random channels, content in and out of place, and garbage;
//   - client connections run a ledger: publishes with confirms to a
//     ledger queue, consumers and gets that ack, nack and requeue.
//
// Afterwards the broker must still serve, every queue's counts must match
// what can be drained from it, and every confirmed ledger message must
// have been delivered or still be queued.
func TestServerRandomOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("long randomized test")
	}
	seconds := 3
	if n, err := strconv.Atoi(os.Getenv("WARREN_PROPERTY_SECONDS")); err == nil && n > 0 {
		seconds = n
	}
	seed := rand.Uint64()
	if n, err := strconv.ParseUint(os.Getenv("WARREN_PROPERTY_SEED"), 10, 64); err == nil {
		seed = n
	}
	t.Logf("seed %d (rerun with WARREN_PROPERTY_SEED=%d)", seed, seed)
	b := startBrokerConfig(t, Config{MaxTxBytes: 4 << 20, MaxUnacked: 5000})
	addr := strings.TrimSuffix(strings.TrimPrefix(b.url, "amqp://guest:guest@"), "/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()

	led := &propLedger{confirmed: map[uint64]bool{}, seen: map[uint64]bool{}}
	var wg sync.WaitGroup
	stats := make([]fuzzStats, 3)
	for i := range stats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fuzzConnection(ctx, addr, rand.New(rand.NewPCG(seed, uint64(i))), &stats[i])
		}()
	}
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ledgerClient(ctx, t, b.url, rand.New(rand.NewPCG(seed, uint64(100+i))), led, uint64(i))
		}()
	}
	wg.Wait()
	var total fuzzStats
	for _, s := range stats {
		total.frames += s.frames
		total.conns += s.conns
		total.closes += s.closes
	}

	// The broker still serves.
	conn, err := amqp.Dial(b.url)
	if err != nil {
		t.Fatalf("broker no longer accepts connections: %v", err)
	}
	defer conn.Close()
	// Wait for the fuzzers' connections to be torn down (unacked requeued).
	deadline := time.Now().Add(10 * time.Second)
	for b.connCount() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", b.connCount())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Every queue's counts match what drains from it.
	queues := 0
	for _, vh := range b.srv.vhosts {
		for _, q := range vh.sortedQueues() {
			if q.exclusive || q.kind == kindStream {
				// A stream (a random declare may make one, with
				// x-queue-type) is read with offsets, not drained with
				// basic.get, which answers 540 there.
				continue
			}
			queues++
			st, err := ch.QueueDeclarePassive(q.name, q.durable, q.autoDelete, false, false, nil)
			if err != nil {
				t.Fatalf("queue %s: %v", q.name, err)
			}
			if u := q.sq.Unacked(); u != 0 {
				t.Errorf("queue %s: %d unacked with no connection left", q.name, u)
			}
			n := 0
			for {
				m, ok, err := ch.Get(q.name, true)
				if err != nil {
					t.Fatalf("get %s: %v", q.name, err)
				}
				if !ok {
					break
				}
				n++
				if q.name == "ledger" && len(m.Body) >= 8 {
					led.mu.Lock()
					led.seen[binary.BigEndian.Uint64(m.Body)] = true
					led.mu.Unlock()
				}
			}
			// Messages with a TTL may expire between the two reads.
			if n > st.Messages || (n < st.Messages && q.ttl < 0 && !q.perMsgTTL) {
				t.Errorf("queue %s: declare-ok said %d messages, %d drained", q.name, st.Messages, n)
			}
		}
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	lost, nconf := 0, 0
	for id, ok := range led.confirmed {
		if !ok {
			continue
		}
		nconf++
		if !led.seen[id] {
			lost++
		}
	}
	t.Logf("%d raw frames on %d fuzz connections (%d closed by the broker); ledger: %d confirmed, %d seen, %d lost; %d queues checked",
		total.frames, total.conns, total.closes, nconf, len(led.seen), lost, queues)
	if lost > 0 {
		t.Fatalf("%d confirmed ledger messages lost", lost)
	}
	if nconf == 0 {
		t.Fatal("the ledger confirmed nothing")
	}
}

type propLedger struct {
	mu        sync.Mutex
	confirmed map[uint64]bool
	seen      map[uint64]bool
}

type fuzzStats struct{ frames, conns, closes int }

// ledgerClient publishes numbered persistent messages with confirms to the
// durable "ledger" queue and consumes them with random acks, nacks with
// requeue and basic.get, reconnecting whenever its connection goes.
// client (below 256) numbers the client, so ids never collide.
func ledgerClient(ctx context.Context, t *testing.T, url string, rnd *rand.Rand, led *propLedger, client uint64) {
	var next uint64
	for ctx.Err() == nil {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("ledger client cannot connect: %v", err)
			return
		}
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDeclare("ledger", true, false, false, false, nil)
		}
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			conn.Close()
			continue
		}
		cch, _ := conn.Channel()
		cch.Qos(rnd.IntN(20)+1, 0, false)
		ds, _ := cch.Consume("ledger", "", false, false, false, false, nil)
		for i := 0; i < 200+rnd.IntN(400) && ctx.Err() == nil; i++ {
			switch op := rnd.IntN(10); {
			case op < 6:
				next++
				id := next<<8 | client // unique: the low byte names the client
				body := make([]byte, 8+rnd.IntN(2000))
				binary.BigEndian.PutUint64(body, id)
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "ledger", false, false,
					amqp.Publishing{DeliveryMode: uint8(1 + rnd.IntN(2)), Body: body})
				if err != nil {
					break
				}
				if ok, err := dc.WaitContext(ctx); err == nil && ok {
					led.mu.Lock()
					led.confirmed[id] = true
					led.mu.Unlock()
				}
			case op < 8:
				select {
				case m, ok := <-ds:
					if !ok {
						break
					}
					if rnd.IntN(4) == 0 {
						m.Nack(false, true)
						break
					}
					if m.Ack(false) == nil && len(m.Body) >= 8 {
						led.mu.Lock()
						led.seen[binary.BigEndian.Uint64(m.Body)] = true
						led.mu.Unlock()
					}
				case <-time.After(5 * time.Millisecond):
				}
			default:
				if m, ok, err := cch.Get("ledger", false); err == nil && ok {
					if m.Ack(false) == nil && len(m.Body) >= 8 {
						led.mu.Lock()
						led.seen[binary.BigEndian.Uint64(m.Body)] = true
						led.mu.Unlock()
					}
				}
			}
		}
		conn.Close()
	}
}

// Names the fuzzer draws from: few, so that operations meet each other.
var (
	// The ledger queue is left to the ledger clients: fuzzers consuming
	// from it would legitimately take its messages away.
	fuzzQueues    = []string{"", "fq1", "fq2", "fq3", "amq.x"}
	fuzzExchanges = []string{"", "fx1", "fx2", "amq.direct", "amq.topic", "amq.headers", "amq.fanout", "fxb"}
	fuzzTypes     = []string{"direct", "fanout", "topic", "headers", "x-bogus", ""}
	fuzzKeys      = []string{"", "a", "a.b", "#", "*.b", "fq1", "fq2"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// fuzzArgs returns random queue/exchange/binding arguments, valid or not.
func fuzzArgs(r *rand.Rand) amqpwire.Table {
	if r.IntN(3) != 0 {
		return nil
	}
	t := amqpwire.Table{}
	switch r.IntN(9) {
	case 0:
		t["x-message-ttl"] = int32(r.IntN(50) - 5)
	case 1:
		t["x-max-length"] = int32(r.IntN(5))
	case 2:
		t["x-dead-letter-exchange"] = pick(r, fuzzExchanges)
		t["x-dead-letter-routing-key"] = pick(r, fuzzKeys)
	case 3:
		t["x-expires"] = int32(r.IntN(100))
	case 4:
		t["x-match"] = pick(r, []string{"all", "any", "bogus"})
		t["k"] = "v"
	case 5:
		t["alternate-exchange"] = pick(r, fuzzExchanges)
	case 6:
		t["x-queue-type"] = pick(r, []string{"classic", "quorum", "stream", "bogus"})
	case 7:
		t["x-single-active-consumer"] = r.IntN(2) == 0
	case 8:
		t["x-max-priority"] = int32(r.IntN(300))
	}
	return t
}

// fuzzMethod returns a random client method with random fields.
func fuzzMethod(r *rand.Rand) amqpwire.Method {
	q, x, k := pick(r, fuzzQueues), pick(r, fuzzExchanges), pick(r, fuzzKeys)
	b := func() bool { return r.IntN(2) == 0 }
	tag := uint64(r.IntN(30))
	switch r.IntN(26) {
	case 0:
		return &amqpwire.ExchangeDeclare{Exchange: x, Type: pick(r, fuzzTypes), Passive: r.IntN(5) == 0, Durable: b(), AutoDelete: b(), Internal: r.IntN(5) == 0, Arguments: fuzzArgs(r)}
	case 1:
		return &amqpwire.ExchangeDelete{Exchange: x, IfUnused: b()}
	case 2:
		return &amqpwire.ExchangeBind{Destination: x, Source: pick(r, fuzzExchanges), RoutingKey: k, Arguments: fuzzArgs(r)}
	case 3:
		return &amqpwire.ExchangeUnbind{Destination: x, Source: pick(r, fuzzExchanges), RoutingKey: k}
	case 4, 5:
		return &amqpwire.QueueDeclare{Queue: q, Passive: r.IntN(5) == 0, Durable: b(), Exclusive: r.IntN(4) == 0, AutoDelete: r.IntN(4) == 0, Arguments: fuzzArgs(r)}
	case 6:
		return &amqpwire.QueueBind{Queue: q, Exchange: x, RoutingKey: k, Arguments: fuzzArgs(r)}
	case 7:
		return &amqpwire.QueueUnbind{Queue: q, Exchange: x, RoutingKey: k}
	case 8:
		return &amqpwire.QueuePurge{Queue: q}
	case 9:
		return &amqpwire.QueueDelete{Queue: q, IfUnused: b(), IfEmpty: b()}
	case 10:
		return &amqpwire.BasicQos{PrefetchCount: uint16(r.IntN(5)), Global: b(), PrefetchSize: uint32(r.IntN(2) * r.IntN(10))}
	case 11, 12:
		return &amqpwire.BasicConsume{Queue: q, ConsumerTag: pick(r, []string{"", "c1", "c2"}), NoAck: b(), Exclusive: r.IntN(5) == 0, Arguments: fuzzArgs(r)}
	case 13:
		return &amqpwire.BasicCancel{ConsumerTag: pick(r, []string{"", "c1", "c2"})}
	case 14:
		return &amqpwire.BasicGet{Queue: q, NoAck: b()}
	case 15, 16:
		return &amqpwire.BasicAck{DeliveryTag: tag, Multiple: b()}
	case 17:
		return &amqpwire.BasicNack{DeliveryTag: tag, Multiple: b(), Requeue: b()}
	case 18:
		return &amqpwire.BasicReject{DeliveryTag: tag, Requeue: b()}
	case 19:
		return &amqpwire.BasicRecover{Requeue: r.IntN(5) != 0}
	case 20:
		return &amqpwire.TxSelect{}
	case 21:
		return pick(r, []amqpwire.Method{&amqpwire.TxCommit{}, &amqpwire.TxRollback{}})
	case 22:
		return &amqpwire.ConfirmSelect{NoWait: b()}
	case 23:
		return &amqpwire.ChannelFlow{Active: r.IntN(5) != 0}
	case 24:
		return &amqpwire.ChannelClose{ReplyCode: 200}
	default:
		return &amqpwire.ChannelOpen{}
	}
}

// fuzzConnection keeps one raw connection busy with random frames until
// ctx ends, reconnecting when the broker closes it.
func fuzzConnection(ctx context.Context, addr string, r *rand.Rand, st *fuzzStats) {
	for ctx.Err() == nil {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		st.conns++
		done := make(chan struct{})
		var closedByBroker bool
		fr := amqpwire.NewFrameReader(bufio.NewReader(nc), 0)
		nc.Write([]byte(amqpwire.ProtocolHeader))
		nc.Write(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US",
			ClientProperties: amqpwire.Table{"capabilities": amqpwire.Table{"consumer_cancel_notify": true, "connection.blocked": true}}}))
		nc.Write(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionTuneOk{ChannelMax: 16, FrameMax: 131072}))
		nc.Write(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionOpen{VirtualHost: "/"}))
		for chn := uint16(1); chn <= 3; chn++ {
			nc.Write(amqpwire.AppendMethodFrame(nil, chn, &amqpwire.ChannelOpen{}))
		}
		var gone atomic.Bool
		go func() { // read everything; answer closes so state moves on
			defer close(done)
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				if f.Type != amqpwire.FrameMethod {
					continue
				}
				m, err := amqpwire.DecodeMethod(f.Payload)
				if err != nil {
					continue
				}
				switch m.(type) {
				case *amqpwire.ChannelClose:
					nc.Write(amqpwire.AppendMethodFrame(nil, f.Channel, &amqpwire.ChannelCloseOk{}))
				case *amqpwire.ConnectionClose:
					closedByBroker = true
					gone.Store(true)
					nc.Write(amqpwire.AppendMethodFrame(nil, 0, &amqpwire.ConnectionCloseOk{}))
					nc.Close()
					return
				}
			}
		}()
		for i := 0; i < 50+r.IntN(500) && ctx.Err() == nil && !gone.Load(); i++ {
			chn := uint16(1 + r.IntN(3))
			var out []byte
			switch op := r.IntN(100); {
			case op < 55:
				out = amqpwire.AppendMethodFrame(nil, chn, fuzzMethod(r))
			case op < 85: // a publish, sometimes cut short or with extra frames
				props := (&amqpwire.Properties{Flags: amqpwire.FlagDeliveryMode | amqpwire.FlagExpiration, DeliveryMode: uint8(1 + r.IntN(2)),
					Expiration: pick(r, []string{"", "5", "100000", "-1", "x"})}).AppendTo(nil)
				body := make([]byte, r.IntN(3000))
				out = amqpwire.AppendMethodFrame(nil, chn, &amqpwire.BasicPublish{Exchange: pick(r, fuzzExchanges), RoutingKey: pick(r, fuzzKeys),
					Mandatory: r.IntN(3) == 0, Immediate: r.IntN(30) == 0})
				full := amqpwire.AppendContentFrames(out, chn, amqpwire.ClassBasic, uint64(len(body)), props, body, 131072)
				switch r.IntN(10) {
				case 0:
					out = full[:len(out)+r.IntN(len(full)-len(out)+1)] // torn mid-content
				case 1:
					out = amqpwire.AppendFrame(full, amqpwire.FrameBody, chn, []byte("extra"))
				default:
					out = full
				}
			case op < 90:
				out = amqpwire.AppendFrame(nil, amqpwire.FrameHeader, chn, []byte{0, 60, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(9)), 0, 0})
			case op < 93:
				out = amqpwire.AppendHeartbeatFrame(nil)
			case op < 99: // a method frame with random payload
				p := make([]byte, 4+r.IntN(40))
				for j := range p {
					p[j] = byte(r.Uint32())
				}
				binary.BigEndian.PutUint16(p, uint16(10*(1+r.IntN(9))))
				out = amqpwire.AppendFrame(nil, amqpwire.FrameMethod, chn, p)
			default: // garbage bytes
				out = make([]byte, 1+r.IntN(64))
				for j := range out {
					out[j] = byte(r.Uint32())
				}
			}
			st.frames++
			nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := nc.Write(out); err != nil {
				break
			}
		}
		nc.Close()
		<-done
		if closedByBroker {
			st.closes++
		}
	}
}
