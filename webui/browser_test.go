package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/rs/zerolog"

	"github.com/warrenmq/warren/admin"
	"github.com/warrenmq/warren/broker"
)

// These tests drive the management UI in a real headless Chromium (Debian's
// chromium package; .ci/run installs it) against a broker and its HTTP API
// started in-process, with amqp091-go as the AMQP client. Without Chromium
// they skip, except under CI=true, where they fail.

// chromium finds the browser: $WARREN_CHROMIUM, else chromium on the PATH.
func chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WARREN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "headless Chromium not found: install it (apt-get install chromium) or set WARREN_CHROMIUM; .ci/run installs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// env is a broker and its management API on random loopback ports.
type env struct {
	srv     *broker.Server
	api     *admin.Server
	amqpURL string // amqp://127.0.0.1:port/
	httpURL string
}

func startEnv(t testing.TB, cfg broker.Config) *env {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.Logger = zerolog.Nop()
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := admin.New(admin.Config{Broker: srv, Logger: zerolog.Nop(), SampleInterval: time.Second})
	go api.Serve(hln)
	e := &env{srv: srv, api: api, amqpURL: "amqp://" + ln.Addr().String() + "/", httpURL: "http://" + hln.Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.Shutdown(ctx)
		srv.Shutdown(ctx)
	})
	return e
}

// call makes an API request as guest and returns the status.
func (e *env) call(t testing.TB, method, path, user, pass string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (e *env) dial(t testing.TB, user, pass string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(strings.Replace(e.amqpURL, "amqp://", "amqp://"+user+":"+pass+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// browser is one headless Chromium tab on the UI.
type browser struct {
	t   testing.TB
	ctx context.Context
	url string
}

func newBrowser(t testing.TB, url string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// Script errors, console errors and CSP violations fail the test: the
	// page must run clean, not just look right.
	var mu sync.Mutex
	var problems []string
	listen := chromedp.WithListener(func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				p = "console.error"
				for _, a := range ev.Args {
					p += " " + string(a.Value) + a.Description
				}
			}
		case *cdplog.EventEntryAdded:
			// Failed API calls the test makes on purpose (401, 403, 404)
			// are network entries; anything else at error level counts.
			if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
				p = "log: " + ev.Entry.Text
			}
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	})
	ctx, cancel := chromedp.NewContext(actx, listen)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("in the page: %s", p)
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, url: url}
}

// run runs actions with a deadline, failing the test with the page's text.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.text())
	}
}

// text is the page's visible text, for failure messages.
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if len(s) > 3000 {
		s = s[:3000] + "..."
	}
	return s
}

// eval evaluates a JavaScript expression (awaiting a promise).
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v\npage text:\n%s", expr, err, b.text())
	}
	return v
}

// wait polls a JavaScript expression until it is true (up to 20 s: the
// page refreshes every 5 s).
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s (%s), last error %v\npage text:\n%s", what, expr, err, b.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// go opens a route of the page (the part after #).
func (b *browser) open(route string) {
	b.t.Helper()
	eval[string](b, `location.hash = `+jsString(route))
}

func jsString(s string) string {
	js, _ := json.Marshal(s)
	return string(js)
}

// login logs in from the login form, by keyboard only: the form's first
// field has focus, Tab moves to the password, Enter submits.
func (b *browser) login(user, pass string) {
	b.t.Helper()
	b.run("loading the page", chromedp.Navigate(b.url+"/"), chromedp.WaitVisible(chromedp.ID("login-user")))
	b.wait("focus on the username field", `document.activeElement && document.activeElement.id === 'login-user'`)
	b.run("typing credentials", chromedp.KeyEvent(user), chromedp.KeyEvent("\t"), chromedp.KeyEvent(pass), chromedp.KeyEvent("\r"))
}

// card is the text of an overview or queue page figure.
func card(name string) string {
	return `(document.querySelector('[data-card=` + name + `]') || {}).textContent`
}

func TestBrowserLogin(t *testing.T) {
	e := startEnv(t, broker.Config{})
	b := newBrowser(t, e.httpURL)

	b.login("guest", "wrong")
	b.wait("a refused login", `document.getElementById('login-error').textContent.includes('Login failed')`)
	navHidden := eval[bool](b, `document.getElementById('nav').hidden`)
	if !navHidden {
		t.Fatal("navigation shown after a failed login")
	}

	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)
	b.wait("the user's name in the header", `document.getElementById('who').textContent === 'guest'`)
	_, body := e.call(t, "GET", "/api/overview", "guest", "guest", "")
	var ov struct {
		ObjectTotals struct{ Exchanges int } `json:"object_totals"`
	}
	if err := json.Unmarshal(body, &ov); err != nil || ov.ObjectTotals.Exchanges == 0 {
		t.Fatalf("overview: %v %s", err, body)
	}
	b.wait("object totals", card("exchanges")+fmt.Sprintf(` === '%d'`, ov.ObjectTotals.Exchanges))
	charts := eval[int](b, `document.querySelectorAll('[data-page=overview] canvas').length`)
	if charts < 4 {
		t.Fatalf("overview has %d chart canvases, want 4 (rates, queued, sync latency, disk)", charts)
	}

	// Keyboard: "g q" goes to the queues, "/" focuses their filter, Escape
	// leaves it, "g o" goes back.
	b.run("pressing g q", chromedp.KeyEvent("g"), chromedp.KeyEvent("q"))
	b.wait("the queue list", `location.hash === '#/queues' && document.body.dataset.rendered === 'Queues'`)
	b.run("pressing /", chromedp.KeyEvent("/"))
	b.wait("the filter focused", `document.activeElement === document.querySelector('[data-filter]')`)
	// (chromedp types the "/" into the field too, which a browser does not
	// after preventDefault: the first Escape clears it, the second leaves.)
	b.run("leaving the filter", chromedp.KeyEvent("\x1b"), chromedp.KeyEvent("\x1b"))
	b.wait("the filter left", `document.activeElement !== document.querySelector('[data-filter]')`)
	b.run("pressing g o", chromedp.KeyEvent("g"), chromedp.KeyEvent("o"))
	b.wait("the overview again", `location.hash === '#/' && document.querySelector('[data-page=overview]')`)

	// The dark theme: the toggle switches the page's colours.
	before := eval[string](b, `getComputedStyle(document.body).backgroundColor`)
	b.run("switching the theme", chromedp.Click(chromedp.ID("theme")))
	after := eval[string](b, `getComputedStyle(document.body).backgroundColor`)
	if before == after {
		t.Fatalf("theme toggle left the background %s", before)
	}

	// Logging out forgets the credentials.
	b.run("logging out", chromedp.Click(chromedp.ID("logout")))
	b.wait("the login form", `!document.getElementById('login').hidden && sessionStorage.getItem('warren.auth') === null`)
}

func TestBrowserQueueLifecycle(t *testing.T) {
	e := startEnv(t, broker.Config{})
	b := newBrowser(t, e.httpURL)
	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)

	// A queue declared by an AMQP client appears in the list.
	conn := e.dial(t, "guest", "guest")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	const q = "ui-jobs"
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	b.open("/queues?name=ui-")
	rowReady := `(() => { const a = [...document.querySelectorAll('[data-page=queues] tbody a')].find(a => a.textContent === '` + q + `');
		return a ? a.closest('tr').children[4].textContent : null })()`
	b.wait("the queue in the list", rowReady+` === '0'`)
	// Where the list's cells are, to check that updates move nothing.
	const layout = `JSON.stringify([...document.querySelectorAll('[data-page=queues] th, [data-page=queues] tbody td, .pager, .filters')].map(el => {
		const r = el.getBoundingClientRect(); return [r.x, r.y, r.width, r.height] }))`
	before := eval[string](b, layout)

	// Its depth changes as the client publishes.
	for i := range 3 {
		if err := ch.Publish("", q, false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte(fmt.Sprintf("job %d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	b.wait("the depth in the list", rowReady+` === '3'`)
	if after := eval[string](b, layout); after != before {
		t.Fatalf("the list moved when the depth changed:\n%s\n%s", before, after)
	}

	// The queue's page: open it from the list, by its link.
	b.run("opening the queue", chromedp.Click(chromedp.Search(`//a[text()='`+q+`']`)))
	b.wait("the queue page", `document.querySelector('[data-page=queue]') && `+card("ready")+` === '3'`)
	canvas := eval[int](b, `document.querySelectorAll('[data-page=queue] canvas').length`)
	if canvas == 0 {
		t.Fatal("no depth chart on the queue page")
	}

	// Publish from the page: the message lands in the queue.
	b.run("publishing from the page",
		chromedp.SendKeys(chromedp.CSS(`[data-form=publish] [data-field=payload]`), "from the page"),
		chromedp.Click(chromedp.CSS(`[data-form=publish] button[type=submit]`)))
	b.wait("the publish result", `document.querySelector('[data-result=publish]').textContent.includes('routed')`)
	b.wait("the new depth", card("ready")+` === '4'`)

	// Get (ack, removing it) the first message from the page.
	b.run("getting a message",
		chromedp.SetValue(chromedp.CSS(`[data-form=get] [data-field=ackmode]`), "ack_requeue_false"),
		chromedp.Click(chromedp.CSS(`[data-form=get] button[type=submit]`)))
	b.wait("the message", `(document.querySelector('[data-result=get] [data-payload]') || {}).textContent === 'job 0'`)
	b.wait("the depth after the get", card("ready")+` === '3'`)
	if code, body := e.call(t, "GET", "/api/queues/%2F/"+q, "guest", "guest", ""); code != 200 || !strings.Contains(string(body), `"messages_ready":3`) {
		t.Fatalf("queue after the get: %d %s", code, body)
	}

	// Purge, confirming in the dialog.
	b.run("purging", chromedp.Click(chromedp.CSS(`[data-action=purge]`)), chromedp.WaitVisible(chromedp.CSS(`dialog [data-confirm]`)),
		chromedp.Click(chromedp.CSS(`dialog [data-confirm]`)))
	b.wait("the purged queue", card("ready")+` === '0'`)

	// Cancelling the delete dialog keeps the queue; confirming deletes it.
	b.run("cancelling a delete", chromedp.Click(chromedp.CSS(`[data-action=delete]`)), chromedp.WaitVisible(chromedp.CSS(`dialog`)),
		chromedp.KeyEvent("\x1b"))
	b.wait("the dialog to close", `!document.querySelector('dialog')`)
	if code, _ := e.call(t, "GET", "/api/queues/%2F/"+q, "guest", "guest", ""); code != 200 {
		t.Fatalf("queue gone after a cancelled delete: %d", code)
	}
	b.run("deleting", chromedp.Click(chromedp.CSS(`[data-action=delete]`)), chromedp.WaitVisible(chromedp.CSS(`dialog [data-confirm]`)),
		chromedp.Click(chromedp.CSS(`dialog [data-confirm]`)))
	b.wait("the queue list again", `location.hash === '#/queues' && document.querySelector('[data-page=queues]')`)
	if code, _ := e.call(t, "GET", "/api/queues/%2F/"+q, "guest", "guest", ""); code != 404 {
		t.Fatalf("queue after delete: status %d, want 404", code)
	}
	b.wait("the queue gone from the list", `![...document.querySelectorAll('[data-page=queues] tbody a')].some(a => a.textContent === '`+q+`')`)
}

func TestBrowserNonAdministratorRefused(t *testing.T) {
	e := startEnv(t, broker.Config{})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/users/watcher", `{"password":"pw","tags":"management"}`},
		{"PUT", "/api/permissions/%2F/watcher", `{"configure":".*","write":".*","read":".*"}`},
	} {
		if code, body := e.call(t, c.method, c.path, "guest", "guest", c.body); code/100 != 2 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	b := newBrowser(t, e.httpURL)
	b.login("watcher", "pw")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)
	adminLink := eval[bool](b, `!document.getElementById('nav-admin').hidden`)
	if adminLink {
		t.Fatal("Admin is in the navigation of a user with only the management tag")
	}
	for _, page := range []string{"users", "vhosts", "permissions", "definitions", "policies"} {
		b.open("/admin/" + page)
		b.wait("the refusal on "+page, `document.querySelector('[data-refused]') && document.querySelector('[data-refused]').textContent.includes('watcher')`)
	}
	// The page's refusal is the API's: the same credentials get 403 there.
	status := eval[int](b, `fetch('api/users', {headers: {Authorization: 'Basic ' + sessionStorage.getItem('warren.auth'),
		'X-Requested-With': 'XMLHttpRequest'}}).then(r => r.status)`)
	if status != 403 {
		t.Fatalf("GET /api/users as a management user from the page: %d, want 403", status)
	}
	// The queues list works for them.
	b.open("/queues")
	b.wait("the queue list", `document.body.dataset.rendered === 'Queues' || document.querySelector('[data-page=queues] tbody td')`)
}

// TestBrowserQueueListSortAndPage: the queue list pages through the
// server (page size, next, the count line), and a click on a column header
// sorts by it, numeric columns highest first, a second click reverses.
func TestBrowserQueueListSortAndPage(t *testing.T) {
	e := startEnv(t, broker.Config{})
	conn := e.dial(t, "guest", "guest")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	for i := range n {
		q := fmt.Sprintf("pg-%03d", i)
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		for range (i * 7) % 11 { // depths 0..10, the deepest not the last name
			if err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := newBrowser(t, e.httpURL)
	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)
	b.open("/queues?name=pg-&page_size=25")
	names := `JSON.stringify([...document.querySelectorAll('[data-page=queues] tbody a')].map(a => a.textContent))`
	count := `document.querySelector('[data-page=queues] .count').textContent`
	b.wait("the first page", count+` === '1–25 of 60 (61 in all)' || `+count+` === '1–25 of 60'`)
	if got := eval[string](b, names); !strings.HasPrefix(got, `["pg-000","pg-001"`) || strings.Count(got, `"pg-`) != 25 {
		t.Fatalf("first page: %s", got)
	}
	b.run("the next page", chromedp.Click(chromedp.CSS(`[data-page=queues] button[aria-label='Next page']`)))
	b.wait("the second page", count+`.startsWith('26–50 of 60')`)
	if got := eval[string](b, names); !strings.HasPrefix(got, `["pg-025"`) {
		t.Fatalf("second page: %s", got)
	}
	// Sort by ready messages: back to page 1, the deepest queues first.
	b.run("sorting by ready", chromedp.Click(chromedp.Search(`//th/button[text()='Ready']`)))
	b.wait("the sorted first page", count+`.startsWith('1–25 of 60') && document.querySelector("[data-page=queues] th[aria-sort=descending]")`)
	ready := `JSON.stringify([...document.querySelectorAll('[data-page=queues] tbody tr')].map(tr => Number(tr.children[4].textContent)))`
	b.wait("depths highest first", ready+`.startsWith('[10,10,10,10,10,10,9,')`)
	b.run("reversing the sort", chromedp.Click(chromedp.Search(`//th/button[text()='Ready']`)))
	b.wait("depths lowest first", `document.querySelector("[data-page=queues] th[aria-sort=ascending]") && `+ready+`.startsWith('[0,0,0,0,0,0,1,')`)
	if h := eval[string](b, `location.hash`); !strings.Contains(h, "sort=messages_ready") || !strings.Contains(h, "page_size=25") {
		t.Fatalf("the list's options are not in the URL: %s", h)
	}
}
