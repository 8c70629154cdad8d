package store

import (
	"encoding/binary"
	"errors"

	"github.com/warrenmq/warren/index"
)

// identityVersion is the first byte of an identity block. Part of the
// format, do not change.
const identityVersion = 1

// Identity flags. Part of the format, do not change.
const (
	identDurable    = 1
	identExclusive  = 2
	identAutoDelete = 4
)

// encodeIdentity is what every segment file of a queue carries in its
// header, so that the index can be rebuilt from the segments:
//
//	version u8 (= 1)
//	uvarint len, queue ID
//	uvarint len, vhost
//	uvarint len, queue name
//	u8 flags   durable=1 exclusive=2 auto-delete=4
//	uvarint len, arguments (the encoded AMQP field table, as in the index)
func encodeIdentity(def index.Queue) []byte {
	b := []byte{identityVersion}
	for _, s := range []string{def.ID, def.VHost, def.Name} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var f byte
	if def.Durable {
		f |= identDurable
	}
	if def.Exclusive {
		f |= identExclusive
	}
	if def.AutoDelete {
		f |= identAutoDelete
	}
	b = append(b, f)
	b = binary.AppendUvarint(b, uint64(len(def.Arguments)))
	return append(b, def.Arguments...)
}

var errBadIdentity = errors.New("store: bad identity block")

// decodeIdentity decodes an identity block, bounding every length.
func decodeIdentity(b []byte) (index.Queue, error) {
	var q index.Queue
	if len(b) == 0 || b[0] != identityVersion {
		return q, errBadIdentity
	}
	b = b[1:]
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	var parts [3]string
	for i := range parts {
		v, ok := next()
		if !ok {
			return q, errBadIdentity
		}
		parts[i] = string(v)
	}
	if len(b) < 1 {
		return q, errBadIdentity
	}
	f := b[0]
	b = b[1:]
	args, ok := next()
	if !ok || len(b) != 0 {
		return q, errBadIdentity
	}
	q.ID, q.VHost, q.Name = parts[0], parts[1], parts[2]
	q.Durable, q.Exclusive, q.AutoDelete = f&identDurable != 0, f&identExclusive != 0, f&identAutoDelete != 0
	if len(args) > 0 {
		q.Arguments = append([]byte(nil), args...)
	}
	return q, nil
}
