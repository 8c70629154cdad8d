package index

import (
	"errors"
	"reflect"
	"testing"
)

func TestVHostMetadataRoundTrip(t *testing.T) {
	db := openMem(t)
	plain := VHost{Name: "plain"}
	meta := VHost{Name: "shop", Description: "the shop", Tags: []string{"prod", "eu"}, DefaultQueueType: "classic"}
	for _, v := range []VHost{plain, meta} {
		if err := db.PutVHost(v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.GetVHost("shop")
	if err != nil || !reflect.DeepEqual(got, meta) {
		t.Fatalf("GetVHost = %+v, %v; want %+v", got, err, meta)
	}
	all, err := db.VHosts()
	if err != nil || len(all) != 2 || !reflect.DeepEqual(all[0], plain) || !reflect.DeepEqual(all[1], meta) {
		t.Fatalf("VHosts = %+v, %v", all, err)
	}
	// A truncated metadata value is corrupt, not silently empty.
	if err := db.set(keyOf(kindVHost, "bad"), []byte{vhostMetaVersion, 5, 'a'}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetVHost("bad"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated vhost value: %v", err)
	}
}

func TestPoliciesAndParameters(t *testing.T) {
	db := openMem(t)
	pols := []Policy{
		{VHost: "/", Name: "a", Pattern: "^a", ApplyTo: "queues", Priority: -3, Definition: []byte(`{"message-ttl":1}`)},
		{VHost: "shop", Name: "ttl-audit", Pattern: "^audit$", ApplyTo: "all", Priority: 7, Definition: []byte(`{}`)},
	}
	for _, p := range pols {
		if err := db.PutPolicy(p); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := db.Policies(""); err != nil || !reflect.DeepEqual(got, pols) {
		t.Fatalf("Policies = %+v, %v", got, err)
	}
	if got, err := db.Policies("shop"); err != nil || len(got) != 1 || got[0].Name != "ttl-audit" {
		t.Fatalf("Policies(shop) = %+v, %v", got, err)
	}
	params := []Parameter{{Component: "federation-upstream", VHost: "shop", Name: "up", Value: []byte(`{"uri":"amqp://x"}`)}}
	if err := db.PutParameter(params[0]); err != nil {
		t.Fatal(err)
	}
	if err := db.PutGlobalParameter(GlobalParameter{Name: "cluster_name", Value: []byte(`"rabbit@x"`)}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Parameters(); err != nil || !reflect.DeepEqual(got, params) {
		t.Fatalf("Parameters = %+v, %v", got, err)
	}
	if got, err := db.GlobalParameters(); err != nil || len(got) != 1 || string(got[0].Value) != `"rabbit@x"` {
		t.Fatalf("GlobalParameters = %+v, %v", got, err)
	}
	// Deleting a vhost takes its policies and parameters with it.
	if err := db.PutVHost(VHost{Name: "shop"}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteVHost("shop"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Policies(""); len(got) != 1 || got[0].VHost != "/" {
		t.Fatalf("policies after vhost delete: %+v", got)
	}
	if got, _ := db.Parameters(); len(got) != 0 {
		t.Fatalf("parameters after vhost delete: %+v", got)
	}
	if err := db.DeletePolicy("/", "a"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeletePolicy("/", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestOperatorPolicies: operator policies are kept apart from policies of
// the same name and go with their vhost.
func TestOperatorPolicies(t *testing.T) {
	db := openMem(t)
	if err := db.PutVHost(VHost{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	p := Policy{VHost: "v", Name: "limits", Pattern: ".*", ApplyTo: "queues", Priority: 1, Definition: []byte(`{"max-length":5}`)}
	if err := db.PutOperatorPolicy(p); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPolicy(Policy{VHost: "v", Name: "limits", Pattern: "x", ApplyTo: "all", Definition: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.OperatorPolicies("v"); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], p) {
		t.Fatalf("OperatorPolicies = %+v, %v", got, err)
	}
	if err := db.DeleteOperatorPolicy("v", "limits"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Policies("v"); len(got) != 1 {
		t.Fatalf("deleting the operator policy took the policy: %+v", got)
	}
	if err := db.DeleteOperatorPolicy("v", "limits"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	db.PutOperatorPolicy(p)
	if err := db.DeleteVHost("v"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.OperatorPolicies(""); len(got) != 0 {
		t.Fatalf("operator policies left after the vhost went: %+v", got)
	}
}
