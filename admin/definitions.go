package admin

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/index"
)

// Definitions is RabbitMQ's definitions document (rabbitmqctl
// export_definitions, GET /api/definitions). Fields Warren does not know
// are kept out; topic permissions and limits are accepted on import but
// must be empty (Warren does not enforce them).
type Definitions struct {
	RabbitVersion    string           `json:"rabbit_version,omitempty"`
	RabbitMQVersion  string           `json:"rabbitmq_version,omitempty"`
	ProductName      string           `json:"product_name,omitempty"`
	ProductVersion   string           `json:"product_version,omitempty"`
	Users            []DefUser        `json:"users"`
	VHosts           []DefVHost       `json:"vhosts"`
	Permissions      []DefPermission  `json:"permissions"`
	TopicPermissions []map[string]any `json:"topic_permissions"`
	Parameters       []DefParameter   `json:"parameters"`
	GlobalParameters []DefGlobalParam `json:"global_parameters"`
	Policies         []DefPolicy      `json:"policies"`
	Queues           []DefQueue       `json:"queues"`
	Exchanges        []DefExchange    `json:"exchanges"`
	Bindings         []DefBinding     `json:"bindings"`
}

// DefUser is a user in a definitions document.
type DefUser struct {
	Name             string         `json:"name"`
	PasswordHash     *string        `json:"password_hash,omitempty"`
	Password         *string        `json:"password,omitempty"`
	HashingAlgorithm string         `json:"hashing_algorithm,omitempty"`
	Tags             any            `json:"tags"`
	Limits           map[string]any `json:"limits"`
}

// DefVHost is a vhost in a definitions document.
type DefVHost struct {
	Name             string         `json:"name"`
	Description      string         `json:"description,omitempty"`
	Tags             any            `json:"tags,omitempty"`
	DefaultQueueType string         `json:"default_queue_type,omitempty"`
	Metadata         map[string]any `json:"metadata,omitempty"`
	Limits           any            `json:"limits,omitempty"`
}

// DefPermission is a permission in a definitions document.
type DefPermission struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// DefParameter is a runtime parameter in a definitions document.
type DefParameter struct {
	VHost     string          `json:"vhost,omitempty"`
	Component string          `json:"component"`
	Name      string          `json:"name"`
	Value     json.RawMessage `json:"value"`
}

// DefGlobalParam is a global parameter in a definitions document.
type DefGlobalParam struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// DefPolicy is a policy in a definitions document.
type DefPolicy struct {
	VHost      string          `json:"vhost,omitempty"`
	Name       string          `json:"name"`
	Pattern    string          `json:"pattern"`
	ApplyTo    string          `json:"apply-to"`
	Definition json.RawMessage `json:"definition"`
	Priority   json.Number     `json:"priority"`
}

// DefQueue is a queue in a definitions document.
type DefQueue struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost,omitempty"`
	Type       string         `json:"type,omitempty"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

// DefExchange is an exchange in a definitions document.
type DefExchange struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost,omitempty"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

// DefBinding is a binding in a definitions document.
type DefBinding struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost,omitempty"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

// export builds the definitions of every vhost, or of one (then without
// users, vhosts, permissions and vhost fields, as RabbitMQ does).
func (s *Server) export(vhost string) (*Definitions, error) {
	n := s.b.Node()
	d := &Definitions{RabbitVersion: CompatVersion, RabbitMQVersion: CompatVersion, ProductName: n.Product, ProductVersion: n.Version,
		Users: []DefUser{}, VHosts: []DefVHost{}, Permissions: []DefPermission{}, TopicPermissions: []map[string]any{},
		Parameters: []DefParameter{}, GlobalParameters: []DefGlobalParam{}, Policies: []DefPolicy{}, Queues: []DefQueue{},
		Exchanges: []DefExchange{}, Bindings: []DefBinding{}}
	all := vhost == ""
	vhf := func(v string) string {
		if all {
			return v
		}
		return ""
	}
	if all {
		for _, u := range s.b.Users() {
			uj := userJSON(u)
			h := uj["password_hash"].(string)
			d.Users = append(d.Users, DefUser{Name: u.Name, PasswordHash: &h, HashingAlgorithm: uj["hashing_algorithm"].(string),
				Tags: tagsOf(u), Limits: map[string]any{}})
		}
		vhs, err := s.b.VHosts()
		if err != nil {
			return nil, err
		}
		for _, v := range vhs {
			tags := v.Tags
			if tags == nil {
				tags = []string{}
			}
			meta := map[string]any{"description": v.Description, "tags": tags}
			if v.DefaultQueueType != "" {
				meta["default_queue_type"] = v.DefaultQueueType
			}
			d.VHosts = append(d.VHosts, DefVHost{Name: v.Name, Description: v.Description, Tags: tags,
				DefaultQueueType: v.DefaultQueueType, Metadata: meta, Limits: []any{}})
		}
		for _, p := range s.b.Permissions() {
			d.Permissions = append(d.Permissions, DefPermission(p))
		}
		gps, err := s.b.GlobalParameters()
		if err != nil {
			return nil, err
		}
		for _, p := range gps {
			d.GlobalParameters = append(d.GlobalParameters, DefGlobalParam{Name: p.Name, Value: p.Value})
		}
	}
	params, err := s.b.Parameters()
	if err != nil {
		return nil, err
	}
	for _, p := range params {
		if all || p.VHost == vhost {
			d.Parameters = append(d.Parameters, DefParameter{VHost: vhf(p.VHost), Component: p.Component, Name: p.Name, Value: p.Value})
		}
	}
	pols, err := s.b.Policies(vhost)
	if err != nil {
		return nil, err
	}
	for _, p := range pols {
		d.Policies = append(d.Policies, DefPolicy{VHost: vhf(p.VHost), Name: p.Name, Pattern: p.Pattern, ApplyTo: p.ApplyTo,
			Definition: p.Definition, Priority: json.Number(fmt.Sprint(p.Priority))})
	}
	// Operator policies travel as runtime parameters of the component
	// operator_policy, as in RabbitMQ's exports.
	ops, err := s.b.OperatorPolicies(vhost)
	if err != nil {
		return nil, err
	}
	for _, p := range ops {
		v, err := json.Marshal(operatorPolicyValue{Pattern: p.Pattern, ApplyTo: p.ApplyTo, Definition: p.Definition,
			Priority: json.Number(fmt.Sprint(p.Priority))})
		if err != nil {
			return nil, err
		}
		d.Parameters = append(d.Parameters, DefParameter{VHost: vhf(p.VHost), Component: operatorPolicyComponent, Name: p.Name, Value: v})
	}
	qs, err := s.b.Queues(vhost)
	if err != nil {
		return nil, err
	}
	// As RabbitMQ's export: every queue but exclusive ones, every exchange
	// but the predeclared ones, durable or not, and the bindings between
	// them.
	exportedQ := map[[2]string]bool{}
	for _, q := range qs {
		if q.Exclusive {
			continue
		}
		exportedQ[[2]string{q.VHost, q.Name}] = true
		typ := q.Type
		if typ == "" {
			typ = "classic"
		}
		d.Queues = append(d.Queues, DefQueue{Name: q.Name, VHost: vhf(q.VHost), Type: typ, Durable: q.Durable,
			AutoDelete: q.AutoDelete, Arguments: tableJSON(q.Arguments)})
	}
	xs, err := s.b.Exchanges(vhost)
	if err != nil {
		return nil, err
	}
	exportedX := map[[2]string]bool{}
	for _, x := range xs {
		exportedX[[2]string{x.VHost, x.Name}] = true
		if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
			continue
		}
		d.Exchanges = append(d.Exchanges, DefExchange{Name: x.Name, VHost: vhf(x.VHost), Type: x.Type, Durable: x.Durable,
			AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: tableJSON(x.Arguments)})
	}
	bs, err := s.b.Bindings(vhost)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		dst := exportedQ
		if b.DestinationType == "exchange" {
			dst = exportedX
		}
		if b.Source == "" || !exportedX[[2]string{b.VHost, b.Source}] || !dst[[2]string{b.VHost, b.Destination}] {
			continue
		}
		d.Bindings = append(d.Bindings, DefBinding{Source: b.Source, VHost: vhf(b.VHost), Destination: b.Destination,
			DestinationType: b.DestinationType, RoutingKey: b.RoutingKey, Arguments: tableJSON(b.Arguments)})
	}
	return d, nil
}

func (s *Server) exportDefinitions(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	d, err := s.export(vh)
	if err != nil {
		return err
	}
	if r.r.URL.Query().Get("download") != "" {
		r.w.Header().Set("Content-Disposition", "attachment; filename="+r.r.URL.Query().Get("download"))
	}
	return r.json(d)
}

func (s *Server) importDefinitions(r *request) error {
	vh, err := r.vhostParam()
	if err != nil {
		return err
	}
	var d Definitions
	if err := r.decode(&d); err != nil {
		return err
	}
	if err := s.Import(r.user.Name, vh, &d); err != nil {
		return err
	}
	return r.noContent()
}

// operatorPolicyComponent is the runtime-parameter component under which
// RabbitMQ's definitions carry operator policies.
const operatorPolicyComponent = "operator_policy"

// operatorPolicyValue is the value of an operator_policy parameter.
type operatorPolicyValue struct {
	Pattern    string          `json:"pattern"`
	ApplyTo    string          `json:"apply-to"`
	Definition json.RawMessage `json:"definition"`
	Priority   json.Number     `json:"priority"`
}

// Import applies a definitions document in RabbitMQ's order: users,
// vhosts, permissions, parameters, policies, queues, exchanges, bindings.
// With vhost set, every vhost-scoped object goes to that vhost. It stops at
// the first error, leaving what was imported before it (as RabbitMQ does);
// importing the same document again is harmless. Runtime parameters are
// stored (and exported again); policies, and operator policies (runtime
// parameters of the component operator_policy), apply to queues.
func (s *Server) Import(actor, vhost string, d *Definitions) error {
	// Administrators act without permission checks; definitions import is
	// for administrators only.
	a := broker.Actor{User: actor}
	vhOf := func(v string) string {
		if vhost != "" {
			return vhost
		}
		if v == "" {
			return "/"
		}
		return v
	}
	if len(d.TopicPermissions) > 0 {
		return badRequest("topic permissions are not supported by this broker")
	}
	if vhost == "" {
		for _, u := range d.Users {
			if u.Name == "" {
				return badRequest("a user without a name")
			}
			var old *index.User
			if cur, ok := s.findUser(u.Name); ok {
				old = &cur
			}
			// Exports before RabbitMQ 3.6 carry MD5 hashes without naming
			// the algorithm.
			user, err := userBody{Name: u.Name, Password: u.Password, PasswordHash: u.PasswordHash,
				HashingAlgorithm: u.HashingAlgorithm, Tags: u.Tags}.toUser(u.Name, old, index.HashMD5)
			if err != nil {
				return err
			}
			if _, err := s.b.PutUser(user); err != nil {
				return fmt.Errorf("user '%s': %w", u.Name, err)
			}
		}
		for _, v := range d.VHosts {
			desc, tags, dqt := v.Description, tagList(v.Tags), v.DefaultQueueType
			if v.Metadata != nil {
				if x, ok := v.Metadata["description"].(string); ok && desc == "" {
					desc = x
				}
				if x := tagList(v.Metadata["tags"]); len(tags) == 0 {
					tags = x
				}
				if x, ok := v.Metadata["default_queue_type"].(string); ok && dqt == "" {
					dqt = x
				}
			}
			if _, err := s.b.PutVHost(index.VHost{Name: v.Name, Description: desc, Tags: tags, DefaultQueueType: dqt}, ""); err != nil {
				return fmt.Errorf("vhost '%s': %w", v.Name, err)
			}
		}
		for _, p := range d.Permissions {
			if err := s.b.SetPermission(index.Permission(p)); err != nil {
				return fmt.Errorf("permission of '%s' in vhost '%s': %w", p.User, p.VHost, err)
			}
		}
		for _, p := range d.GlobalParameters {
			if err := s.b.PutGlobalParameter(index.GlobalParameter{Name: p.Name, Value: p.Value}); err != nil {
				return fmt.Errorf("global parameter '%s': %w", p.Name, err)
			}
		}
	}
	for _, p := range d.Parameters {
		if p.Component == operatorPolicyComponent {
			var v operatorPolicyValue
			if err := json.Unmarshal(p.Value, &v); err != nil {
				return badRequest("operator policy '%s': %v", p.Name, err)
			}
			pol, err := policyBody{Pattern: v.Pattern, ApplyTo: v.ApplyTo, Definition: v.Definition, Priority: v.Priority}.toPolicy(vhOf(p.VHost), p.Name)
			if err != nil {
				return err
			}
			if err := s.b.PutOperatorPolicy(pol); err != nil {
				return fmt.Errorf("operator policy '%s': %w", p.Name, err)
			}
			continue
		}
		if err := s.b.PutParameter(index.Parameter{Component: p.Component, VHost: vhOf(p.VHost), Name: p.Name, Value: p.Value}); err != nil {
			return fmt.Errorf("parameter '%s': %w", p.Name, err)
		}
	}
	for _, p := range d.Policies {
		pol, err := policyBody{Pattern: p.Pattern, ApplyTo: p.ApplyTo, Definition: p.Definition, Priority: p.Priority}.toPolicy(vhOf(p.VHost), p.Name)
		if err != nil {
			return err
		}
		if err := s.b.PutPolicy(pol); err != nil {
			return fmt.Errorf("policy '%s': %w", p.Name, err)
		}
	}
	for _, q := range d.Queues {
		args, err := jsonTable(q.Arguments)
		if err != nil {
			return badRequest("queue '%s': %v", q.Name, err)
		}
		if q.Type != "" && q.Type != "classic" {
			if args == nil {
				args = map[string]any{}
			}
			if _, ok := args["x-queue-type"]; !ok {
				args["x-queue-type"] = q.Type
			}
		}
		if _, err := s.b.DeclareQueue(a, broker.QueueInfo{VHost: vhOf(q.VHost), Name: q.Name, Durable: q.Durable,
			AutoDelete: q.AutoDelete, Arguments: args}); err != nil {
			return err
		}
	}
	for _, x := range d.Exchanges {
		if x.Name == "" || strings.HasPrefix(x.Name, "amq.") {
			continue // predeclared in every vhost
		}
		args, err := jsonTable(x.Arguments)
		if err != nil {
			return badRequest("exchange '%s': %v", x.Name, err)
		}
		if _, err := s.b.DeclareExchange(a, broker.ExchangeInfo{VHost: vhOf(x.VHost), Name: x.Name, Type: x.Type,
			Durable: x.Durable, AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: args}); err != nil {
			return err
		}
	}
	for _, b := range d.Bindings {
		args, err := jsonTable(b.Arguments)
		if err != nil {
			return badRequest("binding from '%s': %v", b.Source, err)
		}
		if err := s.b.Bind(a, broker.BindingInfo{VHost: vhOf(b.VHost), Source: b.Source, Destination: b.Destination,
			DestinationType: b.DestinationType, RoutingKey: b.RoutingKey, Arguments: args}); err != nil {
			return err
		}
	}
	s.log.Info().Str("user", actor).Int("users", len(d.Users)).Int("vhosts", len(d.VHosts)).Int("queues", len(d.Queues)).
		Int("exchanges", len(d.Exchanges)).Int("bindings", len(d.Bindings)).Int("policies", len(d.Policies)).Msg("definitions imported")
	return nil
}
