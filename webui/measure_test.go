package webui_test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/broker"
)

// pageLoad is what the Performance API tells about one load of the queues
// page.
type pageLoad struct {
	Rendered, FCP, DOMContentLoaded                        float64 // ms from navigation start
	StaticTransfer, StaticEncoded, StaticDecoded, Requests int     // the page and its assets
	APITransfer, APIDecoded, APIRequests                   int     // API calls before the first render
	QueueListMs                                            float64 // the first /api/queues call, request to end of response
}

const perfScript = `(() => {
  const rendered = performance.getEntriesByName('warren:rendered')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const nav = performance.getEntriesByType('navigation')[0];
  const out = {Rendered: rendered ? rendered.startTime : -1, FCP: fcp ? fcp.startTime : -1,
    DOMContentLoaded: nav.domContentLoadedEventEnd,
    StaticTransfer: nav.transferSize, StaticEncoded: nav.encodedBodySize, StaticDecoded: nav.decodedBodySize, Requests: 1,
    APITransfer: 0, APIDecoded: 0, APIRequests: 0, QueueListMs: -1};
  for (const r of performance.getEntriesByType('resource')) {
    if (r.name.includes('/api/')) {
      if (rendered && r.startTime > rendered.startTime) continue;
      out.APITransfer += r.transferSize; out.APIDecoded += r.decodedBodySize; out.APIRequests++;
      if (r.name.includes('/api/queues?') && out.QueueListMs < 0) out.QueueListMs = r.responseEnd - r.requestStart;
    } else {
      out.StaticTransfer += r.transferSize; out.StaticEncoded += r.encodedBodySize; out.StaticDecoded += r.decodedBodySize; out.Requests++;
    }
  }
  return out;
})()`

// TestBrowserMeasure measures the page weight and the time to first render
// of the queues page with many queues (docs/ui.md has the figures):
//
//	WARREN_UI_MEASURE=10000 go test ./webui -run Measure -count=1 -v
//
// Each round loads the page in a fresh browser profile (nothing cached),
// logged in through sessionStorage as the login form leaves it, then reloads
// it once with the cache warm.
func TestBrowserMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WARREN_UI_MEASURE"))
	if n <= 0 {
		t.Skip("set WARREN_UI_MEASURE to a number of queues to measure the page with them")
	}
	e := startEnv(t, broker.Config{})
	conn := e.dial(t, "guest", "guest")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("bench.q%05d", i)
		if _, err := ch.QueueDeclare(name, true, false, false, i < n-1, nil); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			ch.Publish("", name, false, false, amqp.Publishing{Body: []byte("x")})
		}
	}
	t.Logf("declared %d durable queues in %v", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // rates sampled at least once

	// The API alone: the queue list's first page, as the page asks for it.
	var api []time.Duration
	for range 5 {
		t0 := time.Now()
		code, body := e.call(t, "GET", "/api/queues?page=1&page_size=100&sort=name&columns=name,vhost,durable,auto_delete,exclusive,arguments,policy,messages_ready,messages_unacknowledged,consumers,message_stats.publish_details.rate,message_stats.deliver_get_details.rate,message_stats.ack_details.rate", "guest", "guest", "")
		api = append(api, time.Since(t0))
		if code != http.StatusOK || !strings.Contains(string(body), fmt.Sprintf(`"total_count":%d`, n)) {
			t.Fatalf("queue list: %d %.200s", code, body)
		}
	}
	slices.Sort(api)
	t.Logf("GET /api/queues (page 1 of %d queues, 100 rows): median %v, min %v, max %v", n, api[2].Round(time.Millisecond), api[0].Round(time.Millisecond), api[4].Round(time.Millisecond))

	auth := "Z3Vlc3Q6Z3Vlc3Q=" // guest:guest, as the login form stores it
	var cold, warm []pageLoad
	for round := range 5 {
		b := newBrowser(t, e.httpURL)
		b.run("opening the origin", chromedp.Navigate(e.httpURL+"/nothing-here"))
		eval[bool](b, `(sessionStorage.setItem('warren.auth', '`+auth+`'), true)`)
		for i := range 2 {
			if i == 0 {
				b.run("loading the queues page", chromedp.Navigate(e.httpURL+"/#/queues"))
			} else {
				b.run("reloading the queues page", chromedp.Reload())
			}
			b.wait("the first render", `document.body.dataset.rendered === 'Queues'`)
			rows := eval[int](b, `document.querySelectorAll('[data-page=queues] tbody tr').length`)
			if rows != 100 {
				t.Fatalf("queues page shows %d rows, want 100", rows)
			}
			pl := eval[pageLoad](b, perfScript)
			if i == 0 {
				cold = append(cold, pl)
			} else {
				warm = append(warm, pl)
			}
			t.Logf("round %d load %d: %+v", round, i, pl)
		}
		chromedp.Cancel(b.ctx)
	}
	med := func(ls []pageLoad, f func(pageLoad) float64) float64 {
		v := make([]float64, len(ls))
		for i, l := range ls {
			v[i] = f(l)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, c := range []struct {
		name string
		ls   []pageLoad
	}{{"cold", cold}, {"warm", warm}} {
		t.Logf("%s: first render %.0f ms (median of %d), first contentful paint %.0f ms, DOMContentLoaded %.0f ms, /api/queues %.0f ms",
			c.name, med(c.ls, func(p pageLoad) float64 { return p.Rendered }), len(c.ls), med(c.ls, func(p pageLoad) float64 { return p.FCP }),
			med(c.ls, func(p pageLoad) float64 { return p.DOMContentLoaded }), med(c.ls, func(p pageLoad) float64 { return p.QueueListMs }))
		p := c.ls[0]
		t.Logf("%s: page and assets: %d requests, %d bytes transferred, %d bytes compressed bodies, %d bytes uncompressed; API before first render: %d requests, %d bytes transferred, %d bytes uncompressed",
			c.name, p.Requests, p.StaticTransfer, p.StaticEncoded, p.StaticDecoded, p.APIRequests, p.APITransfer, p.APIDecoded)
	}
}
