package broker

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// idleConnMemory opens n raw connections with one open channel each (and,
// with queues, an exclusive server-named queue and a consumer on it, the
// RPC pattern), lets them go idle, and returns the growth of the broker
// process's memory (heap and stacks) per connection.
func idleConnMemory(t *testing.T, n int, queues bool) float64 {
	b := startBroker(t, "")
	settle := func() uint64 {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	before := settle()
	conns := make([]*rawConn, n)
	for i := range conns {
		r := dialRaw(t, b)
		r.open()
		r.method(1, &amqpwire.ChannelOpen{})
		expect[*amqpwire.ChannelOpenOk](r)
		if queues {
			r.method(1, &amqpwire.QueueDeclare{Exclusive: true, AutoDelete: true})
			ok := expect[*amqpwire.QueueDeclareOk](r)
			r.method(1, &amqpwire.BasicConsume{Queue: ok.Queue})
			expect[*amqpwire.BasicConsumeOk](r)
		}
		r.nc.SetDeadline(time.Time{})
		conns[i] = r
	}
	time.Sleep(200 * time.Millisecond)
	after := settle()
	runtime.KeepAlive(conns)
	return float64(after-before) / float64(n)
}

// TestIdleConnectionMemory reports the memory an idle connection costs
// the broker, with a channel, and with the RPC pattern's exclusive queue
// and consumer besides. WARREN_MEM_CONNS sets how many (default 500). The
// figures include the raw test clients' own sockets (under 1 KiB each).
func TestIdleConnectionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens many connections")
	}
	n := 500
	if v, err := strconv.Atoi(os.Getenv("WARREN_MEM_CONNS")); err == nil && v > 0 {
		n = v
	}
	perConn := idleConnMemory(t, n, false)
	t.Logf("idle connection with a channel: %.1f KiB", perConn/1024)
	if perConn > 40<<10 {
		t.Errorf("an idle connection with a channel costs %.1f KiB; the goal is 40 KiB", perConn/1024)
	}
	perRPC := idleConnMemory(t, n, true)
	t.Logf("idle connection with a channel, an exclusive queue and a consumer: %.1f KiB", perRPC/1024)
}

// TestIdlePublisherArenaReleased: the publish arena of a channel that
// published and then went idle goes once the connection brings nothing
// but a heartbeat, however small the arena (a slow publisher's would
// otherwise stay for the life of the connection); reads with traffic keep
// it.
func TestIdlePublisherArenaReleased(t *testing.T) {
	b := startBroker(t, "")
	_, cch := b.channel()
	if _, err := cch.QueueDeclare("arena-q", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	var rc *conn
	b.srv.mu.Lock()
	for c := range b.srv.conns {
		if c.nc.LocalAddr().String() == r.nc.RemoteAddr().String() && c.nc.RemoteAddr().String() == r.nc.LocalAddr().String() {
			rc = c
		}
	}
	b.srv.mu.Unlock()
	if rc == nil {
		t.Fatal("the raw connection is not among the broker's")
	}
	// released answers after a channel.open round trip, which the reader
	// handles after what was sent before it.
	next := uint16(2)
	released := func() int64 {
		t.Helper()
		r.method(next, &amqpwire.ChannelOpen{})
		expect[*amqpwire.ChannelOpenOk](r)
		next++
		return rc.arenasReleased.Load()
	}
	r.send(publishFrames(1, "arena-q", make([]byte, 1024)))
	if n := released(); n != 0 {
		t.Fatalf("%d bytes of arenas released by a connection that is publishing", n)
	}
	if q, err := cch.QueueDeclarePassive("arena-q", false, false, false, false, nil); err != nil || q.Messages != 1 {
		t.Fatalf("publish not routed: %+v %v", q, err)
	}
	r.send(amqpwire.AppendHeartbeatFrame(nil))
	time.Sleep(100 * time.Millisecond) // read on its own, not with what follows
	if n := released(); n < 1024 {
		t.Fatalf("%d bytes of arenas released after a heartbeat-only read, want the 1 KiB publish's arena", n)
	}
}
