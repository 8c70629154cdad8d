package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

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
	version   uint8
	codec     Codec
	first     uint64
	count     uint32
	rawLen    uint32
	storedLen uint32
	// transient counts the records without FlagPersistent (version 2;
	// unknown in version 1 chunks).
	transient uint32
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
	binary.LittleEndian.PutUint32(b[36:], h.transient)
	h.hcrc = crc32.Checksum(b[12:chunkHeaderSize], castagnoli)
	binary.LittleEndian.PutUint32(b[8:], h.hcrc)
}

// parseChunkHeader validates everything in the header that can be checked
// without the payload.
func parseChunkHeader(b []byte) (chunkHeader, bool) {
	var h chunkHeader
	if len(b) < chunkHeaderSize || string(b[0:4]) != chunkMagic || (b[12] != chunkVersion1 && b[12] != chunkVersion) {
		return h, false
	}
	h.version = b[12]
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
	if h.version >= 2 {
		h.transient = binary.LittleEndian.Uint32(b[36:])
	}
	switch {
	case h.codec > CodecZstd,
		h.count == 0, h.first == 0,
		h.rawLen > MaxChunkSize, h.storedLen > h.rawLen,
		uint64(h.count) > uint64(h.rawLen),
		h.codec == CodecNone && h.storedLen != h.rawLen,
		h.first+uint64(h.count) < h.first,
		h.transient > h.count:
		return h, false
	}
	return h, true
}

// chunkCRC computes the full chunk checksum over header fields and payload.
func chunkCRC(hdr, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[12:chunkHeaderSize])
	return crc32.Update(c, castagnoli, payload)
}

// encodeChunk frames raw (count records from first, none of them external)
// as one chunk, compressed with codec unless that saves too little, and
// returns the whole chunk, reusing dst.
func encodeChunk(dst []byte, raw []byte, codec Codec, first uint64, count uint32) ([]byte, error) {
	p := piece{first: first, count: count, raw: raw}
	var e encoded
	dst, err := e.encode(dst, &p, codec)
	if err != nil {
		return nil, err
	}
	out := dst[:0:0]
	for _, b := range e.parts[:e.n] {
		out = append(out, b...)
	}
	return out, nil
}

// encoded is one chunk ready to write: its header and payload as up to
// three parts written back to back. A compressed payload follows the header
// in the caller's scratch buffer; a payload stored raw is the piece's own
// bytes (and external body), not copied.
type encoded struct {
	parts [3][]byte
	n     int
	size  int
	// stored raw although compression was asked for
	raw bool
	crc uint32
}

// sampleSize is how much of a large body is compressed to decide whether
// compressing the whole is worth it.
const sampleSize = 32 << 10

// encode frames p as one chunk. scratch is reused for the header and a
// compressed payload; the (possibly grown) scratch is returned.
func (e *encoded) encode(scratch []byte, p *piece, codec Codec) ([]byte, error) {
	rawLen := p.rawLen()
	h := chunkHeader{codec: codec, first: p.first, count: p.count, rawLen: uint32(rawLen), transient: p.transient}
	if codec != CodecNone && len(p.body) > 0 {
		// A large external body: try a sample first, so that incompressible
		// data is neither copied nor compressed.
		if !compressible(p.body[:min(len(p.body), sampleSize)], &scratch) {
			codec = CodecNone
			e.raw = true
		}
	}
	var payload []byte
	if codec != CodecNone {
		src := p.raw
		if len(p.body) > 0 {
			// Compressing needs the record contiguous: one copy.
			buf := getBuf(rawLen)
			src = append(append(buf[:0], p.raw...), p.body...)
			defer putBuf(src)
		}
		switch codec {
		case CodecS2:
			need := chunkHeaderSize + s2.MaxEncodedLen(len(src))
			if cap(scratch) < need {
				scratch = make([]byte, need)
			}
			scratch = scratch[:need]
			payload = s2.Encode(scratch[chunkHeaderSize:], src)
		case CodecZstd:
			enc, _, err := zstdCodecs()
			if err != nil {
				return scratch, fmt.Errorf("segment: zstd: %w", err)
			}
			if cap(scratch) < chunkHeaderSize {
				scratch = make([]byte, chunkHeaderSize, chunkHeaderSize+len(src))
			}
			scratch = enc.EncodeAll(src, scratch[:chunkHeaderSize])
			payload = scratch[chunkHeaderSize:]
		}
		if len(payload) > rawLen-rawLen/8 {
			payload = nil
			codec = CodecNone
			e.raw = true
		}
	}
	if cap(scratch) < chunkHeaderSize {
		scratch = make([]byte, chunkHeaderSize, 4<<10)
	}
	h.codec = codec
	hdr := scratch[:chunkHeaderSize]
	if codec != CodecNone {
		h.storedLen = uint32(len(payload))
		putChunkHeader(hdr, &h)
		h.crc = chunkCRC(hdr, payload)
		binary.LittleEndian.PutUint32(hdr[4:], h.crc)
		e.parts[0], e.n = scratch[:chunkHeaderSize+len(payload)], 1
	} else {
		h.storedLen = uint32(rawLen)
		putChunkHeader(hdr, &h)
		c := crc32.Update(0, castagnoli, hdr[12:chunkHeaderSize])
		c = crc32.Update(c, castagnoli, p.raw)
		c = crc32.Update(c, castagnoli, p.body)
		h.crc = c
		binary.LittleEndian.PutUint32(hdr[4:], c)
		e.parts[0], e.parts[1], e.n = hdr, p.raw, 2
		if len(p.body) > 0 {
			e.parts[2], e.n = p.body, 3
		}
	}
	e.crc = h.crc
	e.size = chunkHeaderSize + int(h.storedLen)
	return scratch, nil
}

// compressible reports whether s2 shrinks sample by at least 1/8.
func compressible(sample []byte, scratch *[]byte) bool {
	need := s2.MaxEncodedLen(len(sample))
	if cap(*scratch) < need {
		*scratch = make([]byte, need)
	}
	out := s2.Encode((*scratch)[:need], sample)
	return len(out) <= len(sample)-len(sample)/8
}

// bufPool recycles the large scratch buffers of compression and reads, so
// that an idle log holds none.
var bufPool sync.Pool

func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	} else if ok {
		bufPool.Put(b)
	}
	return make([]byte, n, max(n, 64<<10))
}

func putBuf(b []byte) {
	if cap(b) == 0 || cap(b) > 2*DefaultChunkSize+chunkHeaderSize+s2MaxOverhead {
		return // do not keep the buffers of oversized chunks
	}
	b = b[:0]
	bufPool.Put(&b)
}

// s2MaxOverhead bounds what s2 adds to an incompressible block.
const s2MaxOverhead = 64 << 10

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

// appendFileHeader appends a version-2 file header: the fixed 24 bytes
// followed by the identity block (length, bytes, CRC32C).
func appendFileHeader(dst []byte, base uint64, identity []byte) []byte {
	var b [fileHeaderSize]byte
	copy(b[0:4], fileMagic)
	b[4] = fileVersion
	b[5] = 0
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint64(b[8:], base)
	binary.LittleEndian.PutUint32(b[16:], 0)
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	dst = append(dst, b[:]...)
	n := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(identity)))
	dst = append(dst, identity...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[n:], castagnoli))
}

// fileHeaderLen is the size of a version-2 header with the given identity.
func fileHeaderLen(identity []byte) int64 { return fileHeaderSize + 8 + int64(len(identity)) }

// fileHeader is a decoded file header.
type fileHeader struct {
	base     uint64
	version  uint8
	size     int64 // where the first chunk starts
	identity []byte
}

// readFileHeader reads and checks the header of a segment file. ok is false
// for a damaged or foreign header; err is for I/O errors only.
func readFileHeader(f vfs.File, fileSize int64) (fileHeader, bool, error) {
	var fh fileHeader
	var b [fileHeaderSize + 4]byte
	n, err := f.ReadAt(b[:min(int64(len(b)), fileSize)], 0)
	if err != nil && err != io.EOF {
		return fh, false, err
	}
	if n < fileHeaderSize || string(b[0:4]) != fileMagic {
		return fh, false, nil
	}
	if crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]) {
		return fh, false, nil
	}
	fh.version = b[4]
	fh.base = binary.LittleEndian.Uint64(b[8:])
	switch fh.version {
	case fileVersion1:
		fh.size = fileHeaderSize
		return fh, true, nil
	case fileVersion:
	default:
		return fh, false, nil
	}
	if n < len(b) {
		return fh, false, nil
	}
	l := binary.LittleEndian.Uint32(b[fileHeaderSize:])
	if l > maxIdentity || fileHeaderSize+8+int64(l) > fileSize {
		return fh, false, nil
	}
	rest := make([]byte, 4+l+4)
	copy(rest, b[fileHeaderSize:])
	if _, err := f.ReadAt(rest[4:], fileHeaderSize+4); err != nil && err != io.EOF {
		return fh, false, err
	}
	if crc32.Checksum(rest[:4+l], castagnoli) != binary.LittleEndian.Uint32(rest[4+l:]) {
		return fh, false, nil
	}
	if l > 0 {
		fh.identity = rest[4 : 4+l : 4+l]
	}
	fh.size = fileHeaderSize + 8 + int64(l)
	return fh, true, nil
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

// appendRecordPrefix appends r's encoding up to, not including, the body
// bytes (which follow it on disk).
func appendRecordPrefix(dst []byte, r *Record, tsDelta int64, n int) []byte {
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendVarint(dst, tsDelta)
	dst = append(dst, r.Flags)
	dst = binary.AppendUvarint(dst, uint64(len(r.Exchange)))
	dst = append(dst, r.Exchange...)
	dst = binary.AppendUvarint(dst, uint64(len(r.RoutingKey)))
	dst = append(dst, r.RoutingKey...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Props)))
	dst = append(dst, r.Props...)
	return binary.AppendUvarint(dst, uint64(len(r.Body)))
}

// parseRecordSplit decodes a record whose encoding is prefix followed by
// body (an external record not yet written).
func parseRecordSplit(prefix, body []byte, v *recordView) bool {
	n, k := binary.Uvarint(prefix)
	if k <= 0 || n != uint64(len(prefix)-k+len(body)) {
		return false
	}
	b := prefix[k:]
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
	bl, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) || bl != uint64(len(body)) {
		return false
	}
	v.body = body
	return true
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
