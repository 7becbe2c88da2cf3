package chunkstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"coffer/internal/chunk"
)

// Pack format, version 1 (docs/design.md, "Packs"). All integers are
// little-endian.
//
//	header   8 bytes: "CFPK" | version u8 | 3 zero bytes
//	records  the stored bytes of each chunk, back to back
//	trailer  created i64 (Unix ns) | count u32 | count × entry
//	         entry (49 bytes): id [32] | offset u64 | stored u32 | raw u32 | compression u8
//	footer  16 bytes: trailer length u32 | CRC-32C(trailer) u32 | version u8 |
//	         3 zero bytes | "CFPT"
const (
	packVersion     = 1
	headerSize      = 8
	footerSize      = 16
	entrySize       = chunk.Size + 8 + 4 + 4 + 1
	trailerHeadSize = 8 + 4
	packPrefix      = "packs/"
)

var (
	headerMagic = [4]byte{'C', 'F', 'P', 'K'}
	footerMagic = [4]byte{'C', 'F', 'P', 'T'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// MaxChunkSize is the largest chunk Put accepts.
const MaxChunkSize = 16 << 20

// errFormat is wrapped by every pack decoding error.
var errFormat = errors.New("bad pack format")

func packHeader() []byte {
	h := make([]byte, headerSize)
	copy(h, headerMagic[:])
	h[4] = packVersion
	return h
}

// trailerEntry is what a pack trailer says about one chunk.
type trailerEntry struct {
	ID          chunk.ID
	Offset      int64
	Length      uint32
	RawLength   uint32
	Compression Compression
}

// packTrailer is the decoded trailer of a pack.
type packTrailer struct {
	Created int64
	Entries []trailerEntry
}

// appendTrailer appends the trailer and footer for entries to b.
func appendTrailer(b []byte, created int64, entries []trailerEntry) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint64(b, uint64(created))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Offset))
		b = binary.LittleEndian.AppendUint32(b, e.Length)
		b = binary.LittleEndian.AppendUint32(b, e.RawLength)
		b = append(b, byte(e.Compression))
	}
	tlen := len(b) - start
	sum := crc32.Checksum(b[start:], castagnoli)
	b = binary.LittleEndian.AppendUint32(b, uint32(tlen))
	b = binary.LittleEndian.AppendUint32(b, sum)
	b = append(b, packVersion, 0, 0, 0)
	b = append(b, footerMagic[:]...)
	return b
}

// decodeFooter returns the trailer length and checksum from the last
// footerSize bytes of a pack of packSize bytes.
func decodeFooter(f []byte, packSize int64) (tlen int64, sum uint32, err error) {
	if len(f) != footerSize {
		return 0, 0, fmt.Errorf("%w: footer is %d bytes", errFormat, len(f))
	}
	if [4]byte(f[12:16]) != footerMagic {
		return 0, 0, fmt.Errorf("%w: no footer magic", errFormat)
	}
	if f[8] != packVersion || f[9] != 0 || f[10] != 0 || f[11] != 0 {
		return 0, 0, fmt.Errorf("%w: unsupported version %d", errFormat, f[8])
	}
	tlen = int64(binary.LittleEndian.Uint32(f[0:4]))
	sum = binary.LittleEndian.Uint32(f[4:8])
	if tlen < trailerHeadSize || (tlen-trailerHeadSize)%entrySize != 0 {
		return 0, 0, fmt.Errorf("%w: trailer length %d", errFormat, tlen)
	}
	if headerSize+tlen+footerSize > packSize {
		return 0, 0, fmt.Errorf("%w: trailer length %d does not fit a %d-byte pack", errFormat, tlen, packSize)
	}
	return tlen, sum, nil
}

// decodeTrailer checks and decodes a trailer whose first byte is at
// trailerStart in the pack.
func decodeTrailer(t []byte, sum uint32, trailerStart int64) (packTrailer, error) {
	var pt packTrailer
	if got := crc32.Checksum(t, castagnoli); got != sum {
		return pt, fmt.Errorf("%w: trailer checksum %08x, footer says %08x", errFormat, got, sum)
	}
	if len(t) < trailerHeadSize {
		return pt, fmt.Errorf("%w: short trailer", errFormat)
	}
	pt.Created = int64(binary.LittleEndian.Uint64(t[0:8]))
	n := int64(binary.LittleEndian.Uint32(t[8:12]))
	if int64(len(t)) != trailerHeadSize+n*entrySize {
		return pt, fmt.Errorf("%w: trailer of %d bytes cannot hold %d entries", errFormat, len(t), n)
	}
	pt.Entries = make([]trailerEntry, 0, n)
	seen := make(map[chunk.ID]bool, n)
	next := int64(headerSize)
	for i := range n {
		b := t[trailerHeadSize+i*entrySize:]
		var e trailerEntry
		copy(e.ID[:], b[:chunk.Size])
		off := binary.LittleEndian.Uint64(b[32:40])
		e.Length = binary.LittleEndian.Uint32(b[40:44])
		e.RawLength = binary.LittleEndian.Uint32(b[44:48])
		e.Compression = Compression(b[48])
		if off > uint64(trailerStart) || int64(off) < next || int64(off)+int64(e.Length) > trailerStart {
			return pt, fmt.Errorf("%w: entry %d (%s) at %d+%d outside the records", errFormat, i, e.ID.Short(), off, e.Length)
		}
		e.Offset = int64(off)
		if e.RawLength > MaxChunkSize {
			return pt, fmt.Errorf("%w: entry %d (%s) raw length %d", errFormat, i, e.ID.Short(), e.RawLength)
		}
		switch e.Compression {
		case CompressionNone:
			if e.Length != e.RawLength {
				return pt, fmt.Errorf("%w: entry %d (%s) uncompressed but stored %d != raw %d", errFormat, i, e.ID.Short(), e.Length, e.RawLength)
			}
		case CompressionZstd:
			if e.Length == 0 {
				return pt, fmt.Errorf("%w: entry %d (%s) empty zstd frame", errFormat, i, e.ID.Short())
			}
		default:
			return pt, fmt.Errorf("%w: entry %d (%s) compression %d", errFormat, i, e.ID.Short(), e.Compression)
		}
		if seen[e.ID] {
			return pt, fmt.Errorf("%w: chunk %s listed twice", errFormat, e.ID.Short())
		}
		seen[e.ID] = true
		next = e.Offset + int64(e.Length)
		pt.Entries = append(pt.Entries, e)
	}
	return pt, nil
}

// decodePack checks the header, footer and trailer of a whole pack.
func decodePack(p []byte) (packTrailer, error) {
	size := int64(len(p))
	if size < headerSize+trailerHeadSize+footerSize {
		return packTrailer{}, fmt.Errorf("%w: %d bytes is too short", errFormat, size)
	}
	if [4]byte(p[0:4]) != headerMagic || p[4] != packVersion {
		return packTrailer{}, fmt.Errorf("%w: bad header", errFormat)
	}
	tlen, sum, err := decodeFooter(p[size-footerSize:], size)
	if err != nil {
		return packTrailer{}, err
	}
	start := size - footerSize - tlen
	return decodeTrailer(p[start:size-footerSize], sum, start)
}

// newPackName returns a fresh pack blob name that records its creation time:
// packs/<2 hex>/<16 hex Unix ns>-<16 hex random>. The shard is taken from
// the random part.
func newPackName(created time.Time) string {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	rnd := hex.EncodeToString(r[:])
	return fmt.Sprintf("%s%s/%016x-%s", packPrefix, rnd[:2], uint64(created.UnixNano()), rnd)
}

// packCreated parses the creation time out of a pack name.
func packCreated(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, packPrefix)
	if !ok {
		return time.Time{}, false
	}
	shard, base, ok := strings.Cut(rest, "/")
	if !ok || len(shard) != 2 {
		return time.Time{}, false
	}
	ts, rnd, ok := strings.Cut(base, "-")
	if !ok || len(ts) != 16 || len(rnd) != 16 || rnd[:2] != shard {
		return time.Time{}, false
	}
	ns, err := strconv.ParseUint(ts, 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)), true
}
