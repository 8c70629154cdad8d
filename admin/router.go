package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/index"
)

// access is what a route asks of the user's tags.
type access uint8

const (
	accessNone       access = iota // no login (/metrics)
	accessManagement               // any management tag
	accessPolicy                   // policymaker or administrator
	accessMonitor                  // monitoring or administrator
	accessAdmin                    // administrator
)

// route is one endpoint: a method and path segments, "{x}" capturing one
// (unescaped) segment.
type route struct {
	method string
	segs   []string
	access access
	h      func(*request) error
}

// request is one authenticated API call.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	s      *Server
	params map[string]string
	user   index.User
	tags   map[string]bool
	seen   map[string]bool // canSeeVHost answers, per vhost
}

func (s *Server) handle(method, pattern string, acc access, h func(*request) error) {
	s.routes = append(s.routes, route{method: method, segs: strings.Split(strings.Trim(pattern, "/"), "/"), access: acc, h: h})
}

// splitPath splits an escaped path into unescaped segments, so that "%2F"
// stays inside its segment; a trailing slash is ignored.
func splitPath(escaped string) ([]string, bool) {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	var params map[string]string
	for i, p := range rt.segs {
		if strings.HasPrefix(p, "{") {
			if params == nil {
				params = make(map[string]string, 4)
			}
			params[p[1:len(p)-1]] = segs[i]
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return params, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if path != "/api" && !strings.HasPrefix(path, "/api/") && path != "/metrics" {
		s.cfg.UI.ServeHTTP(w, r)
		return
	}
	segs, ok := splitPath(path)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed path")
		return
	}
	var methods []string
	for i := range s.routes {
		rt := &s.routes[i]
		params, ok := rt.match(segs)
		if !ok {
			continue
		}
		if rt.method != r.Method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
			methods = append(methods, rt.method)
			continue
		}
		req := &request{w: w, r: r, s: s, params: params}
		if rt.access != accessNone && !s.authorize(req, rt.access) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		if err := rt.h(req); err != nil {
			s.writeErr(w, r, err)
		}
		return
	}
	if len(methods) > 0 {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "Object Not Found")
}

// ---- authentication and tags ----

var managementTags = []string{"administrator", "monitoring", "policymaker", "management"}

func (s *Server) authorize(req *request, acc access) bool {
	w := req.w
	// The web UI asks with X-Requested-With so that a failed login is
	// answered without a challenge: the browser's own login dialog would
	// otherwise take over from the page's.
	challenge := func() {
		if req.r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
			w.Header().Set("WWW-Authenticate", `Basic realm="Warren Management"`)
		}
	}
	name, pass, ok := req.r.BasicAuth()
	if !ok {
		challenge()
		writeError(w, http.StatusUnauthorized, "not_authorized", "Not_Authorized")
		return false
	}
	var remote net.Addr
	if host, port, err := net.SplitHostPort(req.r.RemoteAddr); err == nil {
		p, _ := strconv.Atoi(port)
		remote = &net.TCPAddr{IP: net.ParseIP(host), Port: p}
	}
	u, err := s.b.Authenticate(name, pass, remote)
	if err != nil {
		challenge()
		reason := "Login failed"
		if errors.Is(err, broker.ErrLoopbackOnly) {
			reason = "User can only log in via localhost"
		}
		s.log.Info().Str("user", name).Str("remote", req.r.RemoteAddr).Msg("HTTP API login refused")
		writeError(w, http.StatusUnauthorized, "not_authorized", reason)
		return false
	}
	req.user = u
	req.tags = make(map[string]bool, len(u.Tags))
	for _, t := range u.Tags {
		req.tags[t] = true
	}
	var allowed bool
	switch acc {
	case accessManagement:
		allowed = slices.ContainsFunc(managementTags, func(t string) bool { return req.tags[t] })
	case accessPolicy:
		allowed = req.tags["administrator"] || req.tags["policymaker"]
	case accessMonitor:
		allowed = req.tags["administrator"] || req.tags["monitoring"]
	case accessAdmin:
		allowed = req.tags["administrator"]
	}
	if !allowed {
		reason := "Not management user"
		switch acc {
		case accessAdmin:
			reason = "Not administrator user"
		case accessMonitor:
			reason = "Not monitor user"
		case accessPolicy:
			reason = "Not policymaker user"
		}
		writeError(w, http.StatusForbidden, "not_authorised", reason)
		return false
	}
	return true
}

func (req *request) isAdmin() bool { return req.tags["administrator"] }

// seesAll reports whether the user sees every vhost and every user's
// connections (administrator and monitoring).
func (req *request) seesAll() bool { return req.tags["administrator"] || req.tags["monitoring"] }

// actor is the user acting on broker objects: administrators act without
// permission checks, everyone else under their permissions.
func (req *request) actor() broker.Actor {
	return broker.Actor{User: req.user.Name, Enforce: !req.isAdmin()}
}

// canSeeVHost reports whether the user may see the vhost's objects.
func (req *request) canSeeVHost(vhost string) bool {
	if req.seesAll() {
		return true
	}
	ok, known := req.seen[vhost]
	if !known {
		if req.seen == nil {
			req.seen = map[string]bool{}
		}
		ok = req.s.b.Allowed(req.user.Name, vhost, "", "", "")
		req.seen[vhost] = ok
	}
	return ok
}

// needVHost checks that the vhost exists and the user has access to it.
func (req *request) needVHost(vhost string) error {
	vhs, err := req.s.b.VHosts()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(vhs, func(v index.VHost) bool { return v.Name == vhost }) {
		return errNotFound
	}
	if !req.canSeeVHost(vhost) {
		return &httpError{http.StatusForbidden, "not_authorised", "Access refused."}
	}
	return nil
}

// ---- responses ----

type httpError struct {
	code          int
	kind, message string
}

func (e *httpError) Error() string { return e.message }

var errNotFound = &httpError{http.StatusNotFound, "not_found", "Object Not Found"}

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, code int, kind, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": kind, "reason": reason})
}

// writeErr maps an error to RabbitMQ's status codes: AMQP reply codes from
// the broker to their HTTP equivalents, anything unexpected to 500.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.code, he.kind, he.message)
		return
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "bad_request", "request body too large")
		return
	}
	var ae *amqpwire.Error
	if errors.As(err, &ae) {
		text := ae.Text
		switch ae.Code {
		case amqpwire.NotFound:
			writeError(w, http.StatusNotFound, "not_found", text)
		case amqpwire.AccessRefused:
			writeError(w, http.StatusForbidden, "access_refused", text)
		case amqpwire.ResourceLocked:
			writeError(w, http.StatusMethodNotAllowed, "resource_locked", text)
		case amqpwire.PreconditionFailed, amqpwire.CommandInvalid, amqpwire.NotAllowed:
			writeError(w, http.StatusBadRequest, "bad_request", text)
		case amqpwire.NotImplemented:
			writeError(w, http.StatusNotImplemented, "not_implemented", text)
		default:
			s.log.Error().Err(err).Str("path", r.URL.Path).Msg("HTTP API request failed")
			writeError(w, http.StatusInternalServerError, "internal_server_error", text)
		}
		return
	}
	s.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("HTTP API request failed")
	writeError(w, http.StatusInternalServerError, "internal_server_error", err.Error())
}

func (req *request) json(v any) error {
	req.w.Header().Set("Content-Type", "application/json")
	req.w.Header().Set("Cache-Control", "no-cache")
	enc := json.NewEncoder(req.w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// created answers 201 for a new object and 204 for an updated one, as
// RabbitMQ does.
func (req *request) created(isNew bool) error {
	if isNew {
		req.w.WriteHeader(http.StatusCreated)
	} else {
		req.w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

func (req *request) noContent() error {
	req.w.WriteHeader(http.StatusNoContent)
	return nil
}

// decode reads a JSON request body into v; an empty body leaves v as is.
func (req *request) decode(v any) error {
	body, err := io.ReadAll(req.r.Body)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %v", err)
	}
	return nil
}

// list answers a list of objects with RabbitMQ's query options: columns
// (comma-separated, dotted for nested fields), sort and sort_reverse, and
// pagination (page, page_size, name, use_regex).
func (req *request) list(items []map[string]any, defaultSort ...string) error {
	q := req.r.URL.Query()
	total := len(items)
	if name := q.Get("name"); name != "" {
		var match func(string) bool
		if q.Get("use_regex") == "true" {
			re, err := regexp.Compile(name)
			if err != nil {
				return badRequest("invalid regex '%s': %v", name, err)
			}
			match = re.MatchString
		} else {
			lname := strings.ToLower(name)
			match = func(s string) bool { return strings.Contains(strings.ToLower(s), lname) }
		}
		items = slices.DeleteFunc(items, func(m map[string]any) bool {
			n, _ := m["name"].(string)
			return !match(n)
		})
	}
	sortKeys := defaultSort
	if s := q.Get("sort"); s != "" {
		sortKeys = []string{s}
	}
	if len(sortKeys) > 0 {
		sort.SliceStable(items, func(i, j int) bool {
			for _, k := range sortKeys {
				if c := compareValues(lookup(items[i], k), lookup(items[j], k)); c != 0 {
					return c < 0
				}
			}
			return false
		})
	}
	if q.Get("sort_reverse") == "true" {
		slices.Reverse(items)
	}
	if cols := q.Get("columns"); cols != "" {
		for i, m := range items {
			items[i] = pickColumns(m, strings.Split(cols, ","))
		}
	}
	if items == nil {
		items = []map[string]any{}
	}
	if q.Has("page") || q.Get("pagination") == "true" {
		page, _ := strconv.Atoi(q.Get("page"))
		size, _ := strconv.Atoi(q.Get("page_size"))
		if page < 1 {
			page = 1
		}
		if size < 1 {
			size = 100
		}
		if size > 500 {
			return badRequest("page size %d is too large (500 at most)", size)
		}
		filtered := len(items)
		pages := (filtered + size - 1) / size
		lo := min((page-1)*size, filtered)
		hi := min(lo+size, filtered)
		return req.json(map[string]any{"items": items[lo:hi], "page": page, "page_size": size,
			"page_count": pages, "item_count": hi - lo, "filtered_count": filtered, "total_count": total})
	}
	return req.json(items)
}

// object answers one object, honouring columns.
func (req *request) object(m map[string]any) error {
	if cols := req.r.URL.Query().Get("columns"); cols != "" {
		m = pickColumns(m, strings.Split(cols, ","))
	}
	return req.json(m)
}

func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func pickColumns(m map[string]any, cols []string) map[string]any {
	out := make(map[string]any, len(cols))
	for _, c := range cols {
		c = strings.TrimSpace(c)
		parts := strings.Split(c, ".")
		v := lookup(m, c)
		if v == nil {
			continue
		}
		dst := out
		for _, p := range parts[:len(parts)-1] {
			sub, ok := dst[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				dst[p] = sub
			}
			dst = sub
		}
		dst[parts[len(parts)-1]] = v
	}
	return out
}

func compareValues(a, b any) int {
	switch x := a.(type) {
	case string:
		y, _ := b.(string)
		return strings.Compare(x, y)
	case bool:
		y, _ := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	}
	fa, aok := toFloat(a)
	fb, bok := toFloat(b)
	switch {
	case aok && bok && fa < fb, !aok && bok:
		return -1
	case aok && bok && fa > fb, aok && !bok:
		return 1
	}
	return 0
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	case uint32:
		return float64(n), true
	case uint16:
		return float64(n), true
	}
	return 0, false
}

// boolParam reads a query parameter RabbitMQ treats as a boolean.
func boolParam(r *http.Request, name string) bool {
	v := r.URL.Query().Get(name)
	return v == "true" || v == "1"
}
