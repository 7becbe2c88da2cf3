package blockdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"coffer/internal/chunk"
)

// Manifest formats (docs/volumes.md, "Manifests"). Both encodings are stored
// as chunks, so their integrity is the chunk store's hash check; the decoders
// still validate every field because a decoder must never panic or allocate
// without bound on hostile input.

// EntriesPerPage is the number of block entries in a full index page.
const EntriesPerPage = 256

const (
	pageMagic     = "CBPG"
	recordMagic   = "CBSR"
	formatVersion = 1

	// maxPageEntries bounds what the page decoder accepts.
	maxPageEntries = 1 << 16
	// maxIDLen bounds volume and snapshot IDs.
	maxIDLen = 128
	// maxVolumeSize bounds the geometry the record decoder accepts (1 PiB).
	maxVolumeSize = 1 << 50
)

// ErrFormat is returned (wrapped) when a manifest page or snapshot record
// cannot be decoded.
var ErrFormat = errors.New("invalid manifest encoding")

// encodePage encodes the entries of one index page:
//
//	"CBPG" | version u8 | flags u8 (0) | count u16 LE (entries; 0 means 65536)
//	| presence bitmap, ceil(count/8) bytes, bit i set ⇔ entry i is a chunk
//	| 32-byte chunk ID for each present entry, in order
//
// A zero ID (a hole) is represented by a clear presence bit.
func encodePage(entries []chunk.ID) []byte {
	n := len(entries)
	present := 0
	for _, e := range entries {
		if !e.IsZero() {
			present++
		}
	}
	bm := (n + 7) / 8
	out := make([]byte, 8+bm+present*chunk.Size)
	copy(out, pageMagic)
	out[4] = formatVersion
	binary.LittleEndian.PutUint16(out[6:], uint16(n))
	p := 8 + bm
	for i, e := range entries {
		if e.IsZero() {
			continue
		}
		out[8+i/8] |= 1 << uint(i%8)
		copy(out[p:], e[:])
		p += chunk.Size
	}
	return out
}

// decodePage is the inverse of encodePage.
func decodePage(b []byte) ([]chunk.ID, error) {
	if len(b) < 8 || string(b[:4]) != pageMagic {
		return nil, fmt.Errorf("decode page: bad magic: %w", ErrFormat)
	}
	if b[4] != formatVersion {
		return nil, fmt.Errorf("decode page: unsupported version %d: %w", b[4], ErrFormat)
	}
	if b[5] != 0 {
		return nil, fmt.Errorf("decode page: unknown flags %#x: %w", b[5], ErrFormat)
	}
	n := int(binary.LittleEndian.Uint16(b[6:]))
	if n == 0 {
		n = maxPageEntries
	}
	bm := (n + 7) / 8
	if len(b) < 8+bm {
		return nil, fmt.Errorf("decode page: short bitmap: %w", ErrFormat)
	}
	bitmap := b[8 : 8+bm]
	present := 0
	for _, x := range bitmap {
		present += bits.OnesCount8(x)
	}
	if n%8 != 0 && bitmap[bm-1]>>uint(n%8) != 0 {
		return nil, fmt.Errorf("decode page: bits set past count: %w", ErrFormat)
	}
	if len(b) != 8+bm+present*chunk.Size {
		return nil, fmt.Errorf("decode page: length %d does not match %d present entries: %w", len(b), present, ErrFormat)
	}
	entries := make([]chunk.ID, n)
	p := 8 + bm
	for i := range entries {
		if bitmap[i/8]&(1<<uint(i%8)) == 0 {
			continue
		}
		copy(entries[i][:], b[p:])
		if entries[i].IsZero() {
			return nil, fmt.Errorf("decode page: entry %d is the zero ID: %w", i, ErrFormat)
		}
		p += chunk.Size
	}
	return entries, nil
}

// record is a snapshot record: the root of a snapshot's Merkle tree.
type record struct {
	Size      int64
	BlockSize int64
	Created   time.Time
	Volume    string
	Parent    string     // parent snapshot ID, "" for none
	Pages     []chunk.ID // zero ID: a page of holes only (not stored)
}

func (r *record) nblocks() int64 { return (r.Size + r.BlockSize - 1) / r.BlockSize }

func pagesFor(nblocks int64) int64 { return (nblocks + EntriesPerPage - 1) / EntriesPerPage }

// pageLen is the number of entries in page p of a record with nblocks blocks.
func pageLen(nblocks, p int64) int {
	return int(min(EntriesPerPage, nblocks-p*EntriesPerPage))
}

// encodeRecord encodes a snapshot record:
//
//	"CBSR" | version u8 | 3 reserved zero bytes
//	| size u64 | block size u32 | entries per page u32 | created unix ns i64
//	| volume ID len u16 | volume ID | parent ID len u16 | parent ID
//	| page count u32 | 32-byte page ID × page count
func encodeRecord(r *record) []byte {
	out := make([]byte, 0, 40+len(r.Volume)+len(r.Parent)+len(r.Pages)*chunk.Size)
	out = append(out, recordMagic...)
	out = append(out, formatVersion, 0, 0, 0)
	out = binary.LittleEndian.AppendUint64(out, uint64(r.Size))
	out = binary.LittleEndian.AppendUint32(out, uint32(r.BlockSize))
	out = binary.LittleEndian.AppendUint32(out, EntriesPerPage)
	out = binary.LittleEndian.AppendUint64(out, uint64(r.Created.UnixNano()))
	out = binary.LittleEndian.AppendUint16(out, uint16(len(r.Volume)))
	out = append(out, r.Volume...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(r.Parent)))
	out = append(out, r.Parent...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(r.Pages)))
	for _, p := range r.Pages {
		out = append(out, p[:]...)
	}
	return out
}

// decodeRecord is the inverse of encodeRecord.
func decodeRecord(b []byte) (*record, error) {
	fail := func(what string) (*record, error) {
		return nil, fmt.Errorf("decode snapshot record: %s: %w", what, ErrFormat)
	}
	if len(b) < 36 || string(b[:4]) != recordMagic {
		return fail("bad magic")
	}
	if b[4] != formatVersion {
		return fail(fmt.Sprintf("unsupported version %d", b[4]))
	}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return fail("reserved bytes set")
	}
	r := &record{}
	size := binary.LittleEndian.Uint64(b[8:])
	bs := binary.LittleEndian.Uint32(b[16:])
	epp := binary.LittleEndian.Uint32(b[20:])
	r.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[24:]))).UTC()
	if size == 0 || size > maxVolumeSize {
		return fail("size out of range")
	}
	if err := checkBlockSize(int64(bs)); err != nil {
		return fail(err.Error())
	}
	if epp != EntriesPerPage {
		return fail(fmt.Sprintf("unsupported page size %d", epp))
	}
	r.Size, r.BlockSize = int64(size), int64(bs)
	rest := b[32:]
	str := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(binary.LittleEndian.Uint16(rest))
		if n > maxIDLen || len(rest) < 2+n {
			return "", false
		}
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	var ok bool
	if r.Volume, ok = str(); !ok || validID(r.Volume) != nil {
		return fail("bad volume ID")
	}
	if r.Parent, ok = str(); !ok || (r.Parent != "" && validID(r.Parent) != nil) {
		return fail("bad parent ID")
	}
	if len(rest) < 4 {
		return fail("missing page count")
	}
	np := int64(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if np != pagesFor(r.nblocks()) {
		return fail(fmt.Sprintf("page count %d does not match geometry", np))
	}
	if int64(len(rest)) != np*chunk.Size {
		return fail("length does not match page count")
	}
	r.Pages = make([]chunk.ID, np)
	for i := range r.Pages {
		copy(r.Pages[i][:], rest[i*chunk.Size:])
	}
	return r, nil
}
