package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/segment"
)

// The API additions the web UI reads: RabbitMQ's *_age samples, Warren's
// storage and alarm figures in the overview, a queue's consumers, the
// default exchange as amq.default, and no basic-auth challenge for the
// page's own requests.

func TestOverviewSamplesStorageAndAlarms(t *testing.T) {
	e := start(t)
	ch := channel(t, e.dial("guest", "guest", nil))
	if _, err := ch.QueueDeclare("hist", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := ch.Publish("", "hist", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("persistent body")}); err != nil {
			t.Fatal(err)
		}
	}
	type sample struct {
		Sample    float64 `json:"sample"`
		Timestamp int64   `json:"timestamp"`
	}
	type det struct {
		Rate    float64  `json:"rate"`
		Samples []sample `json:"samples"`
	}
	var o struct {
		MessageStats map[string]any `json:"message_stats"`
		QueueTotals  struct {
			Ready det `json:"messages_ready_details"`
		} `json:"queue_totals"`
		Storage struct {
			DiskBytes  int64   `json:"disk_bytes"`
			Ratio      float64 `json:"compression_ratio"`
			SyncRounds int64   `json:"sync_rounds"`
			DiskHist   det     `json:"disk_bytes_details"`
		} `json:"warren_storage"`
		Alarms map[string]bool `json:"warren_alarms"`
	}
	// Samples every 100 ms here: wait until the history holds the five.
	waitFor(t, "samples with the published messages", func() bool {
		e.get("/api/overview?lengths_age=60&lengths_incr=1&msg_rates_age=60&msg_rates_incr=1", &o)
		s := o.QueueTotals.Ready.Samples
		return len(s) >= 3 && s[0].Sample == 5 && o.Storage.DiskBytes > 0
	})
	s := o.QueueTotals.Ready.Samples
	for i := 1; i < len(s); i++ {
		if s[i].Timestamp >= s[i-1].Timestamp {
			t.Fatalf("samples not newest first: %+v", s)
		}
		if d := s[i-1].Timestamp - s[i].Timestamp; d < 900 {
			t.Fatalf("samples %d ms apart with lengths_incr=1: %+v", d, s)
		}
	}
	pub, _ := o.MessageStats["publish_details"].(map[string]any)
	ps, _ := pub["samples"].([]any)
	if len(ps) == 0 || ps[0].(map[string]any)["sample"].(float64) != 5 {
		t.Fatalf("publish samples: %v", pub)
	}
	if o.Storage.SyncRounds == 0 || o.Storage.Ratio <= 0 || len(o.Storage.DiskHist.Samples) == 0 {
		t.Fatalf("storage: %+v", o.Storage)
	}
	if mem, ok := o.Alarms["memory"]; !ok || mem || o.Alarms["disk"] {
		t.Fatalf("alarms: %v", o.Alarms)
	}
	// Without the parameters, no samples (RabbitMQ's default).
	if strings.Contains(string(e.do("GET", "/api/overview", nil, 200)), `"samples"`) {
		t.Fatal("samples in an overview that asked for none")
	}

	// The queue's own depth history.
	var q struct {
		Ready det `json:"messages_ready_details"`
	}
	waitFor(t, "queue samples", func() bool {
		e.get("/api/queues/%2F/hist?lengths_age=60&lengths_incr=1", &q)
		return len(q.Ready.Samples) >= 2 && q.Ready.Samples[0].Sample == 5
	})
	// A queue declared after the first samples has none from before it.
	ch.QueueDeclare("late", false, false, false, false, nil)
	var late struct {
		Ready det `json:"messages_ready_details"`
	}
	e.get("/api/queues/%2F/late?lengths_age=600&lengths_incr=1", &late)
	if len(late.Ready.Samples) > 1 {
		t.Fatalf("new queue has %d samples at once", len(late.Ready.Samples))
	}
}

func TestSyncInterval(t *testing.T) {
	cases := []struct {
		name       string
		counts     []uint64
		seconds    float64
		mean, p99  float64
		wantRounds uint64
	}{
		{"none", make([]uint64, 15), 0, 0, 0, 0},
		// 100 rounds, all in the (0.5 ms, 1 ms] bucket: p99 interpolates to 0.995 ms.
		{"one bucket", []uint64{0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0.08, 0.0008, 0.000995, 100},
		// 99 fast rounds and one above the last bound: p99 is in the fast bucket.
		{"tail", []uint64{99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 5, 0.05, 0.0001, 100},
		// 90 fast, 10 above the last bound: p99 reports the last bound.
		{"overflow", []uint64{90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10}, 30, 0.3, 2.5, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := []uint64{3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			cur := make([]uint64, len(c.counts))
			for i := range cur {
				cur[i] = base[i] + c.counts[i]
			}
			mean, p99, rounds := syncInterval(segmentStats(base, 1), segmentStats(cur, 1+c.seconds))
			if rounds != c.wantRounds || !near(mean, c.mean) || !near(p99, c.p99) {
				t.Fatalf("got mean %g p99 %g rounds %d, want %g %g %d", mean, p99, rounds, c.mean, c.p99, c.wantRounds)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestQueueConsumersDefaultExchangeAndChallenge(t *testing.T) {
	e := start(t)
	c := e.dial("guest", "guest", nil)
	ch := channel(t, c)
	ch.QueueDeclare("work", false, false, false, false, nil)
	if _, err := ch.Consume("work", "ctag-1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Consumers []struct {
			Tag   string `json:"consumer_tag"`
			Queue struct {
				Name string `json:"name"`
			} `json:"queue"`
		} `json:"consumer_details"`
	}
	waitFor(t, "the consumer", func() bool {
		e.get("/api/queues/%2F/work", &q)
		return len(q.Consumers) == 1
	})
	if q.Consumers[0].Tag != "ctag-1" || q.Consumers[0].Queue.Name != "work" {
		t.Fatalf("consumer_details: %+v", q.Consumers)
	}

	// amq.default is the default exchange, for publishing and reading.
	out := e.do("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "work", "payload": "hi",
		"payload_encoding": "string", "properties": map[string]any{}}, 200)
	if !strings.Contains(string(out), `"routed":true`) {
		t.Fatalf("publish through amq.default: %s", out)
	}
	var x map[string]any
	e.get("/api/exchanges/%2F/amq.default", &x)
	if x["name"] != "" || x["type"] != "direct" {
		t.Fatalf("amq.default: %v", x)
	}
	var bs []map[string]any
	e.get("/api/exchanges/%2F/amq.default/bindings/source", &bs)
	if len(bs) != 1 || bs[0]["destination"] != "work" {
		t.Fatalf("default exchange bindings: %v", bs)
	}

	// A failed login is challenged, unless the page itself asks.
	for _, ajax := range []bool{false, true} {
		req, _ := http.NewRequest("GET", e.httpURL+"/api/overview", nil)
		req.SetBasicAuth("guest", "wrong")
		if ajax {
			req.Header.Set("X-Requested-With", "XMLHttpRequest")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || (resp.Header.Get("WWW-Authenticate") != "") == ajax {
			t.Fatalf("ajax %v: status %d, WWW-Authenticate %q", ajax, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// An empty page is an empty list, not null.
	page := e.do("GET", "/api/queues?page=1&name=nothing-matches", nil, 200)
	if !strings.Contains(string(page), `"items":[]`) {
		t.Fatalf("empty page: %s", page)
	}

	// The UI is served at /.
	resp, err := http.Get(e.httpURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func segmentStats(counts []uint64, seconds float64) segment.SyncStats {
	var n int64
	for _, c := range counts {
		n += int64(c)
	}
	return segment.SyncStats{Rounds: n, Counts: counts, Seconds: seconds}
}

func TestHistoryBounds(t *testing.T) {
	var h history
	at := time.Unix(1_700_000_000, 0)
	qs := make([]broker.QueueInfo, maxQueueHistory+10)
	for i := range qs {
		qs[i] = broker.QueueInfo{VHost: "/", Name: fmt.Sprintf("q%d", i)}
	}
	// Empty queues cost nothing.
	h.record(histPoint{at: at}, qs)
	if len(h.queues) != 0 {
		t.Fatalf("%d histories for empty queues", len(h.queues))
	}
	// Queues with messages get one, up to the bound.
	for i := range qs {
		qs[i].Ready = i + 1
	}
	h.record(histPoint{at: at.Add(5 * time.Second)}, qs)
	if len(h.queues) != maxQueueHistory {
		t.Fatalf("%d histories, want the bound %d", len(h.queues), maxQueueHistory)
	}
	// A queue that empties keeps its history for a window, then loses it;
	// a deleted queue loses it at once.
	qs = qs[:2]
	qs[0].Ready, qs[1].Ready = 0, 7
	for i := range historyLen - 1 {
		h.record(histPoint{at: at.Add(time.Duration(10+5*i) * time.Second)}, qs)
	}
	if len(h.queues) != 2 {
		t.Fatalf("%d histories after a window less one sample, want 2", len(h.queues))
	}
	h.record(histPoint{at: at.Add(time.Hour)}, qs)
	if _, ok := h.queues[queueKey{"/", "q0"}]; ok || len(h.queues) != 1 {
		t.Fatalf("histories after a whole empty window: %d, q0 kept %v", len(h.queues), ok)
	}
	// The ring holds the last historyLen samples, newest first.
	w := window{age: 24 * time.Hour, incr: time.Second}
	got := samples(&h, w, h.queues[queueKey{"/", "q1"}].first, func(i int) uint32 { return h.queues[queueKey{"/", "q1"}].depth[i][0] })
	if len(got) != historyLen || got[0]["sample"].(uint32) != 7 || got[len(got)-1]["sample"].(uint32) != 7 {
		t.Fatalf("%d samples: first %v last %v", len(got), got[0], got[len(got)-1])
	}
}
