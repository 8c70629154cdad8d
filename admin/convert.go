package admin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/amqpwire"
)

// tableJSON renders an AMQP field table as RabbitMQ's API does: byte
// strings as strings, timestamps as seconds, nested tables as objects.
// A nil table is an empty object.
func tableJSON(t amqpwire.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = valueJSON(v)
	}
	return out
}

func valueJSON(v any) any {
	switch x := v.(type) {
	case amqpwire.Table:
		return tableJSON(x)
	case map[string]any:
		return tableJSON(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = valueJSON(e)
		}
		return out
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.Unix()
	case float32:
		return float64(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	case amqpwire.Decimal:
		return float64(x.Value) / math.Pow10(int(x.Scale))
	}
	return v
}

// jsonTable converts a decoded JSON object (numbers as json.Number) into
// an AMQP field table: integers become int64 ("long"), other numbers
// float64, objects tables, arrays arrays.
func jsonTable(m map[string]any) (amqpwire.Table, error) {
	if len(m) == 0 {
		return nil, nil
	}
	t := make(amqpwire.Table, len(m))
	for k, v := range m {
		x, err := jsonValue(v)
		if err != nil {
			return nil, fmt.Errorf("argument '%s': %w", k, err)
		}
		t[k] = x
	}
	return t, nil
}

func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string, bool:
		return x, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("bad number %s", x)
		}
		return f, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
		return x, nil
	case map[string]any:
		return jsonTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			y, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %v", v)
}

// propsJSON renders message properties as RabbitMQ's API does.
func propsJSON(p amqpwire.Properties) map[string]any {
	out := map[string]any{}
	if p.ContentType != "" {
		out["content_type"] = p.ContentType
	}
	if p.ContentEncoding != "" {
		out["content_encoding"] = p.ContentEncoding
	}
	if len(p.Headers) > 0 {
		out["headers"] = tableJSON(p.Headers)
	}
	if p.DeliveryMode != 0 {
		out["delivery_mode"] = p.DeliveryMode
	}
	if p.Priority != 0 {
		out["priority"] = p.Priority
	}
	if p.CorrelationID != "" {
		out["correlation_id"] = p.CorrelationID
	}
	if p.ReplyTo != "" {
		out["reply_to"] = p.ReplyTo
	}
	if p.Expiration != "" {
		out["expiration"] = p.Expiration
	}
	if p.MessageID != "" {
		out["message_id"] = p.MessageID
	}
	if !p.Timestamp.IsZero() {
		out["timestamp"] = p.Timestamp.Unix()
	}
	if p.Type != "" {
		out["type"] = p.Type
	}
	if p.UserID != "" {
		out["user_id"] = p.UserID
	}
	if p.AppID != "" {
		out["app_id"] = p.AppID
	}
	if p.ClusterID != "" {
		out["cluster_id"] = p.ClusterID
	}
	return out
}

// jsonProps reads message properties from RabbitMQ's JSON form.
func jsonProps(m map[string]any) (amqpwire.Properties, error) {
	var p amqpwire.Properties
	str := func(k string) (string, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return "", nil
		}
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		}
		return "", fmt.Errorf("property '%s' must be a string", k)
	}
	num := func(k string) (int64, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return 0, nil
		}
		switch x := v.(type) {
		case json.Number:
			return x.Int64()
		case string:
			return strconv.ParseInt(x, 10, 64)
		}
		return 0, fmt.Errorf("property '%s' must be a number", k)
	}
	var err error
	for _, f := range []struct {
		k   string
		dst *string
	}{{"content_type", &p.ContentType}, {"content_encoding", &p.ContentEncoding}, {"correlation_id", &p.CorrelationID},
		{"reply_to", &p.ReplyTo}, {"expiration", &p.Expiration}, {"message_id", &p.MessageID}, {"type", &p.Type},
		{"user_id", &p.UserID}, {"app_id", &p.AppID}, {"cluster_id", &p.ClusterID}} {
		if *f.dst, err = str(f.k); err != nil {
			return p, err
		}
	}
	dm, err := num("delivery_mode")
	if err != nil || dm < 0 || dm > 2 {
		return p, fmt.Errorf("property 'delivery_mode' must be 1 or 2")
	}
	p.DeliveryMode = uint8(dm)
	pr, err := num("priority")
	if err != nil || pr < 0 || pr > 255 {
		return p, fmt.Errorf("property 'priority' must be 0..255")
	}
	p.Priority = uint8(pr)
	ts, err := num("timestamp")
	if err != nil {
		return p, err
	}
	if ts != 0 {
		p.Timestamp = time.Unix(ts, 0)
	}
	if h, ok := m["headers"].(map[string]any); ok {
		if p.Headers, err = jsonTable(h); err != nil {
			return p, err
		}
	}
	return p, nil
}

// payloadJSON encodes a message body as the API's get does: as a string
// when it is UTF-8 and encoding is "auto", else base64.
func payloadJSON(body []byte, encoding string, truncate int) (string, string) {
	if truncate > 0 && len(body) > truncate {
		body = body[:truncate]
	}
	if encoding != "base64" && utf8.Valid(body) {
		return string(body), "string"
	}
	return base64.StdEncoding.EncodeToString(body), "base64"
}

// tagList parses RabbitMQ's tags: a comma-separated string or an array.
func tagList(v any) []string {
	var out []string
	add := func(s string) {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	switch x := v.(type) {
	case string:
		add(x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				add(s)
			}
		}
	}
	return out
}
