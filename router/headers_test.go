package router

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

func TestHeadersMatch(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	cases := []struct {
		name    string
		args    map[string]any
		headers map[string]any
		want    bool
	}{
		{"all, no args, no headers", nil, nil, true},
		{"all, no args", nil, map[string]any{"a": "1"}, true},
		{"any, no args", map[string]any{"x-match": "any"}, map[string]any{"a": "1"}, false},
		{"all, equal string", map[string]any{"a": "1"}, map[string]any{"a": "1"}, true},
		{"all, other string", map[string]any{"a": "1"}, map[string]any{"a": "2"}, false},
		{"all, missing", map[string]any{"a": "1"}, map[string]any{"b": "1"}, false},
		{"all, nil headers", map[string]any{"a": "1"}, nil, false},
		{"all, both needed", map[string]any{"a": "1", "b": "2"}, map[string]any{"a": "1"}, false},
		{"all, both there", map[string]any{"a": "1", "b": "2"}, map[string]any{"a": "1", "b": "2", "c": "3"}, true},
		{"any, one of two", map[string]any{"x-match": "any", "a": "1", "b": "2"}, map[string]any{"b": "2"}, true},
		{"any, none", map[string]any{"x-match": "any", "a": "1", "b": "2"}, map[string]any{"a": "2", "b": "1"}, false},
		{"int widths", map[string]any{"a": int32(7)}, map[string]any{"a": int64(7)}, true},
		{"int signedness", map[string]any{"a": uint8(200)}, map[string]any{"a": int16(200)}, true},
		{"int8 -1 vs uint8 255", map[string]any{"a": int8(-1)}, map[string]any{"a": uint8(255)}, false},
		{"int64 min", map[string]any{"a": int64(math.MinInt64)}, map[string]any{"a": int64(math.MinInt64)}, true},
		{"int vs float", map[string]any{"a": int32(1)}, map[string]any{"a": float64(1)}, false},
		{"float vs int", map[string]any{"a": float64(1)}, map[string]any{"a": int32(1)}, false},
		{"float widths", map[string]any{"a": float32(1.5)}, map[string]any{"a": 1.5}, true},
		{"float differ", map[string]any{"a": float32(1.5)}, map[string]any{"a": 1.25}, false},
		{"NaN", map[string]any{"a": math.NaN()}, map[string]any{"a": math.NaN()}, false},
		{"string vs bytes", map[string]any{"a": "xy"}, map[string]any{"a": []byte("xy")}, true},
		{"bytes vs string", map[string]any{"a": []byte("xy")}, map[string]any{"a": "xy"}, true},
		{"string vs number", map[string]any{"a": "1"}, map[string]any{"a": int32(1)}, false},
		{"bool", map[string]any{"a": true}, map[string]any{"a": true}, true},
		{"bool differ", map[string]any{"a": true}, map[string]any{"a": false}, false},
		{"bool vs string", map[string]any{"a": true}, map[string]any{"a": "true"}, false},
		{"void is presence", map[string]any{"a": nil}, map[string]any{"a": "anything"}, true},
		{"void vs void header", map[string]any{"a": nil}, map[string]any{"a": nil}, true},
		{"void absent", map[string]any{"a": nil}, map[string]any{"b": "1"}, false},
		{"void header vs value", map[string]any{"a": "1"}, map[string]any{"a": nil}, false},
		{"any void", map[string]any{"x-match": "any", "a": nil, "b": "2"}, map[string]any{"a": int8(0)}, true},
		{"x- ignored under all", map[string]any{"x-foo": "1"}, nil, true},
		{"x- ignored under any", map[string]any{"x-match": "any", "x-foo": "1"}, map[string]any{"x-foo": "1"}, false},
		{"all-with-x compares x-", map[string]any{"x-match": "all-with-x", "x-foo": "1"}, nil, false},
		{"all-with-x x- equal", map[string]any{"x-match": "all-with-x", "x-foo": "1"}, map[string]any{"x-foo": "1"}, true},
		{"any-with-x", map[string]any{"x-match": "any-with-x", "x-a": int32(1), "b": "2"}, map[string]any{"x-a": int64(1)}, true},
		{"any-with-x none", map[string]any{"x-match": "any-with-x", "x-a": int32(1)}, map[string]any{"x-a": int64(2)}, false},
		{"x-match not compared under with-x", map[string]any{"x-match": "all-with-x"}, nil, true},
		{"timestamp", map[string]any{"a": ts}, map[string]any{"a": ts.Add(500 * time.Millisecond)}, true},
		{"timestamp differ", map[string]any{"a": ts}, map[string]any{"a": ts.Add(time.Second)}, false},
		{"timestamp vs int", map[string]any{"a": ts}, map[string]any{"a": ts.Unix()}, false},
		{"table", map[string]any{"a": map[string]any{"k": int32(1), "s": "v"}}, map[string]any{"a": map[string]any{"s": "v", "k": int32(1)}}, true},
		{"table strict type", map[string]any{"a": map[string]any{"k": int32(1)}}, map[string]any{"a": map[string]any{"k": int64(1)}}, false},
		{"table extra key", map[string]any{"a": map[string]any{"k": int32(1)}}, map[string]any{"a": map[string]any{"k": int32(1), "j": nil}}, false},
		{"array", map[string]any{"a": []any{int32(1), "x"}}, map[string]any{"a": []any{int32(1), "x"}}, true},
		{"array order", map[string]any{"a": []any{int32(1), "x"}}, map[string]any{"a": []any{"x", int32(1)}}, false},
		{"array strict bytes", map[string]any{"a": []any{"x"}}, map[string]any{"a": []any{[]byte("x")}}, false},
		{"decimal-like", map[string]any{"a": decimal{2, 150}}, map[string]any{"a": decimal{2, 150}}, true},
		{"decimal-like differ", map[string]any{"a": decimal{2, 150}}, map[string]any{"a": decimal{1, 15}}, false},
		{"defined table type", map[string]any{"a": table{"k": "v"}}, map[string]any{"a": table{"k": "v"}}, true},
		{"defined table type differ", map[string]any{"a": table{"k": "v"}}, map[string]any{"a": table{"k": "w"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseHeaderArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tc.headers); got != tc.want {
				t.Errorf("args %v headers %v: match = %v, want %v", tc.args, tc.headers, got, tc.want)
			}
			// Through a headers exchange too.
			topo := NewTopology()
			mustBind(t, topo, Binding{Source: "amq.match", Destination: "q", DestKind: DestQueue, Args: tc.args})
			got, _ := topo.Snapshot().Route("amq.match", "ignored", tc.headers, nil)
			if (len(got) == 1) != tc.want {
				t.Errorf("route = %v, want match %v", got, tc.want)
			}
		})
	}
}

type decimal struct {
	Scale uint8
	Value int32
}

type table map[string]any

func TestHeadersInvalidXMatch(t *testing.T) {
	for _, v := range []any{"one", int32(1), []byte("any"), nil} {
		topo := NewTopology()
		_, err := topo.Bind(Binding{Source: "amq.headers", Destination: "q", DestKind: DestQueue, Args: map[string]any{"x-match": v}})
		if !errors.Is(err, ErrInvalidBinding) {
			t.Errorf("x-match %#v: err = %v, want ErrInvalidBinding", v, err)
		}
	}
	// Other exchange types do not look at x-match.
	topo := NewTopology()
	if _, err := topo.Bind(Binding{Source: "amq.direct", Destination: "q", DestKind: DestQueue, Args: map[string]any{"x-match": "one"}}); err != nil {
		t.Errorf("direct with odd x-match: %v", err)
	}
}

// TestHeadersSharedArgs checks that bindings with equal arguments to
// different queues share one matcher and all receive the message.
func TestHeadersSharedArgs(t *testing.T) {
	topo := NewTopology()
	args := map[string]any{"x-match": "any", "k": "v"}
	for _, q := range []string{"q3", "q1", "q2"} {
		mustBind(t, topo, Binding{Source: "amq.headers", Destination: q, DestKind: DestQueue, Args: args})
	}
	mustBind(t, topo, Binding{Source: "amq.headers", Destination: "q9", DestKind: DestQueue, Args: map[string]any{"k": "w"}})
	s := topo.Snapshot()
	if n := len(s.ex.get("amq.headers").hdrs); n != 2 {
		t.Errorf("%d matchers, want 2", n)
	}
	got, _ := s.Route("amq.headers", "", map[string]any{"k": "v"}, nil)
	if want := "[q1 q2 q3]"; sprint(got) != want {
		t.Errorf("route = %v, want %s", got, want)
	}
}

// TestHeadersManyKeys uses more distinct argument keys than Route looks up
// into its stack array, so each binding looks its keys up itself.
func TestHeadersManyKeys(t *testing.T) {
	topo := NewTopology()
	for i := 0; i < maxHeaderKeys+8; i++ {
		mustBind(t, topo, Binding{Source: "amq.headers", Destination: fmt.Sprintf("q%02d", i), DestKind: DestQueue,
			Args: map[string]any{fmt.Sprintf("k%02d", i): int32(i), "x-match": "any", "shared": "s"}})
	}
	s := topo.Snapshot()
	if n := len(s.ex.get("amq.headers").hkeys); n <= maxHeaderKeys {
		t.Fatalf("only %d keys", n)
	}
	got, _ := s.Route("amq.headers", "", map[string]any{"k05": int64(5), "k39": uint8(39)}, nil)
	if sprint(got) != "[q05 q39]" {
		t.Errorf("Route = %v", got)
	}
	got, _ = s.Route("amq.headers", "", map[string]any{"shared": "s"}, nil)
	if len(got) != maxHeaderKeys+8 {
		t.Errorf("Route on shared = %d queues", len(got))
	}
}
