package broker

import (
	"bytes"
	"encoding/binary"

	"github.com/warrenmq/warren/amqpwire"
	"github.com/warrenmq/warren/router"
)

// Sender-selected distribution: the CC and BCC headers (arrays of long
// strings) name routing keys a message is routed with besides its own;
// BCC is removed from the message before it is stored, so consumers never
// see it. A CC or BCC of any other type is refused as RabbitMQ refuses it
// (406 "invalid message").

// mayHaveCC reports cheaply whether raw properties can carry a CC or BCC
// header: headers are present and the bytes of one of the names are there.
func mayHaveCC(props []byte) bool {
	if len(props) < 2 || binary.BigEndian.Uint16(props)&amqpwire.FlagHeaders == 0 {
		return false
	}
	return bytes.Contains(props, []byte("\x02CC")) || bytes.Contains(props, []byte("\x03BCC"))
}

// routingHeaders reads CC and BCC. err is the 406 for a header of another
// type than an array; non-string elements are ignored, as RabbitMQ does.
func routingHeaders(h amqpwire.Table, m amqpwire.Method) (cc, bcc []string, err error) {
	for _, name := range []string{"CC", "BCC"} {
		v, ok := h[name]
		if !ok {
			continue
		}
		arr, isArr := v.([]any)
		if !isArr {
			return nil, nil, amqpErr(amqpwire.PreconditionFailed, m, "invalid message: {unacceptable_type_in_header,%s,%s}", erlString(name), erlType(v))
		}
		for _, e := range arr {
			if s, ok := e.(string); ok {
				if name == "CC" {
					cc = append(cc, s)
				} else {
					bcc = append(bcc, s)
				}
			}
		}
	}
	return cc, bcc, nil
}

// ccOf returns a stored message's CC keys (BCC is gone by then).
func ccOf(props []byte) []string {
	if !mayHaveCC(props) {
		return nil
	}
	p, err := amqpwire.DecodeProperties(props)
	if err != nil {
		return nil
	}
	cc, _, _ := routingHeaders(p.Headers, nil)
	return cc
}

// routeKeys routes a message with its routing key and extra keys (CC and
// BCC) on snap.
func (vh *vhost) routeKeys(snap *router.Snapshot, exchange, key string, extra []string, props []byte, dst []string) []string {
	var headers map[string]any
	if vh.headersInUse.Load() {
		if p, err := amqpwire.DecodeProperties(props); err == nil {
			headers = p.Headers
		}
	}
	keys := append([]string{key}, extra...)
	dst, _ = snap.RouteKeys(exchange, keys, headers, dst)
	return dst
}

// senderSelected checks a publish's CC and BCC headers and returns the
// extra routing keys, and the properties to store (without BCC; appended
// to arena when rewritten).
func senderSelected(props []byte, m amqpwire.Method, arena []byte) (extra []string, newProps, newArena []byte, err error) {
	if !mayHaveCC(props) {
		return nil, props, arena, nil
	}
	p, err := amqpwire.DecodeProperties(props)
	if err != nil {
		return nil, props, arena, nil // validated on receipt; not ours to refuse here
	}
	cc, bcc, err := routingHeaders(p.Headers, m)
	if err != nil {
		return nil, props, arena, err
	}
	extra = append(cc, bcc...)
	if _, ok := p.Headers["BCC"]; !ok {
		return extra, props, arena, nil
	}
	delete(p.Headers, "BCC")
	start := len(arena)
	arena = p.AppendTo(arena)
	return extra, arena[start:len(arena):len(arena)], arena, nil
}
