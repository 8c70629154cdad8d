package amqpwire

import (
	"reflect"
	"testing"
)

// TestAppendWithHeaders splices entries into properties with and without
// a headers table, before and after other properties, and checks the
// result decodes to the same properties plus the new headers.
func TestAppendWithHeaders(t *testing.T) {
	cases := []Properties{
		{},
		{Flags: FlagDeliveryMode, DeliveryMode: 2},
		{Flags: FlagContentType | FlagPriority, ContentType: "text/plain", Priority: 3},
		{Flags: FlagContentType | FlagContentEncoding | FlagHeaders | FlagReplyTo, ContentType: "a", ContentEncoding: "gzip",
			Headers: Table{"x": int32(1), "nested": Table{"y": "z"}}, ReplyTo: "r"},
		fullProperties(),
	}
	extra := AppendLongEntry(nil, "x-stream-offset", 42)
	extra = AppendLongEntry(extra, "x-delivery-count", -3)
	for i, p := range cases {
		raw := p.AppendTo(nil)
		out, ok := AppendWithHeaders(make([]byte, 0, 8), raw, extra)
		if !ok {
			t.Fatalf("case %d: not spliced", i)
		}
		got, err := DecodeProperties(out)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		want, _ := DecodeProperties(raw)
		if want.Headers == nil {
			want.Headers = Table{}
		}
		want.Headers["x-stream-offset"] = int64(42)
		want.Headers["x-delivery-count"] = int64(-3)
		want.Flags |= FlagHeaders
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, got, want)
		}
		if !HasHeader(out, "x-stream-offset") || !HasHeader(out, "x-delivery-count") || HasHeader(out, "x-none") {
			t.Fatalf("case %d: HasHeader wrong", i)
		}
		if HasHeader(raw, "x-stream-offset") {
			t.Fatalf("case %d: HasHeader on the original", i)
		}
	}
	if _, ok := AppendWithHeaders(nil, []byte{0x20, 0x00, 0, 0}, extra); ok {
		t.Fatal("truncated headers table spliced")
	}
	raw := (&Properties{Flags: FlagHeaders, Headers: Table{"a": "b"}}).AppendTo(nil)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { AppendWithHeaders(buf[:0], raw, extra) }); n != 0 {
		t.Fatalf("%v allocations per splice", n)
	}
}
