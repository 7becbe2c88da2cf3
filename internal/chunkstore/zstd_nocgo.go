//go:build !cgo

package chunkstore

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// zstdImpl names the zstd implementation this build uses (Stats, bench).
const zstdImpl = "klauspost/compress (pure Go)"

// codec compresses and decompresses chunk records as single zstd frames
// with a pure-Go implementation, for builds without a C compiler. Its
// frames are interchangeable with those of zstd_cgo.go.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec(l Level) (*codec, error) {
	lvl := zstd.SpeedFastest
	if l == LevelDefault {
		lvl = zstd.SpeedDefault
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(lvl),
		zstd.WithEncoderConcurrency(2*runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false), // chunks are checked against their ID
		zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxChunkSize))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec}, nil
}

// encode returns src compressed into dst's storage.
func (c *codec) encode(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// decode decompresses src, which must hold exactly rawLen bytes, into
// dst's storage (reallocated when too small).
func (c *codec) decode(dst, src []byte, rawLen int) ([]byte, error) {
	if cap(dst) < rawLen {
		dst = make([]byte, 0, rawLen)
	}
	out, err := c.dec.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, err
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("zstd frame holds %d bytes, its record says %d", len(out), rawLen)
	}
	return out, nil
}
