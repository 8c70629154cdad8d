package amqpwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"
)

func fullProperties() Properties {
	return Properties{
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		Headers:         Table{"x-retries": int32(3), "trace": "abc"},
		DeliveryMode:    2,
		Priority:        9,
		CorrelationID:   "corr-1",
		ReplyTo:         "amq.rabbitmq.reply-to",
		Expiration:      "60000",
		MessageID:       "msg-1",
		Timestamp:       time.Unix(1700000000, 0).UTC(),
		Type:            "order.created",
		UserID:          "guest",
		AppID:           "shop",
		ClusterID:       "c1",
	}
}

func TestPropertiesRoundTrip(t *testing.T) {
	p := fullProperties()
	raw := p.AppendTo(nil)
	if flags := binary.BigEndian.Uint16(raw); flags != 0xfffc {
		t.Fatalf("flags = %#04x, want 0xfffc", flags)
	}
	got, err := DecodeProperties(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Flags = 0xfffc
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if again := got.AppendTo(nil); !bytes.Equal(again, raw) {
		t.Fatal("re-encoding differs")
	}
	if PeekDeliveryMode(raw) != 2 {
		t.Errorf("PeekDeliveryMode = %d", PeekDeliveryMode(raw))
	}
	if PeekPriority(raw) != p.Priority {
		t.Errorf("PeekPriority = %d, want %d", PeekPriority(raw), p.Priority)
	}
	if only := (&Properties{Flags: FlagPriority, Priority: 7}).AppendTo(nil); PeekPriority(only) != 7 || PeekPriority(raw[:3]) != 0 {
		t.Errorf("PeekPriority alone = %d, truncated = %d", PeekPriority(only), PeekPriority(raw[:3]))
	}
	// Each truncation fails.
	for n := 0; n < len(raw); n++ {
		if _, err := DecodeProperties(raw[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

func TestPropertiesEachFlag(t *testing.T) {
	full := fullProperties()
	fv := reflect.ValueOf(full)
	for i := 0; i < 14; i++ {
		flag := uint16(0x8000) >> i
		var p Properties
		reflect.ValueOf(&p).Elem().Field(i + 1).Set(fv.Field(i + 1))
		raw := p.AppendTo(nil)
		if got := binary.BigEndian.Uint16(raw); got != flag {
			t.Errorf("property %d: flags %#04x, want %#04x", i, got, flag)
		}
		got, err := DecodeProperties(raw)
		p.Flags = flag
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("property %d: got %+v, %v", i, got, err)
		}
	}
	// A flag set with a zero value is still written and read back.
	p := Properties{Flags: FlagPriority | FlagContentType}
	raw := p.AppendTo(nil)
	if !bytes.Equal(raw, []byte{0x88, 0x00, 0, 0}) {
		t.Errorf("zero-valued flagged properties = %x", raw)
	}
}

func TestPropertiesContinuation(t *testing.T) {
	// Flags word with continuation, then an empty continuation word.
	raw := []byte{0x10, 0x01, 0x00, 0x00, 2}
	p, err := DecodeProperties(raw)
	if err != nil || p.DeliveryMode != 2 || p.Flags != FlagDeliveryMode {
		t.Fatalf("got %+v, %v", p, err)
	}
	if PeekDeliveryMode(raw) != 2 {
		t.Errorf("PeekDeliveryMode = %d", PeekDeliveryMode(raw))
	}
	if _, err := DecodeContentHeader(append(make([]byte, 12), raw...)); err != nil {
		t.Errorf("DecodeContentHeader: %v", err)
	}
	for name, bad := range map[string][]byte{
		"undefined flag bit 1":        {0x00, 0x02},
		"continuation with flags":     {0x00, 0x01, 0x80, 0x00},
		"missing continuation word":   {0x00, 0x01},
		"trailing bytes":              {0x00, 0x00, 1},
		"flagged but absent":          {0x10, 0x00},
		"headers with bad type":       {0x20, 0x00, 0, 0, 0, 3, 1, 'k', '?'},
		"content-type past the end":   {0x80, 0x00, 5, 'a'},
		"timestamp short":             {0x00, 0x40, 0, 0, 0},
		"headers length past the end": {0x20, 0x00, 0, 0, 1, 0},
	} {
		_, err := DecodeProperties(bad)
		var e *Error
		if !errors.As(err, &e) || e.Code != SyntaxError {
			t.Errorf("%s: DecodeProperties err = %v, want syntax error", name, err)
		}
		_, err = DecodeContentHeader(append(make([]byte, 12), bad...))
		if !errors.As(err, &e) || e.Code != SyntaxError {
			t.Errorf("%s: DecodeContentHeader err = %v, want syntax error", name, err)
		}
		if PeekDeliveryMode(bad) != 0 && name != "trailing bytes" {
			t.Errorf("%s: PeekDeliveryMode = %d", name, PeekDeliveryMode(bad))
		}
	}
}

func TestPeekDeliveryMode(t *testing.T) {
	for _, tt := range []struct {
		p    Properties
		want uint8
	}{
		{Properties{}, 0},
		{Properties{DeliveryMode: 1}, 1},
		{Properties{DeliveryMode: 2, Priority: 5}, 2},
		{Properties{ContentType: "text/plain", ContentEncoding: "utf-8", Headers: Table{"a": Table{"b": []any{"c"}}}, DeliveryMode: 2}, 2},
		{Properties{ContentType: "text/plain", Headers: Table{"a": 1}, MessageID: "m"}, 0},
	} {
		raw := tt.p.AppendTo(nil)
		if got := PeekDeliveryMode(raw); got != tt.want {
			t.Errorf("%+v: PeekDeliveryMode = %d, want %d", tt.p, got, tt.want)
		}
	}
	if PeekDeliveryMode(nil) != 0 || PeekDeliveryMode([]byte{0x10, 0}) != 0 {
		t.Error("PeekDeliveryMode of malformed input is not 0")
	}
}

func TestDecodeContentHeader(t *testing.T) {
	props := fullProperties()
	raw := props.AppendTo(nil)
	payload := []byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x00}
	payload = append(payload, raw...)
	h, err := DecodeContentHeader(payload)
	if err != nil || h.ClassID != ClassBasic || h.Weight != 0 || h.BodySize != 1024 || !bytes.Equal(h.RawProps, raw) {
		t.Fatalf("got %+v, %v", h, err)
	}
	if &h.RawProps[0] != &payload[12] {
		t.Error("RawProps does not alias the payload")
	}
	_, err = DecodeContentHeader(payload[:13])
	var e *Error
	if !errors.As(err, &e) || e.Code != FrameError {
		t.Errorf("short header: err = %v, want frame error", err)
	}
}
