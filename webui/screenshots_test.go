package webui_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/broker"
)

// TestBrowserScreenshots saves a picture of each main page into the folder
// $WARREN_UI_SCREENSHOTS, with some traffic running so the charts and rates
// have something to show:
//
//	WARREN_UI_SCREENSHOTS=$PWD/docs/ui go test ./webui -run Screenshots -count=1 -v
func TestBrowserScreenshots(t *testing.T) {
	dir := os.Getenv("WARREN_UI_SCREENSHOTS")
	if dir == "" {
		t.Skip("set WARREN_UI_SCREENSHOTS to a folder to save screenshots of the UI into it")
	}
	e := startEnv(t, broker.Config{})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/vhosts/staging", `{"description":"pre-production"}`},
		{"PUT", "/api/users/ops", `{"password":"ops","tags":"monitoring"}`},
		{"PUT", "/api/users/app", `{"password":"app","tags":""}`},
		{"PUT", "/api/permissions/%2F/app", `{"configure":"^app\\.","write":".*","read":".*"}`},
		{"PUT", "/api/policies/%2F/jobs-limit", `{"pattern":"^jobs\\.","apply-to":"queues","definition":{"max-length":1000000,"dead-letter-exchange":"dlx"},"priority":1}`},
		{"PUT", "/api/exchanges/%2F/events", `{"type":"topic"}`},
		{"PUT", "/api/exchanges/%2F/dlx", `{"type":"fanout"}`},
	} {
		if code, body := e.call(t, c.method, c.path, "guest", "guest", c.body); code/100 != 2 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}

	// Traffic: publishers with confirms into a few queues, consumers that ack.
	conn := e.dial(t, "guest", "guest")
	setup, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queues := []string{"jobs.email", "jobs.thumbnails", "jobs.reports", "events.audit", "dead-letters"}
	for _, q := range queues {
		if _, err := setup.QueueDeclare(q, true, false, false, false, amqp.Table{"x-dead-letter-exchange": "dlx"}); err != nil {
			t.Fatal(err)
		}
	}
	setup.QueueBind("events.audit", "audit.#", "events", false, nil)
	setup.QueueBind("dead-letters", "", "dlx", false, nil)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns []*amqp.Connection
	defer func() {
		stop()
		for _, c := range conns {
			c.Close() // ends the consumers' delivery loops
		}
		wg.Wait()
	}()
	for i, q := range queues[:4] {
		pc := e.dial(t, "guest", "guest")
		conns = append(conns, pc)
		ch, err := pc.Channel()
		if err != nil {
			t.Fatal(err)
		}
		ch.Confirm(false)
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 256))
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprintf(`{"job":%d,"payload":"%0512d"}`, i, 0))
			for n := 0; ctx.Err() == nil; n++ {
				if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: 2, ContentType: "application/json", Body: body}); err != nil {
					return
				}
				<-confirms
				if n%(20*(i+1)) == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
		if i == 3 {
			continue // events.audit has no consumer: its depth grows
		}
		cc := e.dial(t, "guest", "guest")
		conns = append(conns, cc)
		cch, err := cc.Channel()
		if err != nil {
			t.Fatal(err)
		}
		cch.Qos(50, 0, false)
		deliveries, err := cch.Consume(q, "", false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				d.Ack(false)
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	settle := 40 * time.Second
	if s := os.Getenv("WARREN_UI_SCREENSHOTS_SETTLE"); s != "" {
		settle, _ = time.ParseDuration(s)
	}
	time.Sleep(settle) // samples for the charts (one a second here)

	b := newBrowser(t, e.httpURL)
	shot := func(name string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // charts draw on the next frame
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %s.png (%d bytes)", name, len(png))
	}
	b.run("loading the page", chromedp.Navigate(e.httpURL+"/"), chromedp.WaitVisible(chromedp.ID("login-user")))
	shot("login")
	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)
	shot("overview")
	b.open("/queues")
	b.wait("the queue list", `document.querySelectorAll('[data-page=queues] tbody a').length >= 5`)
	shot("queues")
	b.open("/queues/%2F/events.audit")
	b.wait("the queue page", `document.body.dataset.rendered === 'events.audit'`)
	shot("queue")
	b.open("/exchanges/%2F/events")
	b.wait("the exchange page", `document.body.dataset.rendered === 'events'`)
	shot("exchange")
	b.open("/connections")
	b.wait("the connection list", `document.querySelectorAll('[data-page=connections] tbody a').length >= 5`)
	shot("connections")
	b.open("/channels")
	b.wait("the channel list", `document.body.dataset.rendered === 'Channels' && document.querySelectorAll('[data-page=channels] tbody tr').length >= 5`)
	shot("channels")
	b.open("/admin/users")
	b.wait("the users", `document.querySelectorAll('[data-page=admin-users] tbody tr').length >= 3`)
	shot("admin-users")
	b.open("/admin/policies")
	b.wait("the policies", `document.querySelectorAll('[data-page=admin-policies] tbody tr td:not(.empty)').length > 0`)
	shot("admin-policies")
	b.run("switching to the dark theme", chromedp.Click(chromedp.ID("theme")))
	b.open("/")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview' && document.querySelectorAll('canvas').length >= 4`)
	shot("overview-dark")
}
