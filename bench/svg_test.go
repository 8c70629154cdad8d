package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWriteCompareSVGIsWellFormed(t *testing.T) {
	cr := &CompareResult{
		A: "amqp://warren:xxxxx@a:5672/", B: "amqp://rabbit@b:5672/?x=1&y=<2>", Rounds: 3,
		Rows: []CompareRow{
			{Scenario: "persistent-1k", ARate: 52000, BRate: 14000, AP99Median: 3.5, BP99Median: 40},
			{Scenario: `odd <name> & "quotes"`, ARate: 0, BRate: 900, AP99Median: 0, BP99Median: 0.2},
			{Scenario: "large-1m", ARate: 95, BRate: 60, AP99Median: 120, BP99Median: 300},
		},
	}
	var buf bytes.Buffer
	if err := WriteCompareSVG(&buf, cr); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	var rects, texts int
	var chars strings.Builder
	depth, root := 0, ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, buf.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = el.Name.Local
				if el.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", el.Name.Space)
				}
			}
			depth++
			switch el.Name.Local {
			case "rect":
				rects++
			case "text":
				texts++
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			chars.Write(el)
		}
	}
	if root != "svg" || depth != 0 {
		t.Fatalf("root %q, depth %d at end", root, depth)
	}
	// background + 2 legend swatches + 2 panels x 3 scenarios x 2 bars
	if want := 1 + 2 + 2*3*2; rects != want {
		t.Errorf("%d rects, want %d", rects, want)
	}
	text := chars.String()
	for _, want := range []string{`odd <name> & "quotes"`, "A: amqp://warren:xxxxx@a:5672/", "B: amqp://rabbit@b:5672/?x=1&y=<2>",
		"Throughput", "p99 latency", "52k", "persistent-1k"} {
		if !strings.Contains(text, want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
	if texts < 2*3*2+2*3+2 {
		t.Errorf("only %d text elements", texts)
	}
}

func TestWriteCompareSVGEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCompareSVG(&buf, &CompareResult{A: "a", B: "b", Rounds: 1}); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(buf.Bytes(), new(struct{})); err != nil {
		t.Fatalf("empty plot not well-formed: %v", err)
	}
}

func TestNiceCeilAndShortNumber(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 1}, {0.3, 0.5}, {1, 1}, {1.2, 2}, {37, 50}, {52000, 100000}, {120, 200}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {0.42, "0.42"}, {3.25, "3.2"}, {950, "950"}, {1500, "1.5k"}, {2000, "2k"}, {52000, "52k"}, {3_200_000, "3.2M"}} {
		if got := shortNumber(tc.in); got != tc.want {
			t.Errorf("shortNumber(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
