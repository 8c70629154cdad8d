package amqpwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fillMethod sets every field of m to a pseudo-random value of its type.
func fillMethod(t testing.TB, m Method, rng *rand.Rand) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(rng.IntN(2) == 1)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(rng.Uint64())
		case reflect.String:
			f.SetString(randString(rng, rng.IntN(40)))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{
				"s":      randString(rng, 8),
				"n":      int32(rng.Uint32()),
				"nested": Table{"b": rng.IntN(2) == 1, "l": int64(rng.Uint64())},
			}))
		default:
			t.Fatalf("%s: field %s has unhandled kind %s", m.Name(), v.Type().Field(i).Name, f.Kind())
		}
	}
}

func randString(rng *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.:"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// TestMethodRoundTrip encodes and decodes every generated method with random
// field values, through DecodeMethod and a reused MethodDecoder, and checks
// that every truncation of the encoding is a syntax error.
func TestMethodRoundTrip(t *testing.T) {
	if len(methodKeys) < 60 {
		t.Fatalf("only %d methods generated", len(methodKeys))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var dec MethodDecoder
	seen := map[string]bool{}
	for _, key := range methodKeys {
		classID, methodID := uint16(key>>16), uint16(key)
		for round := 0; round < 3; round++ {
			m := newMethod(classID, methodID)
			if m == nil {
				t.Fatalf("newMethod(%d, %d) = nil", classID, methodID)
			}
			if m.ClassID() != classID || m.MethodID() != methodID {
				t.Fatalf("%s ids = %d,%d want %d,%d", m.Name(), m.ClassID(), m.MethodID(), classID, methodID)
			}
			if methodName(classID, methodID) != m.Name() {
				t.Fatalf("methodName(%d,%d) = %q, want %q", classID, methodID, methodName(classID, methodID), m.Name())
			}
			seen[m.Name()] = true
			fillMethod(t, m, rng)
			enc := m.AppendTo([]byte("prefix"))
			if !bytes.HasPrefix(enc, []byte("prefix")) {
				t.Fatalf("%s: AppendTo lost the prefix", m.Name())
			}
			enc = enc[len("prefix"):]
			got, err := DecodeMethod(enc)
			if err != nil {
				t.Fatalf("%s: DecodeMethod: %v", m.Name(), err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s: DecodeMethod = %+v, want %+v", m.Name(), got, m)
			}
			got, err = dec.Decode(enc)
			if err != nil {
				t.Fatalf("%s: MethodDecoder: %v", m.Name(), err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s: MethodDecoder = %+v, want %+v", m.Name(), got, m)
			}
			if again := got.AppendTo(nil); !bytes.Equal(again, enc) {
				t.Fatalf("%s: re-encoding differs:\n%x\n%x", m.Name(), again, enc)
			}
			for n := 4; n < len(enc); n++ {
				_, err := DecodeMethod(enc[:n])
				var e *Error
				if !errors.As(err, &e) || e.Code != SyntaxError || e.ClassID != classID || e.MethodID != methodID {
					t.Fatalf("%s truncated to %d bytes: err = %v, want syntax error with ids", m.Name(), n, err)
				}
			}
			_, err = DecodeMethod(append(enc, 0))
			var e *Error
			if !errors.As(err, &e) || e.Code != SyntaxError {
				t.Fatalf("%s with a trailing byte: err = %v, want syntax error", m.Name(), err)
			}
		}
	}
	for _, name := range []string{
		"connection.start", "connection.start-ok", "connection.tune-ok", "connection.close",
		"connection.blocked", "connection.update-secret", "channel.open", "channel.flow-ok",
		"exchange.declare", "exchange.bind", "exchange.unbind-ok", "queue.declare-ok", "queue.unbind",
		"basic.publish", "basic.deliver", "basic.get-ok", "basic.nack", "basic.recover-async",
		"confirm.select", "confirm.select-ok", "tx.select", "tx.rollback-ok",
	} {
		if !seen[name] {
			t.Errorf("method %s not generated", name)
		}
	}
}

// TestMethodGolden checks hand-assembled encodings, including bit packing.
func TestMethodGolden(t *testing.T) {
	tests := []struct {
		m    Method
		want []byte
	}{
		{&BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true, Immediate: true},
			[]byte{0, 60, 0, 40, 0, 0, 2, 'e', 'x', 2, 'r', 'k', 0x03}},
		{&BasicAck{DeliveryTag: 0x0102030405060708, Multiple: true},
			[]byte{0, 60, 0, 80, 1, 2, 3, 4, 5, 6, 7, 8, 0x01}},
		{&BasicNack{DeliveryTag: 1, Multiple: false, Requeue: true},
			[]byte{0, 60, 0, 120, 0, 0, 0, 0, 0, 0, 0, 1, 0x02}},
		// passive, durable, exclusive, auto-delete, no-wait: bits 0..4.
		{&QueueDeclare{Queue: "q", Durable: true, AutoDelete: true, NoWait: true, Arguments: Table{}},
			[]byte{0, 50, 0, 10, 0, 0, 1, 'q', 0x1a, 0, 0, 0, 0}},
		{&ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
			[]byte{0, 10, 0, 30, 0x07, 0xff, 0, 2, 0, 0, 0, 60}},
		{&ConnectionClose{ReplyCode: 320, ReplyText: "x", FailedClassID: 60, FailedMethodID: 40},
			[]byte{0, 10, 0, 50, 0x01, 0x40, 1, 'x', 0, 60, 0, 40}},
		{&ConfirmSelect{NoWait: true}, []byte{0, 85, 0, 10, 1}},
		{&TxCommitOk{}, []byte{0, 90, 0, 21}},
	}
	for _, tt := range tests {
		if got := tt.m.AppendTo(nil); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: AppendTo = %x, want %x", tt.m.Name(), got, tt.want)
		}
		got, err := DecodeMethod(tt.want)
		if err != nil || !reflect.DeepEqual(got, tt.m) {
			t.Errorf("%s: DecodeMethod = %+v, %v", tt.m.Name(), got, err)
		}
	}
}

func TestMethodFlags(t *testing.T) {
	tests := []struct {
		m             Method
		name          string
		sync, content bool
	}{
		{&BasicPublish{}, "basic.publish", false, true},
		{&BasicDeliver{}, "basic.deliver", false, true},
		{&BasicGetOk{}, "basic.get-ok", true, true},
		{&BasicAck{}, "basic.ack", false, false},
		{&QueueDeclare{}, "queue.declare", true, false},
		{&ChannelFlowOk{}, "channel.flow-ok", false, false},
		{&ConnectionBlocked{}, "connection.blocked", false, false},
	}
	for _, tt := range tests {
		if tt.m.Name() != tt.name || tt.m.Synchronous() != tt.sync || tt.m.HasContent() != tt.content {
			t.Errorf("%s: name %q sync %v content %v, want %q %v %v", tt.name,
				tt.m.Name(), tt.m.Synchronous(), tt.m.HasContent(), tt.name, tt.sync, tt.content)
		}
	}
}

func TestDecodeMethodErrors(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		code    uint16
		class   uint16
		method  uint16
		text    string
	}{
		{"short", []byte{0, 60, 0}, FrameError, 0, 0, "FRAME_ERROR - "},
		{"unknown class", []byte{0, 99, 0, 10}, NotImplemented, 99, 10, "NOT_IMPLEMENTED - "},
		{"unknown method", []byte{0, 60, 0, 99}, NotImplemented, 60, 99, "NOT_IMPLEMENTED - "},
		{"truncated shortstr", []byte{0, 60, 0, 40, 0, 0, 5, 'a'}, SyntaxError, 60, 40, "SYNTAX_ERROR - truncated shortstr"},
		{"bad table type", []byte{0, 50, 0, 10, 0, 0, 1, 'q', 0, 0, 0, 0, 3, 1, 'k', 'Z'}, SyntaxError, 50, 10, "SYNTAX_ERROR - unknown field value type"},
	}
	for _, tt := range tests {
		for _, decode := range []func([]byte) (Method, error){DecodeMethod, new(MethodDecoder).Decode} {
			_, err := decode(tt.payload)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: err = %v, want *Error", tt.name, err)
			}
			if e.Code != tt.code || e.ClassID != tt.class || e.MethodID != tt.method || !strings.HasPrefix(e.Text, tt.text) {
				t.Errorf("%s: got %+v, want code %d ids %d,%d text %q...", tt.name, e, tt.code, tt.class, tt.method, tt.text)
			}
			if !e.Hard() {
				t.Errorf("%s: %d should be a hard error", tt.name, e.Code)
			}
		}
	}
}

func TestError(t *testing.T) {
	e := NewError(NotFound, ClassQueue, MethodQueueDeclare, "no queue '%s' in vhost '%s'", "q", "/")
	if e.Text != "NOT_FOUND - no queue 'q' in vhost '/'" {
		t.Errorf("Text = %q", e.Text)
	}
	if got, want := e.Error(), "amqpwire: 404 NOT_FOUND - no queue 'q' in vhost '/' (queue.declare)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if e.Hard() {
		t.Error("404 reported hard")
	}
	if !errors.Is(e, &Error{Code: NotFound}) || errors.Is(e, &Error{Code: AccessRefused}) {
		t.Error("errors.Is does not match by code")
	}
	soft := map[uint16]bool{ContentTooLarge: true, NoRoute: true, NoConsumers: true, AccessRefused: true,
		NotFound: true, ResourceLocked: true, PreconditionFailed: true, ReplySuccess: true}
	for _, c := range []uint16{200, 311, 312, 313, 320, 402, 403, 404, 405, 406, 501, 502, 503, 504, 505, 506, 530, 540, 541} {
		if (&Error{Code: c}).Hard() == soft[c] {
			t.Errorf("code %d: Hard() = %v", c, !soft[c])
		}
		if ReplyText(c) == "" {
			t.Errorf("ReplyText(%d) is empty", c)
		}
	}
	for code, want := range map[uint16]string{404: "NOT_FOUND", 406: "PRECONDITION_FAILED", 540: "NOT_IMPLEMENTED", 320: "CONNECTION_FORCED", 999: ""} {
		if got := ReplyText(code); got != want {
			t.Errorf("ReplyText(%d) = %q, want %q", code, got, want)
		}
	}
	if got := NewError(999, 0, 0, "odd").Error(); got != "amqpwire: 999 REPLY_999 - odd" {
		t.Errorf("unknown code Error() = %q", got)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	r := NewReader(appendTimestamp(nil, ts))
	if got := r.Timestamp(); !got.Equal(ts) || r.Err() != nil {
		t.Errorf("Timestamp = %v, %v", got, r.Err())
	}
}
