package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStandardScenarios(t *testing.T) {
	all, err := LoadScenarios(filepath.Join("scenarios", "standard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Fatalf("%d scenarios, want 8", len(all))
	}
	if got := StandardScenarios(); len(got) != len(all) || got[0].Name != all[0].Name {
		t.Fatalf("embedded suite differs from the file: %d scenarios", len(got))
	}
	cfgs := map[string]Config{}
	for _, s := range all {
		c, err := s.Config()
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if c.ID != s.Name || s.Description == "" {
			t.Errorf("%s: id %q, description %q", s.Name, c.ID, s.Description)
		}
		if c.Duration <= 0 {
			t.Errorf("%s: no default duration", s.Name)
		}
		cfgs[s.Name] = c
	}
	p := cfgs["persistent-1k"]
	if !p.Persistent || !p.durable() || p.Confirm != 256 || p.Size != 1024 || p.Producers != 1 || p.Consumers != 1 {
		t.Errorf("persistent-1k: %+v", p)
	}
	tr := cfgs["transient-16b"]
	if tr.Persistent || tr.Confirm != 0 || !tr.AutoAck || tr.Size != 16 {
		t.Errorf("transient-16b: %+v", tr)
	}
	if b := cfgs["backlog-1m"]; b.Backlog != 1_000_000 || !b.Persistent || b.BacklogSlice != 100_000 {
		t.Errorf("backlog-1m: %+v", b)
	}
	if f := cfgs["fanout-10"]; f.ExchangeType != "fanout" || len(f.QueueNames()) != 10 || f.Consumers != 10 || !f.durable() {
		t.Errorf("fanout-10: %+v", f)
	}
	if m := cfgs["many-queues"]; m.Producers != 100 || m.Consumers != 100 || len(m.QueueNames()) != 100 || m.Confirm == 0 {
		t.Errorf("many-queues: %+v", m)
	}
	if tp := cfgs["topic-1000"]; tp.TopicBindings != 1000 || tp.ExchangeType != "topic" || tp.Producers != 4 {
		t.Errorf("topic-1000: %+v", tp)
	}
	if l := cfgs["latency-10k"]; l.Rate != 10_000 || !l.Persistent || l.Size != 1024 {
		t.Errorf("latency-10k: %+v", l)
	}
	if l := cfgs["large-1m"]; l.Size != 1<<20 || !l.Persistent {
		t.Errorf("large-1m: %+v", l)
	}
}

func TestParseScenariosRejectsBadFiles(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":        `{"scenarios": [`,
		"empty":           `{"scenarios": []}`,
		"unknown field":   `{"scenarios": [{"name": "a", "options": {}}], "extra": 1}`,
		"trailing data":   `{"scenarios": [{"name": "a", "options": {}}]} {}`,
		"no name":         `{"scenarios": [{"options": {"size": 1}}]}`,
		"duplicate name":  `{"scenarios": [{"name": "a", "options": {}}, {"name": "a", "options": {}}]}`,
		"unknown option":  `{"scenarios": [{"name": "a", "options": {"sise": 1}}]}`,
		"bad value":       `{"scenarios": [{"name": "a", "options": {"size": "big"}}]}`,
		"invalid config":  `{"scenarios": [{"name": "a", "options": {"producers": 0, "consumers": 0}}]}`,
		"fractional ints": `{"scenarios": [{"name": "a", "options": {"size": 1.5}}]}`,
	} {
		if _, err := ParseScenarios([]byte(doc)); !errors.Is(err, ErrScenario) {
			t.Errorf("%s: err %v, want ErrScenario", name, err)
		}
	}
	if _, err := LoadScenarios(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, ErrScenario) {
		t.Errorf("missing file: err %v", err)
	}
}

func TestScenarioOptionsOverrideDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	doc := `{"scenarios": [{"name": "two", "options": {"time": 2, "flag": ["persistent"], "uri": ["amqp://h1/", "amqp://h2/"], "queue-args": "x-max-length=10"}}]}`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := LoadScenarios(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := all[0].Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 2*time.Second || !c.Persistent || len(c.URIs) != 2 || c.QueueArgs["x-max-length"] != int64(10) {
		t.Fatalf("config %+v", c)
	}
}

func TestSelectScenarios(t *testing.T) {
	all := StandardScenarios()
	got, err := SelectScenarios(all, []string{"1", "transient-16b", "7"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "persistent-1k,transient-16b,latency-10k" {
		t.Fatalf("selected %v", names)
	}
	if got, _ := SelectScenarios(all, nil); len(got) != len(all) {
		t.Fatalf("no selector picked %d", len(got))
	}
	for _, bad := range []string{"0", "9", "nope"} {
		if _, err := SelectScenarios(all, []string{bad}); !errors.Is(err, ErrScenario) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}
