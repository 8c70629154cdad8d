package index

import (
	"encoding/binary"
	"fmt"
)

// Policy is a RabbitMQ policy: a pattern over queue or exchange names and a
// definition (a JSON object, opaque to the index) applied to the matches.
type Policy struct {
	VHost      string
	Name       string
	Pattern    string
	ApplyTo    string // "queues", "exchanges" or "all"
	Priority   int64
	Definition []byte // JSON object
}

// Parameter is a vhost-scoped runtime parameter of a component (for example
// "federation-upstream"); Value is JSON, opaque to the index.
type Parameter struct {
	Component string
	VHost     string
	Name      string
	Value     []byte
}

// GlobalParameter is a node-wide runtime parameter; Value is JSON.
type GlobalParameter struct {
	Name  string
	Value []byte
}

// ---- policies ----

func encodePolicy(p Policy) []byte {
	v := []byte{valueVersion}
	v = appendBytes(v, p.Pattern)
	v = appendBytes(v, p.ApplyTo)
	v = binary.AppendVarint(v, p.Priority)
	return appendBytes(v, p.Definition)
}

func decodePolicy(vhost, name string, v []byte) (Policy, error) {
	r := newValueReader(v)
	p := Policy{VHost: vhost, Name: name}
	p.Pattern = r.str()
	p.ApplyTo = r.str()
	if r.err == nil {
		x, n := binary.Varint(r.b)
		if n <= 0 {
			r.err = fmt.Errorf("%w: bad varint", ErrCorrupt)
		} else {
			p.Priority, r.b = x, r.b[n:]
		}
	}
	p.Definition = r.bytes()
	if err := r.done(); err != nil {
		return Policy{}, fmt.Errorf("policy %q in vhost %q: %w", name, vhost, err)
	}
	return p, nil
}

// PutPolicy creates or replaces a policy.
func (db *DB) PutPolicy(p Policy) error {
	return db.set(keyOf(kindPolicy, p.VHost, p.Name), encodePolicy(p))
}

// DeletePolicy deletes a policy, or returns ErrNotFound.
func (db *DB) DeletePolicy(vhost, name string) error {
	if err := db.del(keyOf(kindPolicy, vhost, name)); err != nil {
		return fmt.Errorf("policy %q in vhost %q: %w", name, vhost, err)
	}
	return nil
}

// Policies lists the policies of one vhost in name order, or of every vhost
// when vhost is "" (ordered by vhost, then name).
func (db *DB) Policies(vhost string) ([]Policy, error) {
	return db.policies(kindPolicy, vhost)
}

// PutOperatorPolicy creates or replaces an operator policy (stored like a
// policy, under a key kind of its own).
func (db *DB) PutOperatorPolicy(p Policy) error {
	return db.set(keyOf(kindOperatorPolicy, p.VHost, p.Name), encodePolicy(p))
}

// DeleteOperatorPolicy deletes an operator policy, or returns ErrNotFound.
func (db *DB) DeleteOperatorPolicy(vhost, name string) error {
	if err := db.del(keyOf(kindOperatorPolicy, vhost, name)); err != nil {
		return fmt.Errorf("operator policy %q in vhost %q: %w", name, vhost, err)
	}
	return nil
}

// OperatorPolicies lists operator policies as Policies lists policies.
func (db *DB) OperatorPolicies(vhost string) ([]Policy, error) {
	return db.policies(kindOperatorPolicy, vhost)
}

func (db *DB) policies(kind byte, vhost string) ([]Policy, error) {
	prefix := []byte{kind}
	if vhost != "" {
		prefix = keyOf(kind, vhost)
	}
	var out []Policy
	err := db.scan(prefix, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		vh, name := r.str(), r.str()
		if err := r.done(); err != nil {
			return err
		}
		p, err := decodePolicy(vh, name, v)
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// ---- runtime parameters ----

// PutParameter creates or replaces a runtime parameter.
func (db *DB) PutParameter(p Parameter) error {
	return db.set(keyOf(kindParameter, p.Component, p.VHost, p.Name), appendBytes([]byte{valueVersion}, p.Value))
}

// DeleteParameter deletes a runtime parameter, or returns ErrNotFound.
func (db *DB) DeleteParameter(component, vhost, name string) error {
	if err := db.del(keyOf(kindParameter, component, vhost, name)); err != nil {
		return fmt.Errorf("parameter %s/%q in vhost %q: %w", component, name, vhost, err)
	}
	return nil
}

// Parameters lists every runtime parameter ordered by component, vhost and name.
func (db *DB) Parameters() ([]Parameter, error) {
	var out []Parameter
	err := db.scan([]byte{kindParameter}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		p := Parameter{Component: r.str(), VHost: r.str(), Name: r.str()}
		if err := r.done(); err != nil {
			return err
		}
		vr := newValueReader(v)
		p.Value = vr.bytes()
		if err := vr.done(); err != nil {
			return fmt.Errorf("parameter %s/%q: %w", p.Component, p.Name, err)
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// PutGlobalParameter creates or replaces a global parameter.
func (db *DB) PutGlobalParameter(p GlobalParameter) error {
	return db.set(keyOf(kindGlobal, p.Name), appendBytes([]byte{valueVersion}, p.Value))
}

// DeleteGlobalParameter deletes a global parameter, or returns ErrNotFound.
func (db *DB) DeleteGlobalParameter(name string) error {
	if err := db.del(keyOf(kindGlobal, name)); err != nil {
		return fmt.Errorf("global parameter %q: %w", name, err)
	}
	return nil
}

// GlobalParameters lists the global parameters in name order.
func (db *DB) GlobalParameters() ([]GlobalParameter, error) {
	var out []GlobalParameter
	err := db.scan([]byte{kindGlobal}, func(k, v []byte) error {
		r := keyReader{b: k[1:]}
		p := GlobalParameter{Name: r.str()}
		if err := r.done(); err != nil {
			return err
		}
		vr := newValueReader(v)
		p.Value = vr.bytes()
		if err := vr.done(); err != nil {
			return fmt.Errorf("global parameter %q: %w", p.Name, err)
		}
		out = append(out, p)
		return nil
	})
	return out, err
}
