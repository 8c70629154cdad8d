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

// The extension and scale suites in scenarios/ parse into valid configs
// with the options their names promise.
func TestScenarioFiles(t *testing.T) {
	for file, want := range map[string][]string{
		"extensions.json": {"plain-256b", "priority-10", "priority-10-backlog", "stream-10m", "reject-publish-2x"},
		"scale.json": {"rpc-3000", "connections-5000", "queues-10000-slow", "drained-200x16k", "near-empty-100",
			"large-1m", "large-16m", "churn-100", "churn-20000", "churn-100000"},
	} {
		all, err := LoadScenarios(filepath.Join("scenarios", file))
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("%s: %d scenarios, want %d", file, len(all), len(want))
		}
		cfgs := map[string]Config{}
		for i, s := range all {
			if s.Name != want[i] || s.Description == "" {
				t.Errorf("%s: scenario %d is %q (%q), want %q", file, i+1, s.Name, s.Description, want[i])
			}
			c, err := s.Config()
			if err != nil {
				t.Fatal(err)
			}
			cfgs[s.Name] = c
		}
		switch file {
		case "extensions.json":
			if c := cfgs["priority-10"]; c.QueueArgs["x-max-priority"] != int64(9) || c.Priorities != 10 {
				t.Errorf("priority-10: %+v", c)
			}
			if c := cfgs["stream-10m"]; !c.stream() || c.Backlog != 10_000_000 || c.ConsumerArgs["x-stream-offset"] != "first" {
				t.Errorf("stream-10m: %+v", c)
			}
			if c := cfgs["reject-publish-2x"]; c.QueueArgs["x-overflow"] != "reject-publish" || c.Rate != 2*c.ConsumerRate {
				t.Errorf("reject-publish-2x: %+v", c)
			}
		case "scale.json":
			if c := cfgs["rpc-3000"]; !c.ExclusiveQueues || c.Consumers != 3000 || c.Settle <= 0 {
				t.Errorf("rpc-3000: %+v", c)
			}
			if c := cfgs["queues-10000-slow"]; c.QueueCount != 10000 || c.Producers != 10000 || c.Rate != 1 || c.ChannelsPerConnection != 100 {
				t.Errorf("queues-10000-slow: %+v", c)
			}
			if c := cfgs["large-16m"]; c.Size != 16<<20 || !c.Persistent {
				t.Errorf("large-16m: %+v", c)
			}
			if c := cfgs["churn-100000"]; c.Churn != 1 || c.QueueCount != 100000 || !c.durable() {
				t.Errorf("churn-100000: %+v", c)
			}
		}
	}
}
