package blockdev

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"

	"coffer/internal/chunk"
)

// volState is the local state file of a volume (docs/volumes.md, "Volume
// state file"):
//
//	"CBVS" | version u8 | flags u8 (1 clean, 2 hydrating, 4 written units) | 2 reserved
//	| block size u32 | reserved u32 | nblocks u64 | hydrate-from record ID [32]
//	| dirty bitmap ceil(nblocks/8) | hydrated bitmap ceil(nblocks/8) if hydrating
//	| count u32, then count × (block u64, units u64) if flag 4
//	| CRC-32C of everything before, u32 LE
type volState struct {
	Clean       bool
	Hydrating   bool
	BlockSize   int64
	NBlocks     int64
	HydrateFrom chunk.ID
	Dirty       *bitset
	Hydrated    *bitset
	// Written are the units written into the file of blocks not hydrated
	// yet (hydration.written); only while hydrating.
	Written map[int64]uint64
}

const (
	stateMagic     = "CBVS"
	flagClean      = 1
	flagHydrating  = 2
	flagWritten    = 4
	stateHeaderLen = 56
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeState(s *volState) []byte {
	out := make([]byte, 0, stateHeaderLen+2*(s.NBlocks+7)/8+4)
	out = append(out, stateMagic...)
	var flags byte
	if s.Clean {
		flags |= flagClean
	}
	if s.Hydrating {
		flags |= flagHydrating
		if len(s.Written) > 0 {
			flags |= flagWritten
		}
	}
	out = append(out, formatVersion, flags, 0, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(s.BlockSize))
	out = binary.LittleEndian.AppendUint32(out, 0)
	out = binary.LittleEndian.AppendUint64(out, uint64(s.NBlocks))
	out = append(out, s.HydrateFrom[:]...)
	d := s.Dirty.clone()
	d.grow(s.NBlocks)
	d.n = s.NBlocks
	out = append(out, d.bytes()...)
	if s.Hydrating {
		h := s.Hydrated.clone()
		h.grow(s.NBlocks)
		h.n = s.NBlocks
		out = append(out, h.bytes()...)
		if len(s.Written) > 0 {
			out = binary.LittleEndian.AppendUint32(out, uint32(len(s.Written)))
			for _, b := range slices.Sorted(maps.Keys(s.Written)) {
				out = binary.LittleEndian.AppendUint64(out, uint64(b))
				out = binary.LittleEndian.AppendUint64(out, s.Written[b])
			}
		}
	}
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

func decodeState(b []byte) (*volState, error) {
	fail := func(what string) (*volState, error) {
		return nil, fmt.Errorf("decode volume state: %s: %w", what, ErrFormat)
	}
	if len(b) < stateHeaderLen+4 || string(b[:4]) != stateMagic {
		return fail("bad magic")
	}
	if b[4] != formatVersion {
		return fail(fmt.Sprintf("unsupported version %d", b[4]))
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return fail("checksum mismatch")
	}
	s := &volState{
		Clean:     b[5]&flagClean != 0,
		Hydrating: b[5]&flagHydrating != 0,
		BlockSize: int64(binary.LittleEndian.Uint32(b[8:])),
		NBlocks:   int64(binary.LittleEndian.Uint64(b[16:])),
	}
	copy(s.HydrateFrom[:], b[24:56])
	if s.NBlocks < 0 || s.NBlocks > maxVolumeSize/4096 {
		return fail("block count out of range")
	}
	bm := (s.NBlocks + 7) / 8
	want := stateHeaderLen + bm
	if s.Hydrating {
		want += bm
	}
	written := b[5]&flagWritten != 0
	if written && !s.Hydrating {
		return fail("written units without hydration")
	}
	var units []byte
	if written {
		if int64(len(body)) < want+4 {
			return fail("length does not match block count")
		}
		n := int64(binary.LittleEndian.Uint32(body[want:]))
		if n == 0 || n > s.NBlocks || int64(len(body)) != want+4+16*n {
			return fail("written units do not match their count")
		}
		units = body[want+4:]
	} else if int64(len(body)) != want {
		return fail("length does not match block count")
	}
	s.Dirty = bitsetFromBytes(s.NBlocks, body[stateHeaderLen:stateHeaderLen+bm])
	if s.Hydrating {
		s.Hydrated = bitsetFromBytes(s.NBlocks, body[stateHeaderLen+bm:stateHeaderLen+2*bm])
	}
	if written {
		s.Written = make(map[int64]uint64, len(units)/16)
		for ; len(units) > 0; units = units[16:] {
			blk, mask := binary.LittleEndian.Uint64(units), binary.LittleEndian.Uint64(units[8:])
			if blk >= uint64(s.NBlocks) || mask == 0 || s.Hydrated.has(int64(blk)) {
				return fail("written units of a block out of range or hydrated")
			}
			if _, dup := s.Written[int64(blk)]; dup {
				return fail("written units of a block twice")
			}
			s.Written[int64(blk)] = mask
		}
	}
	return s, nil
}
