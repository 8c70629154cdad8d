package webui_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/broker"
)

// fill sets form fields by name ([data-form=form] [name=field]) and submits.
func (b *browser) fill(form string, fields map[string]string) {
	b.t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for name, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.CSS(`[data-form=`+form+`] [name="`+name+`"]`), v))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(`[data-form=`+form+`] button[type=submit]`)))
	b.run("filling the "+form+" form", steps...)
}

// rowWith is true when a table row on the page holds all the texts.
func rowWith(texts ...string) string {
	js, _ := json.Marshal(texts)
	return `[...document.querySelectorAll('main tbody tr')].some(tr => ` + string(js) + `.every(s => [...tr.children].some(td => td.textContent === s)))`
}

// apiWait polls the API until check accepts the body.
func apiWait(t *testing.T, e *env, what, path string, check func(code int, body string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := e.call(t, "GET", path, "guest", "guest", "")
		if check(code, string(body)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s: %d %s", what, path, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBrowserAdministration(t *testing.T) {
	e := startEnv(t, broker.Config{})
	b := newBrowser(t, e.httpURL)
	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)

	// Virtual hosts: add one; the header's picker learns it.
	b.open("/admin/vhosts")
	b.wait("the vhost table", rowWith("/"))
	b.fill("vhost", map[string]string{"name": "staging", "description": "pre-production"})
	b.wait("the new vhost", rowWith("staging", "pre-production"))
	b.wait("the vhost picker", `[...document.querySelectorAll('#vhost-select option')].some(o => o.value === 'staging')`)
	apiWait(t, e, "vhost", "/api/vhosts/staging", func(c int, _ string) bool { return c == 200 })

	// Users: add one with a tag.
	b.open("/admin/users")
	b.wait("the user table", rowWith("guest", "administrator"))
	b.fill("user", map[string]string{"name": "alice", "password": "s3cret", "tags": "monitoring"})
	b.wait("the new user", rowWith("alice", "monitoring"))
	apiWait(t, e, "user", "/api/users/alice", func(c int, body string) bool { return c == 200 && strings.Contains(body, `"tags":["monitoring"]`) })
	if code, _ := e.call(t, "GET", "/api/overview", "alice", "s3cret", ""); code != 200 {
		t.Fatalf("alice cannot log in with the password set in the page: %d", code)
	}

	// Permissions: give alice some in staging.
	b.open("/admin/permissions")
	b.wait("the user list of the form", `[...document.querySelectorAll('[data-form=permission] [name=user] option')].some(o => o.value === 'alice')`)
	b.fill("permission", map[string]string{"user": "alice", "vhost": "staging", "configure": "^alice\\.", "write": ".*", "read": ".*"})
	b.wait("the new permission", rowWith("alice", "staging", `^alice\.`))
	apiWait(t, e, "permission", "/api/permissions/staging/alice", func(c int, body string) bool { return c == 200 && strings.Contains(body, `"configure":"^alice\\."`) })

	// Policies.
	b.open("/admin/policies")
	b.wait("the policy form", `document.querySelector('[data-form=policy] [name=vhost] option')`)
	b.fill("policy", map[string]string{"vhost": "/", "name": "cap", "pattern": "^bulk\\.", "apply-to": "queues", "priority": "3",
		"definition": `{"max-length": 1000}`})
	b.wait("the new policy", rowWith("cap", `^bulk\.`, "queues", "max-length=1000"))
	apiWait(t, e, "policy", "/api/policies/%2F/cap", func(c int, body string) bool {
		return c == 200 && strings.Contains(body, `"max-length":1000`) && strings.Contains(body, `"priority":3`)
	})

	// Definitions: export downloads a file with what was made above.
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{Behavior: "allow", DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	cancel()
	b.open("/admin/definitions")
	b.run("exporting", chromedp.Click(chromedp.CSS(`[data-action=export]`)))
	var doc struct {
		Users    []struct{ Name string }
		VHosts   []struct{ Name string }
		Policies []struct{ Name string }
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		js, err := os.ReadFile(filepath.Join(dir, "warren-definitions.json"))
		if err == nil && json.Unmarshal(js, &doc) == nil && len(doc.Users) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no definitions downloaded: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(jsonOf(doc), `"Name":"alice"`) || !strings.Contains(jsonOf(doc), `"Name":"staging"`) || !strings.Contains(jsonOf(doc), `"Name":"cap"`) {
		t.Fatalf("exported definitions lack what the page made: %s", jsonOf(doc))
	}

	// Import: a pasted document, confirmed in the dialog.
	imp := `{"queues":[{"name":"imported.q","vhost":"staging","durable":true,"auto_delete":false,"arguments":{}}],
		"exchanges":[{"name":"imported.x","vhost":"staging","type":"fanout","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
		"bindings":[{"source":"imported.x","vhost":"staging","destination":"imported.q","destination_type":"queue","routing_key":"","arguments":{}}]}`
	b.run("importing", chromedp.SetValue(chromedp.CSS(`[data-field=definitions]`), imp), chromedp.Click(chromedp.CSS(`[data-action=import]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog [data-confirm]`)))
	b.wait("the dialog's summary", `document.querySelector('dialog').textContent.includes('1 queues, 1 exchanges, 1 bindings')`)
	b.run("confirming", chromedp.Click(chromedp.CSS(`dialog [data-confirm]`)))
	apiWait(t, e, "imported queue", "/api/queues/staging/imported.q", func(c int, _ string) bool { return c == 200 })
	apiWait(t, e, "imported binding", "/api/queues/staging/imported.q/bindings", func(c int, body string) bool {
		return c == 200 && strings.Contains(body, `"source":"imported.x"`)
	})

	// Limits: the node's figures.
	b.open("/admin/limits")
	b.wait("the limits", `document.querySelector('[data-page=admin-limits] dd') && document.querySelector('[data-page=admin-limits] dd').textContent.endsWith('bytes')`)

	// Delete the user from its row.
	b.open("/admin/users")
	b.wait("alice's row", rowWith("alice", "monitoring"))
	b.run("deleting alice", chromedp.Click(chromedp.Search(`//tr[td[text()='alice']]//button[text()='Delete']`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog [data-confirm]`)), chromedp.Click(chromedp.CSS(`dialog [data-confirm]`)))
	b.wait("alice gone", `!(`+rowWith("alice", "monitoring")+`)`)
	apiWait(t, e, "deleted user", "/api/users/alice", func(c int, _ string) bool { return c == 404 })
}

func jsonOf(v any) string {
	js, _ := json.Marshal(v)
	return string(js)
}

func TestBrowserExchangesConnectionsChannels(t *testing.T) {
	e := startEnv(t, broker.Config{})
	conn := e.dial(t, "guest", "guest")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("orders.new", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	b := newBrowser(t, e.httpURL)
	b.login("guest", "guest")
	b.wait("the overview", `document.body.dataset.rendered === 'Overview'`)

	// Declare an exchange from the list page's form.
	b.open("/exchanges")
	b.wait("the exchange list", rowWith("amq.topic"))
	b.run("opening the form", chromedp.Click(chromedp.Search(`//summary[text()='Add an exchange']`)))
	b.fill("add-exchange", map[string]string{"name": "orders", "type": "topic"})
	b.wait("the new exchange", rowWith("orders", "topic"))

	// Its page: bind it to the queue, publish through it.
	b.open("/exchanges/%2F/orders")
	b.wait("the exchange page", `document.body.dataset.rendered === 'orders'`)
	b.fill("bind", map[string]string{"destination-type": "q", "destination": "orders.new", "routing-key": "order.*"})
	b.wait("the binding", rowWith("orders.new", "queue", "order.*"))
	b.run("publishing", chromedp.SetValue(chromedp.CSS(`[data-form=publish] [data-field=routing-key]`), "order.created"),
		chromedp.SetValue(chromedp.CSS(`[data-form=publish] [data-field=payload]`), `{"id": 7}`),
		chromedp.SetValue(chromedp.CSS(`[data-form=publish] [data-field=properties]`), "content_type=application/json"),
		chromedp.Click(chromedp.CSS(`[data-form=publish] button[type=submit]`)))
	b.wait("routed", `document.querySelector('[data-result=publish]').textContent === 'Published and routed.'`)
	msg, err := ch.Consume("orders.new", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-msg:
		if string(d.Body) != `{"id": 7}` || d.ContentType != "application/json" || d.RoutingKey != "order.created" || d.DeliveryMode != 2 {
			t.Fatalf("message published from the page: %q %q %q mode %d", d.Body, d.ContentType, d.RoutingKey, d.DeliveryMode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message published from the page did not arrive")
	}

	// Channels list, then the connection's page, and close it from there.
	b.open("/channels")
	b.wait("the channel", `document.querySelectorAll('[data-page=channels] tbody a').length === 1`)
	b.open("/connections")
	b.wait("the connection", `document.querySelectorAll('[data-page=connections] tbody a').length === 1`)
	b.run("opening the connection", chromedp.Click(chromedp.CSS(`[data-page=connections] tbody a`)))
	b.wait("the connection page with its channel", `document.querySelector('[data-page=connection]') && document.querySelectorAll('[data-page=connection] tbody a, [data-page=connection] tbody td:not(.empty)').length > 0 && !document.querySelector('[data-page=connection] [data-action=close]').closest('section').hidden`)
	b.run("closing it", chromedp.SetValue(chromedp.CSS(`[data-page=connection] input`), "maintenance window"),
		chromedp.Click(chromedp.CSS(`[data-page=connection] [data-action=close]`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog [data-confirm]`)), chromedp.Click(chromedp.CSS(`dialog [data-confirm]`)))
	select {
	case err := <-closed:
		if err == nil || err.Code != 320 || !strings.Contains(err.Reason, "maintenance window") {
			t.Fatalf("connection closed with %v, want 320 and the page's reason", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not closed")
	}
	b.wait("back on the list, empty", `location.hash === '#/connections' && document.querySelector('[data-page=connections] tbody td.empty')`)
}
