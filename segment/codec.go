package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Shared zstd encoder and decoder; both are safe for concurrent EncodeAll and
// DecodeAll calls.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(2),
			zstd.WithLowerEncoderMem(true))
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(2),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(MaxChunkSize))
	})
	return zstdEnc, zstdDec, zstdErr
}

// chunkHeader is the decoded form of a chunk header.
type chunkHeader struct {
	crc, hcrc uint32
	codec     Codec
	first     uint64
	count     uint32
	rawLen    uint32
	storedLen uint32
}

func putChunkHeader(b []byte, h *chunkHeader) {
	copy(b[0:4], chunkMagic)
	b[12] = chunkVersion
	b[13] = byte(h.codec)
	binary.LittleEndian.PutUint16(b[14:], 0)
	binary.LittleEndian.PutUint64(b[16:], h.first)
	binary.LittleEndian.PutUint32(b[24:], h.count)
	binary.LittleEndian.PutUint32(b[28:], h.rawLen)
	binary.LittleEndian.PutUint32(b[32:], h.storedLen)
	binary.LittleEndian.PutUint32(b[36:], 0)
	h.hcrc = crc32.Checksum(b[12:chunkHeaderSize], castagnoli)
	binary.LittleEndian.PutUint32(b[8:], h.hcrc)
}

// parseChunkHeader validates everything in the header that can be checked
// without the payload.
func parseChunkHeader(b []byte) (chunkHeader, bool) {
	var h chunkHeader
	if len(b) < chunkHeaderSize || string(b[0:4]) != chunkMagic || b[12] != chunkVersion {
		return h, false
	}
	h.crc = binary.LittleEndian.Uint32(b[4:])
	h.hcrc = binary.LittleEndian.Uint32(b[8:])
	if crc32.Checksum(b[12:chunkHeaderSize], castagnoli) != h.hcrc {
		return h, false
	}
	h.codec = Codec(b[13])
	h.first = binary.LittleEndian.Uint64(b[16:])
	h.count = binary.LittleEndian.Uint32(b[24:])
	h.rawLen = binary.LittleEndian.Uint32(b[28:])
	h.storedLen = binary.LittleEndian.Uint32(b[32:])
	switch {
	case h.codec > CodecZstd,
		h.count == 0, h.first == 0,
		h.rawLen > MaxChunkSize, h.storedLen > h.rawLen,
		uint64(h.count) > uint64(h.rawLen),
		h.codec == CodecNone && h.storedLen != h.rawLen,
		h.first+uint64(h.count) < h.first:
		return h, false
	}
	return h, true
}

// chunkCRC computes the full chunk checksum over header fields and payload.
func chunkCRC(hdr, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[12:chunkHeaderSize])
	return crc32.Update(c, castagnoli, payload)
}

// encodeChunk compresses raw into dst[chunkHeaderSize:] and fills the header.
// It returns the whole chunk (header + payload), reusing dst.
func encodeChunk(dst []byte, raw []byte, codec Codec, first uint64, count uint32) ([]byte, error) {
	hdr, payload, err := encodeChunkParts(dst, raw, codec, first, count)
	if err != nil {
		return nil, err
	}
	if storedRaw(payload, raw) {
		return append(hdr, payload...), nil
	}
	return hdr[:chunkHeaderSize+len(payload)], nil
}

// storedRaw reports whether encodeChunkParts returned raw itself as the
// payload (rather than compressed bytes after the header).
func storedRaw(payload, raw []byte) bool {
	return len(payload) > 0 && len(raw) > 0 && &payload[0] == &raw[0]
}

// encodeChunkParts frames raw as one chunk. A compressed payload is written
// into dst right after the header, and hdr then spans both; a payload stored
// raw is raw itself, not copied, and hdr is the header alone, to be written
// before it.
func encodeChunkParts(dst []byte, raw []byte, codec Codec, first uint64, count uint32) (hdr, payload []byte, err error) {
	h := chunkHeader{codec: codec, first: first, count: count, rawLen: uint32(len(raw))}
	switch codec {
	case CodecS2:
		need := chunkHeaderSize + s2.MaxEncodedLen(len(raw))
		if cap(dst) < need {
			dst = make([]byte, need)
		}
		dst = dst[:need]
		payload = s2.Encode(dst[chunkHeaderSize:], raw)
	case CodecZstd:
		enc, _, err := zstdCodecs()
		if err != nil {
			return nil, nil, fmt.Errorf("segment: zstd: %w", err)
		}
		if cap(dst) < chunkHeaderSize {
			dst = make([]byte, chunkHeaderSize, chunkHeaderSize+len(raw))
		}
		out := enc.EncodeAll(raw, dst[:chunkHeaderSize])
		dst = out
		payload = out[chunkHeaderSize:]
	}
	if codec == CodecNone || len(payload) > len(raw)-len(raw)/8 {
		h.codec = CodecNone
		if cap(dst) < chunkHeaderSize {
			dst = make([]byte, chunkHeaderSize)
		}
		hdr, payload = dst[:chunkHeaderSize], raw
	} else {
		hdr = dst[:chunkHeaderSize+len(payload)]
	}
	h.storedLen = uint32(len(payload))
	putChunkHeader(hdr, &h)
	binary.LittleEndian.PutUint32(hdr[4:], chunkCRC(hdr[:chunkHeaderSize], payload))
	return hdr[:chunkHeaderSize], payload, nil
}

// decodePayload decodes a stored payload into dst (reused when large
// enough), checking the decoded length against the header.
func decodePayload(dst []byte, h *chunkHeader, payload []byte) ([]byte, error) {
	n := int(h.rawLen)
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	switch h.codec {
	case CodecNone:
		copy(dst, payload)
		return dst, nil
	case CodecS2:
		dl, err := s2.DecodedLen(payload)
		if err != nil || dl != n {
			return nil, ErrCorrupt
		}
		out, err := s2.Decode(dst, payload)
		if err != nil || len(out) != n {
			return nil, ErrCorrupt
		}
		return out, nil
	case CodecZstd:
		_, dec, err := zstdCodecs()
		if err != nil {
			return nil, fmt.Errorf("segment: zstd: %w", err)
		}
		out, err := dec.DecodeAll(payload, dst[:0])
		if err != nil || len(out) != n {
			return nil, ErrCorrupt
		}
		return out, nil
	}
	return nil, ErrCorrupt
}

func putFileHeader(b []byte, base uint64) {
	copy(b[0:4], fileMagic)
	b[4] = fileVersion
	b[5] = 0
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint64(b[8:], base)
	binary.LittleEndian.PutUint32(b[16:], 0)
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
}

func parseFileHeader(b []byte) (uint64, bool) {
	if len(b) < fileHeaderSize || string(b[0:4]) != fileMagic || b[4] != fileVersion {
		return 0, false
	}
	if crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8:]), true
}

// Record encoding helpers.

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// recordSize is the encoded size of r's body (after the leading length).
func recordBodySize(r *Record, tsDelta int64) int {
	zz := uint64(tsDelta<<1) ^ uint64(tsDelta>>63)
	return uvarintLen(zz) + 1 +
		uvarintLen(uint64(len(r.Exchange))) + len(r.Exchange) +
		uvarintLen(uint64(len(r.RoutingKey))) + len(r.RoutingKey) +
		uvarintLen(uint64(len(r.Props))) + len(r.Props) +
		uvarintLen(uint64(len(r.Body))) + len(r.Body)
}

func appendRecord(dst []byte, r *Record, tsDelta int64, n int) []byte {
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendVarint(dst, tsDelta)
	dst = append(dst, r.Flags)
	dst = binary.AppendUvarint(dst, uint64(len(r.Exchange)))
	dst = append(dst, r.Exchange...)
	dst = binary.AppendUvarint(dst, uint64(len(r.RoutingKey)))
	dst = append(dst, r.RoutingKey...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Props)))
	dst = append(dst, r.Props...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	dst = append(dst, r.Body...)
	return dst
}

// recordView is a decoded record whose slices alias the chunk buffer.
type recordView struct {
	ts       int64
	flags    uint8
	exchange []byte
	key      []byte
	props    []byte
	body     []byte
}

// nextRecord returns the length of the record at b[0:] (including its length
// prefix), or -1 if malformed.
func nextRecord(b []byte) int {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return -1
	}
	return k + int(n)
}

func parseRecord(b []byte, v *recordView) bool {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return false
	}
	b = b[k : k+int(n)]
	ts, k := binary.Varint(b)
	if k <= 0 || k >= len(b) {
		return false
	}
	v.ts = ts
	v.flags = b[k]
	b = b[k+1:]
	var ok bool
	if v.exchange, b, ok = lenPrefixed(b); !ok {
		return false
	}
	if v.key, b, ok = lenPrefixed(b); !ok {
		return false
	}
	if v.props, b, ok = lenPrefixed(b); !ok {
		return false
	}
	if v.body, b, ok = lenPrefixed(b); !ok {
		return false
	}
	return len(b) == 0
}

func lenPrefixed(b []byte) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	end := k + int(n)
	return b[k:end:end], b[end:], true
}
