package amqpwire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

func decodeTable(b []byte) (Table, error) {
	r := NewReader(b)
	t := r.Table()
	if err := r.Err(); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, errors.New("trailing bytes")
	}
	return t, nil
}

func TestTableRoundTrip(t *testing.T) {
	ts := time.Unix(1700000000, 0).UTC()
	in := Table{
		"bool":    true,
		"int8":    int8(-7),
		"uint8":   uint8(200),
		"int16":   int16(-30000),
		"uint16":  uint16(60000),
		"int32":   int32(-2000000000),
		"uint32":  uint32(4000000000),
		"int64":   int64(math.MinInt64),
		"float32": float32(1.5),
		"float64": math.Pi,
		"decimal": Decimal{Scale: 2, Value: -12345},
		"string":  "héllo",
		"bytes":   []byte{0, 1, 2, 0xff},
		"array":   []any{int32(1), "two", []any{true, nil}, Table{"x": int64(3)}},
		"time":    ts,
		"table":   Table{"inner": Table{"deep": "yes"}},
		"void":    nil,
		"empty":   "",
	}
	enc := AppendTable(nil, in)
	got, err := decodeTable(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, in)
	}
	if again := AppendTable(nil, got); !bytes.Equal(again, enc) {
		t.Fatal("re-encoding differs")
	}
	// Encoding is deterministic whatever the map iteration order.
	for i := 0; i < 20; i++ {
		if !bytes.Equal(AppendTable(nil, in), enc) {
			t.Fatal("encoding is not deterministic")
		}
	}
}

func TestTableGoTypes(t *testing.T) {
	enc := AppendTable(nil, Table{
		"int":   7,
		"big":   int(1) << 40,
		"uint":  uint(9),
		"u64":   uint64(1) << 40,
		"map":   map[string]any{"k": "v"},
		"other": struct{}{},
	})
	got, err := decodeTable(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := Table{
		"int": int32(7), "big": int64(1) << 40, "uint": int32(9), "u64": int64(1) << 40,
		"map": Table{"k": "v"}, "other": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

// TestTableTags pins each type tag to the Go type RabbitMQ's errata gives it.
func TestTableTags(t *testing.T) {
	tests := []struct {
		tag   byte
		value []byte
		want  any
	}{
		{'t', []byte{1}, true},
		{'b', []byte{0xff}, int8(-1)},
		{'B', []byte{0xff}, uint8(255)},
		{'s', []byte{0xff, 0xfe}, int16(-2)},
		{'u', []byte{0xff, 0xfe}, uint16(65534)},
		{'I', []byte{0xff, 0xff, 0xff, 0xfe}, int32(-2)},
		{'i', []byte{0xff, 0xff, 0xff, 0xfe}, uint32(4294967294)},
		{'l', []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, int64(-2)},
		{'f', []byte{0x3f, 0xc0, 0, 0}, float32(1.5)},
		{'d', []byte{0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, float64(1.5)},
		{'D', []byte{3, 0, 0, 0x30, 0x39}, Decimal{Scale: 3, Value: 12345}},
		{'S', []byte{0, 0, 0, 2, 'h', 'i'}, "hi"},
		{'x', []byte{0, 0, 0, 2, 'h', 'i'}, []byte("hi")},
		{'T', []byte{0, 0, 0, 0, 0, 0, 0, 10}, time.Unix(10, 0).UTC()},
		{'V', nil, nil},
		{'A', []byte{0, 0, 0, 2, 'b', 5}, []any{int8(5)}},
		{'F', []byte{0, 0, 0, 4, 1, 'k', 'B', 9}, Table{"k": uint8(9)}},
	}
	for _, tt := range tests {
		field := append([]byte{1, 'v', tt.tag}, tt.value...)
		enc := append([]byte{0, 0, 0, byte(len(field))}, field...)
		got, err := decodeTable(enc)
		if err != nil {
			t.Errorf("%c: %v", tt.tag, err)
			continue
		}
		if !reflect.DeepEqual(got["v"], tt.want) {
			t.Errorf("%c: got %#v (%T), want %#v (%T)", tt.tag, got["v"], got["v"], tt.want, tt.want)
		}
		if re := AppendTable(nil, got); !bytes.Equal(re, enc) {
			t.Errorf("%c: re-encoded %x, want %x", tt.tag, re, enc)
		}
	}
}

func TestTableErrors(t *testing.T) {
	// nest returns depth tables, each the value of key "n" in the one outside it.
	nest := func(depth int) []byte {
		b := []byte{0, 0, 0, 0}
		for i := 1; i < depth; i++ {
			inner := append([]byte{1, 'n', 'F'}, b...)
			b = append([]byte{byte(len(inner) >> 24), byte(len(inner) >> 16), byte(len(inner) >> 8), byte(len(inner))}, inner...)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"length past end", []byte{0, 0, 0, 10, 1, 'k'}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}},
		{"unknown type", []byte{0, 0, 0, 3, 1, 'k', 'Q'}},
		{"truncated value", []byte{0, 0, 0, 4, 1, 'k', 'I', 0}},
		{"string past table end", []byte{0, 0, 0, 7, 1, 'k', 'S', 0, 0, 0, 1, 'z'}},
		{"key past table end", []byte{0, 0, 0, 1, 5}},
		{"array length past end", []byte{0, 0, 0, 7, 1, 'k', 'A', 0, 0, 0, 9}},
		{"too deep", nest(MaxTableDepth + 2)},
	}
	for _, tt := range tests {
		_, err := decodeTable(tt.in)
		var e *Error
		if !errors.As(err, &e) || e.Code != SyntaxError {
			t.Errorf("%s: err = %v, want a syntax error", tt.name, err)
		}
		r := NewReader(tt.in)
		r.skipTable()
		if r.Err() == nil {
			t.Errorf("%s: skipTable accepted it", tt.name)
		}
	}
	ok := nest(MaxTableDepth + 1) // the outer table is depth 0
	if _, err := decodeTable(ok); err != nil {
		t.Errorf("nesting of %d: %v", MaxTableDepth+1, err)
	}
	r := NewReader(ok)
	if r.skipTable(); r.Err() != nil || r.Len() != 0 {
		t.Errorf("skipTable of nesting %d: %v", MaxTableDepth+1, r.Err())
	}
}
