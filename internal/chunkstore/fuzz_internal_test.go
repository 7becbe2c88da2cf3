package chunkstore

import (
	"bytes"
	"errors"
	"testing"

	"coffer/internal/chunk"
)

// FuzzDecodeChunk feeds arbitrary stored records to the chunk decoder (the
// path every read of a pack takes after the trailer): with any
// compression, any raw length up to 1 MiB (the decoder's limit is
// MaxChunkSize; smaller keeps the fuzzer fast) and any ID, it must not
// panic, and must return ErrCorrupt unless the bytes decompress to
// exactly the raw length and hash to the ID.
func FuzzDecodeChunk(f *testing.F) {
	c, err := newCodec(LevelDefault)
	if err != nil {
		f.Fatal(err)
	}
	s := &Store{codec: c}
	for _, in := range [][]byte{[]byte("the quick brown fox"), bytes.Repeat([]byte("ab"), 4096), make([]byte, 64<<10)} {
		frame, err := c.encode(nil, in)
		if err != nil {
			f.Fatal(err)
		}
		id := chunk.Hash(in)
		f.Add(frame, uint32(len(in)), uint8(CompressionZstd), id[:])
		f.Add(in, uint32(len(in)), uint8(CompressionNone), id[:])
		f.Add(frame[:len(frame)/2], uint32(len(in)), uint8(CompressionZstd), id[:])
		f.Add(frame, uint32(len(in)+1), uint8(CompressionZstd), id[:])
	}
	f.Fuzz(func(t *testing.T, stored []byte, rawLen uint32, comp uint8, idb []byte) {
		var id chunk.ID
		copy(id[:], idb)
		e := trailerEntry{ID: id, Length: uint32(len(stored)), RawLength: rawLen % (1<<20 + 1), Compression: Compression(comp)}
		data, err := s.decodeInto(e, stored, "fuzz", nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if uint32(len(data)) != e.RawLength || chunk.Hash(data) != id {
			t.Fatalf("decoded %d bytes for raw length %d, hash match %v", len(data), e.RawLength, chunk.Hash(data) == id)
		}
	})
}
