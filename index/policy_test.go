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
