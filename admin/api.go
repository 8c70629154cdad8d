package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/index"
	"github.com/warrenmq/warren/store"
)

// CompatVersion is the RabbitMQ version whose management API Warren's
// follows; it is what rabbitmq_version and rabbit_version report, so that
// tools that check the version accept Warren.
const CompatVersion = "3.13.7"

func (s *Server) addRoutes() {
	g, put, del, post := http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost
	s.handle(g, "/metrics", accessNone, s.metrics)

	s.handle(g, "/api/overview", accessManagement, s.overview)
	s.handle(g, "/api/whoami", accessManagement, s.whoami)
	s.handle(g, "/api/cluster-name", accessManagement, s.clusterName)
	s.handle(g, "/api/extensions", accessManagement, func(r *request) error { return r.json([]any{}) })
	s.handle(g, "/api/nodes", accessMonitor, s.nodes)
	s.handle(g, "/api/nodes/{node}", accessMonitor, s.node)
	s.handle(g, "/api/healthchecks/node", accessManagement, s.healthOK)
	s.handle(g, "/api/healthchecks/node/{node}", accessManagement, s.healthOK)
	s.handle(g, "/api/health/checks/alarms", accessManagement, s.healthAlarms)
	s.handle(g, "/api/health/checks/local-alarms", accessManagement, s.healthAlarms)
	s.handle(put, "/api/warren/memory-high-watermark", accessAdmin, s.setLimit(func(v string) error { return s.b.SetMemoryHighWatermark(v) }))
	s.handle(put, "/api/warren/disk-free-limit", accessAdmin, s.setLimit(func(v string) error { return s.b.SetDiskFreeLimit(v) }))
	s.handle(g, "/api/health/checks/virtual-hosts", accessManagement, s.healthOK)
	s.handle(g, "/api/health/checks/ready-to-serve-clients", accessManagement, s.healthOK)

	s.handle(g, "/api/vhosts", accessManagement, s.listVHosts)
	s.handle(g, "/api/vhosts/{vhost}", accessManagement, s.getVHost)
	s.handle(put, "/api/vhosts/{vhost}", accessAdmin, s.putVHost)
	s.handle(del, "/api/vhosts/{vhost}", accessAdmin, s.deleteVHost)
	s.handle(g, "/api/vhosts/{vhost}/permissions", accessAdmin, s.vhostPermissions)
	s.handle(g, "/api/vhosts/{vhost}/connections", accessManagement, s.listConnections)
	s.handle(g, "/api/vhosts/{vhost}/channels", accessManagement, s.listChannels)

	s.handle(g, "/api/users", accessAdmin, s.listUsers)
	s.handle(g, "/api/users/without-permissions", accessAdmin, s.usersWithoutPermissions)
	s.handle(post, "/api/users/bulk-delete", accessAdmin, s.bulkDeleteUsers)
	s.handle(g, "/api/users/{user}", accessAdmin, s.getUser)
	s.handle(put, "/api/users/{user}", accessAdmin, s.putUser)
	s.handle(del, "/api/users/{user}", accessAdmin, s.deleteUser)
	s.handle(g, "/api/users/{user}/permissions", accessAdmin, s.userPermissions)

	s.handle(g, "/api/permissions", accessAdmin, s.listPermissions)
	s.handle(g, "/api/permissions/{vhost}/{user}", accessAdmin, s.getPermission)
	s.handle(put, "/api/permissions/{vhost}/{user}", accessAdmin, s.putPermission)
	s.handle(del, "/api/permissions/{vhost}/{user}", accessAdmin, s.deletePermission)

	s.handle(g, "/api/exchanges", accessManagement, s.listExchanges)
	s.handle(g, "/api/exchanges/{vhost}", accessManagement, s.listExchanges)
	s.handle(g, "/api/exchanges/{vhost}/{name}", accessManagement, s.getExchange)
	s.handle(put, "/api/exchanges/{vhost}/{name}", accessManagement, s.putExchange)
	s.handle(del, "/api/exchanges/{vhost}/{name}", accessManagement, s.deleteExchange)
	s.handle(post, "/api/exchanges/{vhost}/{name}/publish", accessManagement, s.publish)
	s.handle(g, "/api/exchanges/{vhost}/{name}/bindings/source", accessManagement, s.exchangeBindings("source"))
	s.handle(g, "/api/exchanges/{vhost}/{name}/bindings/destination", accessManagement, s.exchangeBindings("destination"))

	s.handle(g, "/api/queues", accessManagement, s.listQueues)
	s.handle(g, "/api/queues/{vhost}", accessManagement, s.listQueues)
	s.handle(g, "/api/queues/{vhost}/{name}", accessManagement, s.getQueue)
	s.handle(put, "/api/queues/{vhost}/{name}", accessManagement, s.putQueue)
	s.handle(del, "/api/queues/{vhost}/{name}", accessManagement, s.deleteQueue)
	s.handle(del, "/api/queues/{vhost}/{name}/contents", accessManagement, s.purgeQueue)
	s.handle(post, "/api/queues/{vhost}/{name}/get", accessManagement, s.getMessages)
	s.handle(g, "/api/queues/{vhost}/{name}/bindings", accessManagement, s.queueBindings)

	s.handle(g, "/api/bindings", accessManagement, s.listBindings)
	s.handle(g, "/api/bindings/{vhost}", accessManagement, s.listBindings)
	for _, dt := range []string{"q", "e"} {
		base := "/api/bindings/{vhost}/e/{source}/" + dt + "/{destination}"
		s.handle(g, base, accessManagement, s.bindingsBetween(dt))
		s.handle(post, base, accessManagement, s.postBinding(dt))
		s.handle(g, base+"/{props}", accessManagement, s.getBinding(dt))
		s.handle(del, base+"/{props}", accessManagement, s.deleteBinding(dt))
	}

	s.handle(g, "/api/connections", accessManagement, s.listConnections)
	s.handle(g, "/api/connections/{name}", accessManagement, s.getConnection)
	s.handle(del, "/api/connections/{name}", accessManagement, s.closeConnection)
	s.handle(g, "/api/connections/{name}/channels", accessManagement, s.listChannels)
	s.handle(g, "/api/channels", accessManagement, s.listChannels)
	s.handle(g, "/api/channels/{channel}", accessManagement, s.getChannel)
	s.handle(g, "/api/consumers", accessManagement, s.listConsumers)
	s.handle(g, "/api/consumers/{vhost}", accessManagement, s.listConsumers)

	s.handle(g, "/api/definitions", accessAdmin, s.exportDefinitions)
	s.handle(post, "/api/definitions", accessAdmin, s.importDefinitions)
	s.handle(g, "/api/definitions/{vhost}", accessAdmin, s.exportDefinitions)
	s.handle(post, "/api/definitions/{vhost}", accessAdmin, s.importDefinitions)

	s.handle(g, "/api/policies", accessManagement, s.listPolicies(false))
	s.handle(g, "/api/policies/{vhost}", accessManagement, s.listPolicies(false))
	s.handle(g, "/api/policies/{vhost}/{name}", accessManagement, s.getPolicy(false))
	s.handle(put, "/api/policies/{vhost}/{name}", accessPolicy, s.putPolicy(false))
	s.handle(del, "/api/policies/{vhost}/{name}", accessPolicy, s.deletePolicy(false))
	// Operator policies are for administrators only, as in RabbitMQ.
	s.handle(g, "/api/operator-policies", accessAdmin, s.listPolicies(true))
	s.handle(g, "/api/operator-policies/{vhost}", accessAdmin, s.listPolicies(true))
	s.handle(g, "/api/operator-policies/{vhost}/{name}", accessAdmin, s.getPolicy(true))
	s.handle(put, "/api/operator-policies/{vhost}/{name}", accessAdmin, s.putPolicy(true))
	s.handle(del, "/api/operator-policies/{vhost}/{name}", accessAdmin, s.deletePolicy(true))
	s.handle(g, "/api/parameters", accessPolicy, s.listParameters)
	s.handle(g, "/api/global-parameters", accessPolicy, s.listGlobalParameters)
}

// ---- node ----

func (s *Server) overview(r *request) error {
	n := s.b.Node()
	rt := s.rates.snapshot()
	qs, _ := s.b.Queues("")
	var ready, unacked, consumers, queues int
	for _, q := range qs {
		if !r.canSeeVHost(q.VHost) {
			continue
		}
		queues++
		ready += q.Ready
		unacked += q.Unacked
		consumers += q.Consumers
	}
	xs, _ := s.b.Exchanges("")
	exchanges := 0
	for _, x := range xs {
		if r.canSeeVHost(x.VHost) {
			exchanges++
		}
	}
	conns := r.visibleConns()
	chans := 0
	for _, c := range conns {
		chans += c.Channels
	}
	listeners := []any{}
	if a := n.AMQPAddr; a != nil {
		host, port := splitAddr(a.String())
		listeners = append(listeners, map[string]any{"node": n.Node, "protocol": "amqp", "ip_address": host, "port": port,
			"socket_opts": map[string]any{}})
	}
	out := map[string]any{
		"management_version": CompatVersion, "rabbitmq_version": CompatVersion,
		"product_name": n.Product, "product_version": n.Version,
		"rates_mode": "basic", "cluster_name": n.Node, "node": n.Node,
		"erlang_version": "none (Go)", "erlang_full_version": "none (Go)",
		"exchange_types": []any{
			map[string]any{"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
			map[string]any{"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
			map[string]any{"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
			map[string]any{"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
		},
		"message_stats": rt.totalsMessageStats(s.b.Totals()),
		"queue_totals": map[string]any{
			"messages": ready + unacked, "messages_details": details(rt.rateInt(rt.cur.ready+rt.cur.unacked, rt.prev.ready+rt.prev.unacked)),
			"messages_ready": ready, "messages_ready_details": details(rt.rateInt(rt.cur.ready, rt.prev.ready)),
			"messages_unacknowledged": unacked, "messages_unacknowledged_details": details(rt.rateInt(rt.cur.unacked, rt.prev.unacked)),
		},
		"object_totals": map[string]any{"connections": len(conns), "channels": chans, "exchanges": exchanges,
			"queues": queues, "consumers": consumers},
		"statistics_db_event_queue": 0,
		"listeners":                 listeners,
		"contexts":                  []any{map[string]any{"node": n.Node, "description": "Warren Management", "path": "/"}},
		"uptime":                    time.Since(n.Started).Milliseconds(),
	}
	al := s.b.Alarms()
	out["warren_alarms"] = map[string]any{"memory": al.Active&broker.AlarmMemory != 0, "disk": al.Active&broker.AlarmDisk != 0}
	st := s.b.StorageStats()
	s.rates.withHistory(func(h *history) {
		out["warren_storage"] = storageJSON(st, h, r)
		if w, ok := r.windowParam("msg_rates"); ok {
			addTotalsSamples(out["message_stats"].(map[string]any), h, w)
		}
		if w, ok := r.windowParam("lengths"); ok && r.seesAll() {
			qt := out["queue_totals"].(map[string]any)
			qt["messages_details"].(map[string]any)["samples"] = samples(h, w, 0, func(i int) int { return h.node[i].ready + h.node[i].unacked })
			qt["messages_ready_details"].(map[string]any)["samples"] = samples(h, w, 0, func(i int) int { return h.node[i].ready })
			qt["messages_unacknowledged_details"].(map[string]any)["samples"] = samples(h, w, 0, func(i int) int { return h.node[i].unacked })
		}
	})
	return r.object(out)
}

// storageJSON is Warren's own part of the overview: what the queue logs
// hold on disk, how well chunks compress, and how long group-commit sync
// rounds take (over the last sample interval). With msg_rates_age, the
// figures that change over time carry RabbitMQ-style samples.
func storageJSON(st store.Stats, h *history, r *request) map[string]any {
	ratio := 1.0
	if st.StoredBytes > 0 {
		ratio = float64(st.RawBytes) / float64(st.StoredBytes)
	}
	var last histPoint
	if h.seq > 0 {
		last = h.node[(h.seq-1)%historyLen]
	}
	out := map[string]any{"queues": st.Queues, "segments": st.Segments, "disk_bytes": st.DiskBytes,
		"written_raw_bytes": st.RawBytes, "written_stored_bytes": st.StoredBytes, "compression_ratio": ratio,
		"sync_rounds": st.Sync.Rounds, "sync_seconds_total": st.Sync.Seconds,
		"sync_round_mean_seconds": last.syncMean, "sync_round_p99_seconds": last.syncP99,
		"sample_interval_rounds": last.syncRounds}
	if w, ok := r.windowParam("msg_rates"); ok {
		out["disk_bytes_details"] = map[string]any{"samples": samples(h, w, 0, func(i int) int64 { return h.node[i].storage.DiskBytes })}
		out["sync_round_mean_seconds_details"] = map[string]any{"samples": samples(h, w, 0, func(i int) float64 { return h.node[i].syncMean })}
		out["sync_round_p99_seconds_details"] = map[string]any{"samples": samples(h, w, 0, func(i int) float64 { return h.node[i].syncP99 })}
		out["written_raw_bytes_details"] = map[string]any{"samples": samples(h, w, 0, func(i int) int64 { return h.node[i].storage.RawBytes })}
		out["written_stored_bytes_details"] = map[string]any{"samples": samples(h, w, 0, func(i int) int64 { return h.node[i].storage.StoredBytes })}
	}
	return out
}

// addTotalsSamples adds the cumulative counts of the history to the
// overview's message_stats details, as RabbitMQ's msg_rates_age does.
func addTotalsSamples(ms map[string]any, h *history, w window) {
	series := map[string]func(broker.Totals) uint64{
		"publish":           func(t broker.Totals) uint64 { return t.Received },
		"confirm":           func(t broker.Totals) uint64 { return t.Confirmed },
		"return_unroutable": func(t broker.Totals) uint64 { return t.UnroutableReturned },
		"drop_unroutable":   func(t broker.Totals) uint64 { return t.UnroutableDropped },
		"deliver":           func(t broker.Totals) uint64 { return t.DeliveredAck },
		"deliver_no_ack":    func(t broker.Totals) uint64 { return t.DeliveredNoAck },
		"get":               func(t broker.Totals) uint64 { return t.GetAck },
		"get_no_ack":        func(t broker.Totals) uint64 { return t.GetNoAck },
		"deliver_get":       func(t broker.Totals) uint64 { return t.DeliveredAck + t.DeliveredNoAck + t.GetAck + t.GetNoAck },
		"redeliver":         func(t broker.Totals) uint64 { return t.Redelivered },
		"ack":               func(t broker.Totals) uint64 { return t.Acked },
	}
	for name, f := range series {
		if d, ok := ms[name+"_details"].(map[string]any); ok {
			d["samples"] = samples(h, w, 0, func(i int) uint64 { return f(h.node[i].totals) })
		}
	}
}

func splitAddr(a string) (string, int) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, 0
	}
	p, _ := strconv.Atoi(a[i+1:])
	return strings.Trim(a[:i], "[]"), p
}

func (s *Server) whoami(r *request) error {
	return r.json(map[string]any{"name": r.user.Name, "tags": tagsOf(r.user)})
}

func tagsOf(u index.User) []string {
	if u.Tags == nil {
		return []string{}
	}
	return u.Tags
}

func (s *Server) clusterName(r *request) error {
	return r.json(map[string]any{"name": s.b.Node().Node})
}

func (s *Server) nodeJSON() map[string]any {
	n := s.b.Node()
	st := s.b.StorageStats()
	al := s.b.Alarms()
	return map[string]any{"name": n.Node, "type": "disc", "running": true, "being_drained": false,
		"uptime":   time.Since(n.Started).Milliseconds(),
		"mem_used": al.MemoryUsed, "mem_limit": al.MemoryLimit, "mem_alarm": al.Active&broker.AlarmMemory != 0,
		"disk_free": al.DiskFree, "disk_free_limit": al.DiskLimit, "disk_free_alarm": al.Active&broker.AlarmDisk != 0,
		"partitions": []any{}, "applications": []any{}, "product_name": n.Product, "product_version": n.Version,
		"warren_storage": map[string]any{"queues": st.Queues, "segments": st.Segments, "disk_bytes": st.DiskBytes}}
}

func (s *Server) nodes(r *request) error { return r.json([]any{s.nodeJSON()}) }

func (s *Server) node(r *request) error {
	if r.params["node"] != s.b.Node().Node {
		return errNotFound
	}
	return r.object(s.nodeJSON())
}

func (s *Server) healthOK(r *request) error { return r.json(map[string]any{"status": "ok"}) }

// healthAlarms answers 503 with the alarms in effect, as RabbitMQ does.
func (s *Server) healthAlarms(r *request) error {
	al := s.b.Alarms()
	if al.Active == 0 {
		return s.healthOK(r)
	}
	node := s.b.Node().Node
	var list []any
	if al.Active&broker.AlarmMemory != 0 {
		list = append(list, map[string]any{"node": node, "resource": "memory"})
	}
	if al.Active&broker.AlarmDisk != 0 {
		list = append(list, map[string]any{"node": node, "resource": "disk"})
	}
	r.w.Header().Set("Content-Type", "application/json")
	r.w.WriteHeader(http.StatusServiceUnavailable)
	return json.NewEncoder(r.w).Encode(map[string]any{"status": "failed", "reason": "There are alarms in effect in the cluster", "alarms": list})
}

// setLimit serves Warren's endpoints for rabbitmqctl's
// set_vm_memory_high_watermark and set_disk_free_limit (RabbitMQ's API has
// none): a body {"value": "0.4"} in rabbitmqctl's syntax.
func (s *Server) setLimit(set func(string) error) func(*request) error {
	return func(r *request) error {
		var body struct {
			Value string `json:"value"`
		}
		if err := r.decode(&body); err != nil {
			return err
		}
		if err := set(body.Value); err != nil {
			return badRequest("%v", err)
		}
		return r.noContent()
	}
}

// ---- vhosts ----

func (s *Server) vhostJSON(v index.VHost, qs []broker.QueueInfo) map[string]any {
	var ready, unacked int
	for _, q := range qs {
		if q.VHost == v.Name {
			ready += q.Ready
			unacked += q.Unacked
		}
	}
	tags := v.Tags
	if tags == nil {
		tags = []string{}
	}
	m := map[string]any{"name": v.Name, "description": v.Description, "tags": tags,
		"metadata": map[string]any{"description": v.Description, "tags": tags},
		"tracing":  false, "cluster_state": map[string]any{s.b.Node().Node: "running"},
		"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
	if v.DefaultQueueType != "" {
		m["default_queue_type"] = v.DefaultQueueType
		m["metadata"].(map[string]any)["default_queue_type"] = v.DefaultQueueType
	}
	return m
}

func (s *Server) listVHosts(r *request) error {
	vhs, err := s.b.VHosts()
	if err != nil {
		return err
	}
	qs, _ := s.b.Queues("")
	var out []map[string]any
	for _, v := range vhs {
		if r.canSeeVHost(v.Name) {
			out = append(out, s.vhostJSON(v, qs))
		}
	}
	return r.list(out, "name")
}

func (s *Server) getVHost(r *request) error {
	name := r.params["vhost"]
	if err := r.needVHost(name); err != nil {
		return err
	}
	vhs, err := s.b.VHosts()
	if err != nil {
		return err
	}
	qs, _ := s.b.Queues(name)
	for _, v := range vhs {
		if v.Name == name {
			return r.object(s.vhostJSON(v, qs))
		}
	}
	return errNotFound
}

func (s *Server) putVHost(r *request) error {
	var body struct {
		Description      string `json:"description"`
		Tags             any    `json:"tags"`
		DefaultQueueType string `json:"default_queue_type"`
		DefaultQT        string `json:"defaultqueuetype"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	if body.DefaultQueueType == "" {
		body.DefaultQueueType = body.DefaultQT
	}
	created, err := s.b.PutVHost(index.VHost{Name: r.params["vhost"], Description: body.Description,
		Tags: tagList(body.Tags), DefaultQueueType: body.DefaultQueueType}, r.user.Name)
	if err != nil {
		return err
	}
	return r.created(created)
}

func (s *Server) deleteVHost(r *request) error {
	if err := s.b.DeleteVHost(r.params["vhost"]); err != nil {
		return err
	}
	return r.noContent()
}

// ---- users and permissions ----

var hashNames = map[index.HashAlgorithm]string{
	index.HashSHA256: "rabbit_password_hashing_sha256",
	index.HashSHA512: "rabbit_password_hashing_sha512",
	index.HashMD5:    "rabbit_password_hashing_md5",
}

func hashByName(name string) (index.HashAlgorithm, bool) {
	for k, v := range hashNames {
		if v == name {
			return k, true
		}
	}
	return 0, false
}

func userJSON(u index.User) map[string]any {
	m := map[string]any{"name": u.Name, "tags": tagsOf(u), "limits": map[string]any{},
		"password_hash": base64.StdEncoding.EncodeToString(u.PasswordHash), "hashing_algorithm": hashNames[u.HashAlgorithm]}
	if u.HashAlgorithm == index.HashNone {
		m["password_hash"] = ""
		m["hashing_algorithm"] = hashNames[index.HashSHA256]
	}
	return m
}

func (s *Server) listUsers(r *request) error {
	var out []map[string]any
	for _, u := range s.b.Users() {
		out = append(out, userJSON(u))
	}
	return r.list(out, "name")
}

func (s *Server) usersWithoutPermissions(r *request) error {
	has := map[string]bool{}
	for _, p := range s.b.Permissions() {
		has[p.User] = true
	}
	var out []map[string]any
	for _, u := range s.b.Users() {
		if !has[u.Name] {
			out = append(out, userJSON(u))
		}
	}
	return r.list(out, "name")
}

func (s *Server) findUser(name string) (index.User, bool) {
	for _, u := range s.b.Users() {
		if u.Name == name {
			return u, true
		}
	}
	return index.User{}, false
}

func (s *Server) getUser(r *request) error {
	u, ok := s.findUser(r.params["user"])
	if !ok {
		return errNotFound
	}
	return r.object(userJSON(u))
}

// userBody is a user as PUT /api/users/{user} and definitions carry it.
type userBody struct {
	Name             string  `json:"name"`
	Password         *string `json:"password"`
	PasswordHash     *string `json:"password_hash"`
	HashingAlgorithm string  `json:"hashing_algorithm"`
	Tags             any     `json:"tags"`
}

// toUser builds the stored user; old is kept for a password left out.
func (b userBody) toUser(name string, old *index.User, defaultAlg index.HashAlgorithm) (index.User, error) {
	u := index.User{Name: name, Tags: tagList(b.Tags)}
	switch {
	case b.Password != nil:
		h, err := index.HashPassword(index.HashSHA256, *b.Password)
		if err != nil {
			return u, err
		}
		u.PasswordHash, u.HashAlgorithm = h, index.HashSHA256
	case b.PasswordHash != nil && *b.PasswordHash == "":
		u.HashAlgorithm = index.HashNone // no password: cannot log in with one
	case b.PasswordHash != nil:
		h, err := base64.StdEncoding.DecodeString(*b.PasswordHash)
		if err != nil {
			return u, badRequest("user '%s': password_hash is not base64", name)
		}
		alg := defaultAlg
		if b.HashingAlgorithm != "" {
			var ok bool
			if alg, ok = hashByName(b.HashingAlgorithm); !ok {
				return u, badRequest("user '%s': unsupported hashing_algorithm '%s'", name, b.HashingAlgorithm)
			}
		}
		u.PasswordHash, u.HashAlgorithm = h, alg
	case old != nil:
		u.PasswordHash, u.HashAlgorithm = old.PasswordHash, old.HashAlgorithm
	default:
		return u, badRequest("user '%s': password or password_hash must be set", name)
	}
	return u, nil
}

func (s *Server) putUser(r *request) error {
	var body userBody
	if err := r.decode(&body); err != nil {
		return err
	}
	name := r.params["user"]
	var old *index.User
	if u, ok := s.findUser(name); ok {
		old = &u
	}
	u, err := body.toUser(name, old, index.HashSHA256)
	if err != nil {
		return err
	}
	created, err := s.b.PutUser(u)
	if err != nil {
		return err
	}
	return r.created(created)
}

func (s *Server) deleteUser(r *request) error {
	if err := s.b.DeleteUser(r.params["user"]); err != nil {
		return err
	}
	return r.noContent()
}

func (s *Server) bulkDeleteUsers(r *request) error {
	var body struct {
		Users []string `json:"users"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	for _, u := range body.Users {
		if err := s.b.DeleteUser(u); err != nil {
			return err
		}
	}
	return r.noContent()
}

func permJSON(p index.Permission) map[string]any {
	return map[string]any{"user": p.User, "vhost": p.VHost, "configure": p.Configure, "write": p.Write, "read": p.Read}
}

func (s *Server) permsWhere(r *request, keep func(index.Permission) bool) error {
	var out []map[string]any
	for _, p := range s.b.Permissions() {
		if keep(p) {
			out = append(out, permJSON(p))
		}
	}
	return r.list(out, "vhost", "user")
}

func (s *Server) listPermissions(r *request) error {
	return s.permsWhere(r, func(index.Permission) bool { return true })
}

func (s *Server) vhostPermissions(r *request) error {
	vh := r.params["vhost"]
	if err := r.needVHost(vh); err != nil {
		return err
	}
	return s.permsWhere(r, func(p index.Permission) bool { return p.VHost == vh })
}

func (s *Server) userPermissions(r *request) error {
	u := r.params["user"]
	if _, ok := s.findUser(u); !ok {
		return errNotFound
	}
	return s.permsWhere(r, func(p index.Permission) bool { return p.User == u })
}

func (s *Server) getPermission(r *request) error {
	for _, p := range s.b.Permissions() {
		if p.VHost == r.params["vhost"] && p.User == r.params["user"] {
			return r.object(permJSON(p))
		}
	}
	return errNotFound
}

func (s *Server) putPermission(r *request) error {
	var body struct {
		Configure, Write, Read *string
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	if body.Configure == nil || body.Write == nil || body.Read == nil {
		return badRequest("configure, write and read must all be given")
	}
	p := index.Permission{User: r.params["user"], VHost: r.params["vhost"], Configure: *body.Configure,
		Write: *body.Write, Read: *body.Read}
	existed := false
	for _, q := range s.b.Permissions() {
		existed = existed || (q.User == p.User && q.VHost == p.VHost)
	}
	if err := s.b.SetPermission(p); err != nil {
		// RabbitMQ answers 400 for a missing user or vhost here.
		var ae *amqpwire.Error
		if errors.As(err, &ae) && ae.Code == amqpwire.NotFound {
			return badRequest("%s", strings.TrimPrefix(ae.Text, "NOT_FOUND - "))
		}
		return err
	}
	return r.created(!existed)
}

func (s *Server) deletePermission(r *request) error {
	if err := s.b.ClearPermission(r.params["user"], r.params["vhost"]); err != nil {
		return err
	}
	return r.noContent()
}

// ---- exchanges ----

func exchangeJSON(x broker.ExchangeInfo) map[string]any {
	return map[string]any{"name": x.Name, "vhost": x.VHost, "type": x.Type, "durable": x.Durable,
		"auto_delete": x.AutoDelete, "internal": x.Internal, "arguments": tableJSON(x.Arguments),
		"user_who_performed_action": "rmq-internal", "policy": nil}
}

// vhostParam checks the {vhost} of a vhost-scoped path, if any.
func (r *request) vhostParam() (string, error) {
	vh, ok := r.params["vhost"]
	if !ok {
		return "", nil
	}
	return vh, r.needVHost(vh)
}

func (s *Server) listExchanges(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	xs, err := s.b.Exchanges(vh)
	if err != nil {
		return err
	}
	var out []map[string]any
	for _, x := range xs {
		if r.canSeeVHost(x.VHost) {
			out = append(out, exchangeJSON(x))
		}
	}
	return r.list(out, "vhost", "name")
}

func (s *Server) getExchange(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	xs, err := s.b.Exchanges(vh)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if x.Name == r.exchangeName() {
			return r.object(exchangeJSON(x))
		}
	}
	return errNotFound
}

// exchangeName is the {name} of an exchange path: "amq.default" stands for
// the default exchange, whose name is empty, as in RabbitMQ's API.
func (r *request) exchangeName() string {
	if n := r.params["name"]; n != "amq.default" {
		return n
	}
	return ""
}

func (s *Server) putExchange(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	var body struct {
		Type       string         `json:"type"`
		Durable    *bool          `json:"durable"`
		AutoDelete bool           `json:"auto_delete"`
		Internal   bool           `json:"internal"`
		Arguments  map[string]any `json:"arguments"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	if body.Type == "" {
		return badRequest("exchange type must be given")
	}
	args, err := jsonTable(body.Arguments)
	if err != nil {
		return badRequest("%v", err)
	}
	created, err := s.b.DeclareExchange(r.actor(), broker.ExchangeInfo{VHost: vh, Name: r.params["name"], Type: body.Type,
		Durable: body.Durable == nil || *body.Durable, AutoDelete: body.AutoDelete, Internal: body.Internal, Arguments: args})
	if err != nil {
		return err
	}
	return r.created(created)
}

func (s *Server) deleteExchange(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	if err := s.b.DeleteExchange(r.actor(), vh, r.params["name"], boolParam(r.r, "if-unused")); err != nil {
		return err
	}
	return r.noContent()
}

func (s *Server) publish(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	var body struct {
		Properties      map[string]any `json:"properties"`
		RoutingKey      string         `json:"routing_key"`
		Payload         string         `json:"payload"`
		PayloadEncoding string         `json:"payload_encoding"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	props, err := jsonProps(body.Properties)
	if err != nil {
		return badRequest("%v", err)
	}
	payload := []byte(body.Payload)
	switch body.PayloadEncoding {
	case "", "string":
	case "base64":
		if payload, err = base64.StdEncoding.DecodeString(body.Payload); err != nil {
			return badRequest("payload is not base64")
		}
	default:
		return badRequest("payload_encoding must be 'string' or 'base64'")
	}
	routed, err := s.b.Publish(r.actor(), vh, r.exchangeName(), body.RoutingKey, props, payload)
	if err != nil {
		return err
	}
	return r.json(map[string]any{"routed": routed})
}

// ---- queues ----

func (s *Server) queueJSON(q broker.QueueInfo, rt *rates) map[string]any {
	prev := rt.prev.queues[queueKey{q.VHost, q.Name}]
	cur := rt.cur.queues[queueKey{q.VHost, q.Name}]
	node := s.b.Node().Node
	m := map[string]any{
		"name": q.Name, "vhost": q.VHost, "durable": q.Durable, "auto_delete": q.AutoDelete, "exclusive": q.Exclusive,
		"arguments": tableJSON(q.Arguments), "type": q.Type, "node": node, "state": "running",
		"messages": q.Ready + q.Unacked, "messages_ready": q.Ready, "messages_unacknowledged": q.Unacked,
		"messages_details":                details(rt.rateInt(cur.ready+cur.unacked, prev.ready+prev.unacked)),
		"messages_ready_details":          details(rt.rateInt(cur.ready, prev.ready)),
		"messages_unacknowledged_details": details(rt.rateInt(cur.unacked, prev.unacked)),
		"consumers":                       q.Consumers, "consumer_capacity": 1.0, "consumer_utilisation": 1.0,
		"exclusive_consumer_tag": nil, "single_active_consumer_tag": nil,
		"policy": nil, "operator_policy": nil, "effective_policy_definition": q.EffectivePolicy,
		"message_bytes": q.ReadyBytes + q.UnackedBytes, "message_bytes_ready": q.ReadyBytes,
		"message_bytes_unacknowledged": q.UnackedBytes,
		"message_stats":                rt.queueMessageStats(q),
	}
	if q.Policy != "" {
		m["policy"] = q.Policy
	}
	if q.OperatorPolicy != "" {
		m["operator_policy"] = q.OperatorPolicy
	}
	if q.Type == "quorum" {
		m["delivery_limit"] = q.DeliveryLimit
		m["members"] = []string{node}
		m["leader"] = node
	}
	if q.Consumers == 0 {
		m["consumer_capacity"], m["consumer_utilisation"] = 0.0, 0.0
	}
	if q.ExclusiveConsumerTag != "" {
		m["exclusive_consumer_tag"] = q.ExclusiveConsumerTag
	}
	if q.ActiveConsumerTag != "" {
		m["single_active_consumer_tag"] = q.ActiveConsumerTag
	}
	if q.Owner != "" {
		host, port := splitAddr(strings.SplitN(q.Owner, " -> ", 2)[0])
		m["owner_pid_details"] = map[string]any{"name": q.Owner, "peer_host": host, "peer_port": port}
	}
	return m
}

func (s *Server) listQueues(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	qs, err := s.b.Queues(vh)
	if err != nil {
		return err
	}
	rt := s.rates.snapshot()
	var out []map[string]any
	for _, q := range qs {
		if r.canSeeVHost(q.VHost) {
			out = append(out, s.queueJSON(q, &rt))
		}
	}
	return r.list(out, "vhost", "name")
}

func (s *Server) getQueue(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	q, err := s.b.Queue(vh, r.params["name"])
	if err != nil {
		return err
	}
	rt := s.rates.snapshot()
	m := s.queueJSON(q, &rt)
	// As RabbitMQ's queue page shows them: the queue's consumers.
	if cs, err := s.b.Consumers(vh); err == nil {
		m["consumer_details"] = s.consumersJSON(r, cs, func(c broker.ConsumerInfo) bool { return c.Queue == q.Name })
	}
	if w, ok := r.windowParam("lengths"); ok {
		s.rates.withHistory(func(h *history) {
			qh := h.queues[queueKey{q.VHost, q.Name}]
			if qh == nil {
				// No history (empty for the whole window, or past the
				// bound): the current depth, as one sample.
				now := []map[string]any{{"sample": q.Ready + q.Unacked, "timestamp": time.Now().UnixMilli()}}
				m["messages_details"].(map[string]any)["samples"] = now
				m["messages_ready_details"].(map[string]any)["samples"] = []map[string]any{{"sample": q.Ready, "timestamp": now[0]["timestamp"]}}
				m["messages_unacknowledged_details"].(map[string]any)["samples"] = []map[string]any{{"sample": q.Unacked, "timestamp": now[0]["timestamp"]}}
				return
			}
			depth := func(i, k int) uint32 { return qh.depth[i][k] }
			m["messages_details"].(map[string]any)["samples"] = samples(h, w, qh.first, func(i int) uint64 { return uint64(depth(i, 0)) + uint64(depth(i, 1)) })
			m["messages_ready_details"].(map[string]any)["samples"] = samples(h, w, qh.first, func(i int) uint32 { return depth(i, 0) })
			m["messages_unacknowledged_details"].(map[string]any)["samples"] = samples(h, w, qh.first, func(i int) uint32 { return depth(i, 1) })
		})
	}
	return r.object(m)
}

func (s *Server) putQueue(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	var body struct {
		Durable    *bool          `json:"durable"`
		AutoDelete bool           `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
		Type       string         `json:"type"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	args, err := jsonTable(body.Arguments)
	if err != nil {
		return badRequest("%v", err)
	}
	if body.Type != "" {
		if args == nil {
			args = map[string]any{}
		}
		if _, ok := args["x-queue-type"]; !ok {
			args["x-queue-type"] = body.Type
		}
	}
	created, err := s.b.DeclareQueue(r.actor(), broker.QueueInfo{VHost: vh, Name: r.params["name"],
		Durable: body.Durable == nil || *body.Durable, AutoDelete: body.AutoDelete, Arguments: args})
	if err != nil {
		return err
	}
	return r.created(created)
}

func (s *Server) deleteQueue(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	if _, err := s.b.DeleteQueue(r.actor(), vh, r.params["name"], boolParam(r.r, "if-unused"), boolParam(r.r, "if-empty")); err != nil {
		return err
	}
	return r.noContent()
}

func (s *Server) purgeQueue(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	if _, err := s.b.PurgeQueue(r.actor(), vh, r.params["name"]); err != nil {
		return err
	}
	return r.noContent()
}

func (s *Server) getMessages(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	var body struct {
		Count    json.Number `json:"count"`
		AckMode  string      `json:"ackmode"`
		Requeue  any         `json:"requeue"`
		Encoding string      `json:"encoding"`
		Truncate json.Number `json:"truncate"`
	}
	if err := r.decode(&body); err != nil {
		return err
	}
	count := 1
	if body.Count != "" {
		n, err := body.Count.Int64()
		if err != nil || n < 1 {
			return badRequest("count must be a positive integer")
		}
		count = int(min(n, 10000))
	}
	var mode broker.GetMode
	switch body.AckMode {
	case "ack_requeue_true", "reject_requeue_true":
		mode = broker.GetRequeue
	case "ack_requeue_false":
		mode = broker.GetAck
	case "reject_requeue_false":
		mode = broker.GetReject
	case "":
		// The pre-3.7 form: requeue true/false.
		mode = broker.GetRequeue
		if v, ok := body.Requeue.(bool); ok && !v {
			mode = broker.GetAck
		}
	default:
		return badRequest("unknown ackmode '%s'", body.AckMode)
	}
	truncate := 0
	if body.Truncate != "" {
		n, _ := body.Truncate.Int64()
		truncate = int(n)
	}
	msgs, err := s.b.GetMessages(r.actor(), vh, r.params["name"], count, mode)
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(msgs))
	for _, m := range msgs {
		payload, enc := payloadJSON(m.Body, body.Encoding, truncate)
		out = append(out, map[string]any{"payload_bytes": len(m.Body), "redelivered": m.Redelivered,
			"exchange": m.Exchange, "routing_key": m.RoutingKey, "message_count": m.Remaining,
			"properties": propsJSON(m.Properties), "payload": payload, "payload_encoding": enc})
	}
	return r.json(out)
}

// ---- bindings ----

// propertiesKey identifies a binding among those between the same two
// ends: the routing key, and a digest of the arguments when there are any.
func propertiesKey(b broker.BindingInfo) string {
	key := strings.ReplaceAll(url.PathEscape(b.RoutingKey), "~", "%7E")
	if len(b.Arguments) == 0 {
		if key == "" {
			return "~"
		}
		return key
	}
	js, _ := json.Marshal(tableJSON(b.Arguments)) // map keys are sorted
	sum := sha256.Sum256(js)
	return key + "~" + base64.RawURLEncoding.EncodeToString(sum[:12])
}

func bindingJSON(b broker.BindingInfo) map[string]any {
	return map[string]any{"source": b.Source, "vhost": b.VHost, "destination": b.Destination,
		"destination_type": b.DestinationType, "routing_key": b.RoutingKey, "arguments": tableJSON(b.Arguments),
		"properties_key": propertiesKey(b)}
}

func (s *Server) bindingsWhere(r *request, keep func(broker.BindingInfo) bool) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	bs, err := s.b.Bindings(vh)
	if err != nil {
		return err
	}
	var out []map[string]any
	for _, b := range bs {
		if r.canSeeVHost(b.VHost) && keep(b) {
			out = append(out, bindingJSON(b))
		}
	}
	if out == nil {
		out = []map[string]any{}
	}
	return r.json(out)
}

func (s *Server) listBindings(r *request) error {
	return s.bindingsWhere(r, func(broker.BindingInfo) bool { return true })
}

func (s *Server) queueBindings(r *request) error {
	if _, err := s.b.Queue(r.params["vhost"], r.params["name"]); err != nil {
		return err
	}
	return s.bindingsWhere(r, func(b broker.BindingInfo) bool {
		return b.DestinationType == "queue" && b.Destination == r.params["name"]
	})
}

func (s *Server) exchangeBindings(side string) func(*request) error {
	return func(r *request) error {
		name := r.exchangeName()
		return s.bindingsWhere(r, func(b broker.BindingInfo) bool {
			if side == "source" {
				return b.Source == name
			}
			return b.DestinationType == "exchange" && b.Destination == name
		})
	}
}

func destType(dt string) string {
	if dt == "e" {
		return "exchange"
	}
	return "queue"
}

func (s *Server) bindingsBetween(dt string) func(*request) error {
	return func(r *request) error {
		return s.bindingsWhere(r, func(b broker.BindingInfo) bool {
			return b.Source == r.params["source"] && b.Destination == r.params["destination"] && b.DestinationType == destType(dt)
		})
	}
}

func (s *Server) postBinding(dt string) func(*request) error {
	return func(r *request) error {
		vh, err := r.vhostParam()
		if err != nil {
			return err
		}
		var body struct {
			RoutingKey string         `json:"routing_key"`
			Arguments  map[string]any `json:"arguments"`
		}
		if err := r.decode(&body); err != nil {
			return err
		}
		args, err := jsonTable(body.Arguments)
		if err != nil {
			return badRequest("%v", err)
		}
		b := broker.BindingInfo{VHost: vh, Source: r.params["source"], Destination: r.params["destination"],
			DestinationType: destType(dt), RoutingKey: body.RoutingKey, Arguments: args}
		if err := s.b.Bind(r.actor(), b); err != nil {
			return err
		}
		r.w.Header().Set("Location", "/api/bindings/"+url.PathEscape(vh)+"/e/"+url.PathEscape(b.Source)+"/"+dt+"/"+
			url.PathEscape(b.Destination)+"/"+propertiesKey(b))
		r.w.WriteHeader(http.StatusCreated)
		return nil
	}
}

func (s *Server) findBinding(r *request, dt string) (broker.BindingInfo, error) {
	vh, err := r.vhostParam()
	if err != nil {
		return broker.BindingInfo{}, err
	}
	bs, err := s.b.Bindings(vh)
	if err != nil {
		return broker.BindingInfo{}, err
	}
	for _, b := range bs {
		if b.Source == r.params["source"] && b.Destination == r.params["destination"] &&
			b.DestinationType == destType(dt) && propertiesKey(b) == r.params["props"] {
			return b, nil
		}
	}
	// The properties key arrives unescaped once by the router.
	for _, b := range bs {
		pk, _ := url.PathUnescape(propertiesKey(b))
		if b.Source == r.params["source"] && b.Destination == r.params["destination"] &&
			b.DestinationType == destType(dt) && pk == r.params["props"] {
			return b, nil
		}
	}
	return broker.BindingInfo{}, errNotFound
}

func (s *Server) getBinding(dt string) func(*request) error {
	return func(r *request) error {
		b, err := s.findBinding(r, dt)
		if err != nil {
			return err
		}
		return r.object(bindingJSON(b))
	}
}

func (s *Server) deleteBinding(dt string) func(*request) error {
	return func(r *request) error {
		b, err := s.findBinding(r, dt)
		if err != nil {
			return err
		}
		if err := s.b.Unbind(r.actor(), b); err != nil {
			return err
		}
		return r.noContent()
	}
}

// ---- connections, channels, consumers ----

// visibleConns lists the connections the user may see: all for
// administrators and monitors, their own for others.
func (r *request) visibleConns() []broker.ConnInfo {
	all := r.s.b.Connections()
	if r.seesAll() {
		return all
	}
	out := all[:0]
	for _, c := range all {
		if c.User == r.user.Name {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) connJSON(c broker.ConnInfo, rt *rates) map[string]any {
	host, port := splitAddr(c.Local.String())
	phost, pport := splitAddr(c.Peer.String())
	prev := rt.prev.conns[c.Name]
	cur, ok := rt.cur.conns[c.Name]
	if !ok {
		cur = [2]uint64{c.RecvOct, c.SendOct}
	}
	return map[string]any{
		"name": c.Name, "node": s.b.Node().Node, "user": c.User, "vhost": c.VHost,
		"host": host, "port": port, "peer_host": phost, "peer_port": pport,
		"protocol": "AMQP 0-9-1", "auth_mechanism": c.AuthMechanism, "ssl": c.TLS, "state": "running",
		"type": "network", "channels": c.Channels, "channel_max": c.ChannelMax, "frame_max": c.FrameMax,
		"timeout": int(c.Heartbeat / time.Second), "connected_at": c.ConnectedAt.UnixMilli(),
		"client_properties": tableJSON(c.ClientProperties),
		"recv_oct":          c.RecvOct, "send_oct": c.SendOct,
		"recv_oct_details": details(rt.rate(cur[0], prev[0])), "send_oct_details": details(rt.rate(cur[1], prev[1])),
		"user_who_performed_action": c.User,
	}
}

func (s *Server) listConnections(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	rt := s.rates.snapshot()
	var out []map[string]any
	for _, c := range r.visibleConns() {
		if vh == "" || c.VHost == vh {
			out = append(out, s.connJSON(c, &rt))
		}
	}
	return r.list(out)
}

func (r *request) findConn() (broker.ConnInfo, error) {
	for _, c := range r.visibleConns() {
		if c.Name == r.params["name"] {
			return c, nil
		}
	}
	return broker.ConnInfo{}, errNotFound
}

func (s *Server) getConnection(r *request) error {
	c, err := r.findConn()
	if err != nil {
		return err
	}
	rt := s.rates.snapshot()
	return r.object(s.connJSON(c, &rt))
}

func (s *Server) closeConnection(r *request) error {
	c, err := r.findConn()
	if err != nil {
		return err
	}
	if c.User != r.user.Name && !r.isAdmin() {
		return &httpError{http.StatusForbidden, "not_authorised", "Not administrator user"}
	}
	reason := r.r.Header.Get("X-Reason")
	if reason == "" {
		reason = "Closed via management plugin"
	}
	if err := s.b.CloseConnection(c.Name, reason); err != nil {
		return err
	}
	return r.noContent()
}

func (s *Server) channelJSON(ch broker.ChannelInfo) map[string]any {
	phost, pport := splitAddr(ch.Conn.Peer.String())
	return map[string]any{
		"name": ch.Name, "node": s.b.Node().Node, "number": ch.Number, "user": ch.Conn.User, "vhost": ch.Conn.VHost,
		"connection_details": map[string]any{"name": ch.Conn.Name, "peer_host": phost, "peer_port": pport},
		"prefetch_count":     ch.Prefetch, "global_prefetch_count": ch.GlobalPrefetch,
		"consumer_count": ch.Consumers, "messages_unacknowledged": ch.Unacked,
		"messages_unconfirmed": 0, "messages_uncommitted": 0, "acks_uncommitted": 0,
		"confirm": ch.Confirm, "transactional": ch.Transactional, "state": "running",
		"user_who_performed_action": ch.Conn.User,
	}
}

func (s *Server) visibleChannels(r *request) []broker.ChannelInfo {
	all := s.b.Channels()
	if r.seesAll() {
		return all
	}
	out := all[:0]
	for _, ch := range all {
		if ch.Conn.User == r.user.Name {
			out = append(out, ch)
		}
	}
	return out
}

func (s *Server) listChannels(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	conn, byConn := r.params["name"]
	if byConn {
		if _, err := r.findConn(); err != nil {
			return err
		}
	}
	var out []map[string]any
	for _, ch := range s.visibleChannels(r) {
		if (vh == "" || ch.Conn.VHost == vh) && (!byConn || ch.Conn.Name == conn) {
			out = append(out, s.channelJSON(ch))
		}
	}
	return r.list(out)
}

func (s *Server) getChannel(r *request) error {
	for _, ch := range s.visibleChannels(r) {
		if ch.Name == r.params["channel"] {
			return r.object(s.channelJSON(ch))
		}
	}
	return errNotFound
}

// consumersJSON renders the consumers the user may see and keep accepts.
func (s *Server) consumersJSON(r *request, cs []broker.ConsumerInfo, keep func(broker.ConsumerInfo) bool) []map[string]any {
	node := s.b.Node().Node
	out := []map[string]any{}
	for _, c := range cs {
		if !r.canSeeVHost(c.VHost) || (!r.seesAll() && c.Conn.User != r.user.Name) || !keep(c) {
			continue
		}
		phost, pport := splitAddr(c.Conn.Peer.String())
		status := "up"
		if !c.Active {
			status = "waiting"
		}
		out = append(out, map[string]any{
			"consumer_tag": c.Tag, "queue": map[string]any{"name": c.Queue, "vhost": c.VHost},
			"channel_details": map[string]any{"name": c.Channel, "number": c.ChannelNumber, "connection_name": c.Conn.Name,
				"peer_host": phost, "peer_port": pport, "user": c.Conn.User, "node": node},
			"ack_required": c.AckRequired, "exclusive": c.Exclusive, "prefetch_count": c.Prefetch,
			"priority": c.Priority, "arguments": tableJSON(c.Arguments), "active": c.Active, "activity_status": status,
		})
	}
	return out
}

func (s *Server) listConsumers(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	cs, err := s.b.Consumers(vh)
	if err != nil {
		return err
	}
	out := s.consumersJSON(r, cs, func(broker.ConsumerInfo) bool { return true })
	sort.SliceStable(out, func(i, j int) bool {
		return out[i]["queue"].(map[string]any)["vhost"].(string) < out[j]["queue"].(map[string]any)["vhost"].(string)
	})
	return r.json(out)
}

// ---- policies and parameters ----

func policyJSON(p index.Policy) map[string]any {
	var def any = map[string]any{}
	if len(p.Definition) > 0 {
		json.Unmarshal(p.Definition, &def)
	}
	return map[string]any{"vhost": p.VHost, "name": p.Name, "pattern": p.Pattern, "apply-to": p.ApplyTo,
		"definition": def, "priority": p.Priority}
}

// policies lists policies or operator policies.
func (s *Server) policies(operator bool, vhost string) ([]index.Policy, error) {
	if operator {
		return s.b.OperatorPolicies(vhost)
	}
	return s.b.Policies(vhost)
}

func (s *Server) listPolicies(operator bool) func(r *request) error {
	return func(r *request) error {
		vh, err := r.vhostParam()
		if err != nil {
			return err
		}
		ps, err := s.policies(operator, vh)
		if err != nil {
			return err
		}
		var out []map[string]any
		for _, p := range ps {
			if r.canSeeVHost(p.VHost) {
				out = append(out, policyJSON(p))
			}
		}
		return r.list(out, "vhost", "name")
	}
}

func (s *Server) getPolicy(operator bool) func(r *request) error {
	return func(r *request) error {
		vh, err := r.vhostParam()
		if err != nil {
			return err
		}
		ps, err := s.policies(operator, vh)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.Name == r.params["name"] {
				return r.object(policyJSON(p))
			}
		}
		return errNotFound
	}
}

// policyBody is a policy as the API and definitions carry it.
type policyBody struct {
	VHost      string          `json:"vhost"`
	Name       string          `json:"name"`
	Pattern    string          `json:"pattern"`
	ApplyTo    string          `json:"apply-to"`
	Definition json.RawMessage `json:"definition"`
	Priority   json.Number     `json:"priority"`
}

func (b policyBody) toPolicy(vhost, name string) (index.Policy, error) {
	p := index.Policy{VHost: vhost, Name: name, Pattern: b.Pattern, ApplyTo: b.ApplyTo, Definition: []byte(b.Definition)}
	if len(p.Definition) == 0 || string(p.Definition) == "null" {
		return p, badRequest("policy '%s': definition must be given", name)
	}
	var obj map[string]any
	if err := json.Unmarshal(p.Definition, &obj); err != nil {
		return p, badRequest("policy '%s': definition must be a JSON object", name)
	}
	p.Definition, _ = json.Marshal(obj)
	if b.Priority != "" {
		n, err := b.Priority.Int64()
		if err != nil {
			return p, badRequest("policy '%s': priority must be an integer", name)
		}
		p.Priority = n
	}
	return p, nil
}

func (s *Server) putPolicy(operator bool) func(r *request) error {
	return func(r *request) error {
		vh, err := r.vhostParam()
		if err != nil {
			return err
		}
		var body policyBody
		if err := r.decode(&body); err != nil {
			return err
		}
		p, err := body.toPolicy(vh, r.params["name"])
		if err != nil {
			return err
		}
		existing, _ := s.policies(operator, vh)
		isNew := true
		for _, e := range existing {
			if e.Name == p.Name {
				isNew = false
			}
		}
		put := s.b.PutPolicy
		if operator {
			put = s.b.PutOperatorPolicy
		}
		if err := put(p); err != nil {
			return err
		}
		return r.created(isNew)
	}
}

func (s *Server) deletePolicy(operator bool) func(r *request) error {
	return func(r *request) error {
		vh, err := r.vhostParam()
		if err != nil {
			return err
		}
		del := s.b.DeletePolicy
		if operator {
			del = s.b.DeleteOperatorPolicy
		}
		if err := del(vh, r.params["name"]); err != nil {
			return err
		}
		return r.noContent()
	}
}

func rawJSON(b []byte) any {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return v
}

func (s *Server) listParameters(r *request) error {
	ps, err := s.b.Parameters()
	if err != nil {
		return err
	}
	var out []map[string]any
	for _, p := range ps {
		out = append(out, map[string]any{"component": p.Component, "vhost": p.VHost, "name": p.Name, "value": rawJSON(p.Value)})
	}
	return r.list(out)
}

func (s *Server) listGlobalParameters(r *request) error {
	ps, err := s.b.GlobalParameters()
	if err != nil {
		return err
	}
	var out []map[string]any
	for _, p := range ps {
		out = append(out, map[string]any{"name": p.Name, "value": rawJSON(p.Value)})
	}
	return r.list(out, "name")
}
