package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/index"
)

// Policies and operator policies, applied as RabbitMQ applies them: of the
// policies of a queue's vhost whose pattern matches its name (a regular
// expression searched in the name), whose apply-to covers the queue
// ("all", "queues", or its type's "classic_queues", "quorum_queues",
// "streams") and whose definition holds no key the queue's type does not
// support, the one with the highest priority applies (ties: the first
// name); the same for operator policies. Where both define a key, the
// operator policy's value wins for overflow and queue-version, and the
// lower wins for the limits (expires, message-ttl, max-length,
// max-length-bytes, delivery-limit with -1 as the highest). A queue's
// settings then resolve each key between its argument and that value
// (qconfig.go). Changes apply at once to existing queues and to queues
// declared later, and survive restarts (the index keeps them).

// policy is a parsed policy or operator policy.
type policy struct {
	name     string
	pattern  string
	re       *regexp.Regexp
	applyTo  string
	priority int64
	def      map[string]any
}

// Keys a policy may set, and those an operator policy may set, as
// RabbitMQ 4.x registers them (plus the legacy and plugin keys a 3.x
// definitions export may carry, which Warren keeps without applying).
var (
	policyKeys = []string{"alternate-exchange", "consumer-disconnected-timeout", "consumer-timeout",
		"dead-letter-exchange", "dead-letter-routing-key", "dead-letter-strategy", "message-ttl", "expires",
		"max-length", "max-length-bytes", "max-in-memory-length", "max-in-memory-bytes", "queue-mode",
		"queue-version", "overflow", "delivery-limit", "max-age", "stream-max-segment-size-bytes",
		"stream-filter-size-bytes", "queue-leader-locator", "initial-cluster-size", "queue-master-locator",
		"target-group-size", "delayed-retry-type", "delayed-retry-min", "delayed-retry-max"}
	operatorPolicyKeys = []string{"expires", "message-ttl", "max-length", "max-length-bytes",
		"max-in-memory-length", "max-in-memory-bytes", "delivery-limit", "queue-version", "overflow",
		"queue-master-locator", "target-group-size", "delayed-retry-type", "delayed-retry-min", "delayed-retry-max"}
	// legacyPolicyPrefixes are kept and ignored: classic mirroring (ha-*)
	// and federation, common in 3.x exports.
	legacyPolicyPrefixes = []string{"ha-", "federation-"}
)

// unsupportedPolicyKeys are the keys that keep a policy from applying to a
// queue type at all (RabbitMQ's unsupported_policies).
var unsupportedPolicyKeys = map[queueKind][]string{
	kindClassic: {"max-age", "stream-max-segment-size-bytes", "initial-cluster-size", "delivery-limit",
		"dead-letter-strategy", "max-in-memory-length", "max-in-memory-bytes", "target-group-size",
		"selector-fields", "selector-field-max-bytes"},
	kindQuorum: {"max-priority", "queue-mode", "ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
		"ha-promote-on-failure", "queue-master-locator", "max-age", "stream-max-segment-size-bytes",
		"initial-cluster-size", "selector-fields", "selector-field-max-bytes"},
	kindStream: {"expires", "message-ttl", "dead-letter-exchange", "dead-letter-routing-key", "max-length",
		"max-in-memory-length", "max-in-memory-bytes", "max-priority", "overflow", "queue-mode",
		"delivery-limit", "ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
		"ha-promote-on-failure", "queue-master-locator", "dead-letter-strategy", "target-group-size",
		"selector-fields", "selector-field-max-bytes"},
}

var applyToValues = []string{"all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams"}

// validationFailed is RabbitMQ's answer to a policy it refuses (400 over
// HTTP).
func validationFailed(format string, args ...any) *amqpwire.Error {
	return &amqpwire.Error{Code: amqpwire.PreconditionFailed, Text: "Validation failed\n\n" + fmt.Sprintf(format, args...) + "\n"}
}

// parsePolicy validates a stored or submitted policy as RabbitMQ does.
func parsePolicy(p index.Policy, operator bool) (*policy, error) {
	re, err := regexp.Compile(p.Pattern)
	if err != nil {
		return nil, validationFailed("pattern should be regular expression but is invalid: %s", erlString(err.Error()))
	}
	applyTo := p.ApplyTo
	if applyTo == "" {
		applyTo = "all"
	}
	if !slices.Contains(applyToValues, applyTo) {
		return nil, validationFailed("apply-to '%s' unrecognised; should be one of: 'queues', 'classic_queues',  'quorum_queues', 'streams', 'exchanges', or 'all'", applyTo)
	}
	var def map[string]any
	if err := json.Unmarshal(p.Definition, &def); err != nil || def == nil {
		return nil, validationFailed("definition must be a dictionary: %s", string(p.Definition))
	}
	if len(def) == 0 {
		return nil, validationFailed("no policy provided")
	}
	allowed := policyKeys
	if operator {
		allowed = operatorPolicyKeys
	}
	keys := make([]string, 0, len(def))
	for k := range def {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unknown []string
	for _, k := range keys {
		if slices.Contains(allowed, k) {
			if msg := checkPolicyValue(k, def[k]); msg != "" {
				return nil, validationFailed("%s", msg)
			}
			continue
		}
		legacy := false
		for _, pre := range legacyPolicyPrefixes {
			legacy = legacy || (!operator && strings.HasPrefix(k, pre))
		}
		if !legacy {
			unknown = append(unknown, fmt.Sprintf("{<<%s>>,%s}", erlString(k), erlJSON(def[k])))
		}
	}
	if len(unknown) > 0 {
		return nil, validationFailed("[%s] are not recognised policy settings", strings.Join(unknown, ","))
	}
	return &policy{name: p.Name, pattern: p.Pattern, re: re, applyTo: applyTo, priority: p.Priority, def: def}, nil
}

// checkPolicyValue is rabbit_policies:validate_policy0 for one key.
func checkPolicyValue(k string, v any) string {
	n, isInt := numberOf(v)
	s, isStr := v.(string)
	bad := func(what string) string { return erlJSON(v) + " is not a valid " + what }
	switch k {
	case "alternate-exchange", "dead-letter-exchange", "dead-letter-routing-key":
		if !isStr {
			return bad(map[string]string{"alternate-exchange": "alternate exchange name",
				"dead-letter-exchange": "dead letter exchange name", "dead-letter-routing-key": "dead letter routing key"}[k])
		}
	case "message-ttl":
		if !isInt || n < 0 {
			return bad("message TTL")
		}
	case "expires":
		if !isInt || n < 1 {
			return bad("queue expiry")
		}
	case "max-length":
		if !isInt || n < 0 {
			return bad("maximum length")
		}
	case "max-length-bytes":
		if !isInt || n < 0 {
			return bad("maximum length in bytes")
		}
	case "max-in-memory-length", "max-in-memory-bytes":
		if !isInt || n < 0 {
			return bad("maximum memory in bytes")
		}
	case "consumer-timeout", "consumer-disconnected-timeout":
		if !isInt || n < 0 {
			return bad("consumer timeout")
		}
	case "initial-cluster-size", "target-group-size":
		if !isInt || n < 0 {
			return bad("cluster size")
		}
	case "delivery-limit":
		if !isInt {
			return bad("delivery limit")
		}
	case "queue-mode":
		if s != "default" && s != "lazy" {
			return bad("queue-mode value")
		}
	case "queue-version":
		if !isInt || (n != 1 && n != 2) {
			return bad("queue-version value")
		}
	case "overflow":
		if _, ok := parseOverflow(s); !ok {
			return bad("overflow value")
		}
	case "dead-letter-strategy":
		if s != "at-most-once" && s != "at-least-once" {
			return bad("dead letter strategy")
		}
	case "max-age":
		if _, ok := parseMaxAge(s); !ok {
			return bad("max age")
		}
	case "stream-max-segment-size-bytes":
		if !isInt || n < 0 || n > maxStreamSegmentSize {
			return bad("segment size")
		}
	case "stream-filter-size-bytes":
		if !isInt || n < 16 || n > 255 {
			return bad("filter size. Valid range is 16-255")
		}
	case "queue-leader-locator":
		if !slices.Contains([]string{"client-local", "balanced", "random", "least-leaders"}, s) {
			return bad("queue leader locator value")
		}
	}
	return ""
}

// erlJSON prints a JSON value as Erlang's ~p prints the term RabbitMQ
// decodes it to.
func erlJSON(v any) string {
	switch x := v.(type) {
	case string:
		return "<<" + erlString(x) + ">>"
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%v", x)
	case bool:
		return fmt.Sprint(x)
	case nil:
		return "null"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = erlJSON(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = "<<" + erlString(k) + ">> => " + erlJSON(x[k])
		}
		return "#{" + strings.Join(parts, ",") + "}"
	}
	return fmt.Sprint(v)
}

// appliesTo reports whether p applies to a queue of kind called name.
func (p *policy) appliesTo(name string, kind queueKind) bool {
	if p.applyTo != "all" && p.applyTo != "queues" && p.applyTo != kind.policyName() {
		return false
	}
	for k := range p.def {
		if slices.Contains(unsupportedPolicyKeys[kind], k) {
			return false
		}
	}
	return p.re.MatchString(name)
}

// matchPolicy picks the policy of ps that applies to a queue: the highest
// priority, then the first name.
func matchPolicy(ps []*policy, name string, kind queueKind) *policy {
	var best *policy
	for _, p := range ps {
		if !p.appliesTo(name, kind) {
			continue
		}
		if best == nil || p.priority > best.priority || (p.priority == best.priority && p.name < best.name) {
			best = p
		}
	}
	return best
}

// mergePolicyValue is rabbit_policies:merge_policy_value: the operator
// policy's value against the policy's for the same key.
func mergePolicyValue(key string, val, opVal any) any {
	switch key {
	case "message-ttl", "max-length", "max-length-bytes", "max-in-memory-length", "max-in-memory-bytes", "expires":
		a, aok := numberOf(val)
		b, bok := numberOf(opVal)
		if aok && bok {
			return float64(min(a, b))
		}
	case "delivery-limit":
		a, aok := numberOf(val)
		b, bok := numberOf(opVal)
		if aok && bok {
			return float64(resolveDeliveryLimit(a, b))
		}
	}
	return opVal
}

// policyValue returns the value the queue's policies give key.
func (q *queue) policyValue(key string) (any, bool) {
	var v, ov any
	var ok, ook bool
	if q.policy != nil {
		v, ok = q.policy.def[key]
	}
	if q.opPolicy != nil {
		ov, ook = q.opPolicy.def[key]
	}
	switch {
	case ok && ook:
		return mergePolicyValue(key, v, ov), true
	case ook:
		return ov, true
	}
	return v, ok
}

// effectiveDefinition is the policies' merged definition, as the
// management API shows it.
func (q *queue) effectiveDefinition() map[string]any {
	out := map[string]any{}
	for _, p := range []*policy{q.policy, q.opPolicy} {
		if p == nil {
			continue
		}
		for k := range p.def {
			out[k], _ = q.policyValue(k)
		}
	}
	return out
}

// loadPolicies reads the vhost's policies and operator policies from the
// index. A stored policy that no longer parses is logged and skipped.
func (vh *vhost) loadPoliciesLocked() error {
	idx := vh.s.store.Index()
	for _, op := range []bool{false, true} {
		list := idx.Policies
		if op {
			list = idx.OperatorPolicies
		}
		ps, err := list(vh.name)
		if err != nil {
			return fmt.Errorf("broker: load policies of %s: %w", vh.name, err)
		}
		var out []*policy
		for _, p := range ps {
			pp, err := parsePolicy(p, op)
			if err != nil {
				vh.s.log.Error().Err(err).Str("vhost", vh.name).Str("policy", p.Name).Bool("operator", op).Msg("stored policy ignored")
				continue
			}
			out = append(out, pp)
		}
		if op {
			vh.opPolicies = out
		} else {
			vh.policies = out
		}
	}
	return nil
}

// matchPoliciesLocked sets q's policies from the vhost's. Called with
// vh.mu and q.mu held; the caller reconfigures q.
func (vh *vhost) matchPoliciesLocked(q *queue) bool {
	p := matchPolicy(vh.policies, q.name, q.kind)
	op := matchPolicy(vh.opPolicies, q.name, q.kind)
	changed := p != q.policy || op != q.opPolicy
	q.policy, q.opPolicy = p, op
	return changed
}

// applyPoliciesLocked re-matches every queue of the vhost after a policy
// change and applies the new settings at once: limits are enforced,
// expiry timers rearmed, streams' retention applied. Called with vh.mu
// held; dead letters are routed once the queues are unlocked.
func (vh *vhost) applyPoliciesLocked() []*queue {
	var changed []*queue
	for _, q := range vh.queues {
		q.mu.Lock()
		if vh.matchPoliciesLocked(q) {
			q.configureLocked()
			changed = append(changed, q)
		}
		q.mu.Unlock()
	}
	return changed
}

// policiesChanged applies the effects of new settings to the queues whose
// policies changed, outside vh.mu.
func (vh *vhost) policiesChanged(qs []*queue) {
	for _, q := range qs {
		q.mu.Lock()
		if q.deleted {
			q.mu.Unlock()
			continue
		}
		if q.kind == kindStream {
			q.applyRetentionLocked(time.Now())
			q.mu.Unlock()
			continue
		}
		q.touchLocked()
		q.enforceMaxLenLocked()
		if q.mayExpire() {
			q.expireHeadLocked()
		}
		q.deliverLocked()
		q.unlock()
	}
}

// putPolicy validates, stores and applies a policy or operator policy.
func (s *Server) putPolicy(p index.Policy, operator bool) error {
	vh, err := s.vhostOrErr(p.VHost)
	if err != nil {
		return err
	}
	pp, err := parsePolicy(p, operator)
	if err != nil {
		return err
	}
	p.ApplyTo = pp.applyTo
	vh.mu.Lock()
	idx := s.store.Index()
	put := idx.PutPolicy
	list := &vh.policies
	if operator {
		put, list = idx.PutOperatorPolicy, &vh.opPolicies
	}
	if err := put(p); err != nil {
		vh.mu.Unlock()
		return fmt.Errorf("broker: persist policy: %w", err)
	}
	*list = slices.DeleteFunc(*list, func(x *policy) bool { return x.name == p.Name })
	*list = append(*list, pp)
	changed := vh.applyPoliciesLocked()
	vh.mu.Unlock()
	vh.policiesChanged(changed)
	s.log.Info().Str("vhost", p.VHost).Str("policy", p.Name).Bool("operator", operator).Str("pattern", p.Pattern).
		Int("queues_changed", len(changed)).Msg("policy set")
	return nil
}

// deletePolicy removes a policy or operator policy and applies the change.
func (s *Server) deletePolicy(vhost, name string, operator bool) error {
	vh, err := s.vhostOrErr(vhost)
	if err != nil {
		return err
	}
	what := "policy"
	if operator {
		what = "operator policy"
	}
	vh.mu.Lock()
	idx := s.store.Index()
	del := idx.DeletePolicy
	list := &vh.policies
	if operator {
		del, list = idx.DeleteOperatorPolicy, &vh.opPolicies
	}
	if err := del(vhost, name); err != nil {
		vh.mu.Unlock()
		if errors.Is(err, index.ErrNotFound) {
			return notFound("no %s '%s' in vhost '%s'", what, name, vhost)
		}
		return fmt.Errorf("broker: delete %s: %w", what, err)
	}
	*list = slices.DeleteFunc(*list, func(x *policy) bool { return x.name == name })
	changed := vh.applyPoliciesLocked()
	vh.mu.Unlock()
	vh.policiesChanged(changed)
	s.log.Info().Str("vhost", vhost).Str("policy", name).Bool("operator", operator).Int("queues_changed", len(changed)).Msg("policy cleared")
	return nil
}
