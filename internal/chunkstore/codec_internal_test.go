package chunkstore

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// codecInputs are chunk-like inputs: text, a mix of runs and noise, and
// pure noise, at sizes from the smallest compressed chunk to MaxChunkSize.
func codecInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 1500)
	mixed := make([]byte, 0, 64<<10)
	for len(mixed) < 64<<10 {
		mixed = append(mixed, bytes.Repeat([]byte{byte(rng.Uint32())}, rng.IntN(300))...)
		mixed = append(mixed, noise(rng.IntN(200))...)
	}
	return map[string][]byte{
		"text-64B":   text[:64],
		"text":       text,
		"mixed-64K":  mixed[:64<<10],
		"noise-4K":   noise(4 << 10),
		"zeros-max":  make([]byte, MaxChunkSize),
		"mixed-half": bytes.Repeat(mixed[:32<<10], MaxChunkSize/(64<<10)),
	}
}

// TestCodecInterchangeable checks that this build's codec and the pure-Go
// zstd implementation read each other's frames: a repository written by a
// cgo build must be readable by a build without cgo, and the reverse.
func TestCodecInterchangeable(t *testing.T) {
	for _, l := range []Level{LevelFastest, LevelDefault} {
		c, err := newCodec(l)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		for name, in := range codecInputs() {
			frame, err := c.encode(nil, in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.DecodeAll(frame, nil)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("level %d %s: pure-Go decoder on this codec's frame: err %v, equal %v", l, name, err, bytes.Equal(got, in))
			}
			got, err = c.decode(nil, enc.EncodeAll(in, nil), len(in))
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("level %d %s: this codec on a pure-Go frame: err %v, equal %v", l, name, err, bytes.Equal(got, in))
			}
			// Reused buffers of every size give the same result.
			scratch := make([]byte, 0, 100)
			got, err = c.decode(scratch, frame, len(in))
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("level %d %s: decode into a small buffer: err %v", l, name, err)
			}
		}
	}
}

// TestCodecRejectsBadFrames checks that damaged frames and wrong lengths
// are errors or, for damage zstd cannot see (a flipped literal: frames
// carry no checksum, the chunk ID is the check), a result of exactly the
// recorded length; never a panic or a short result.
func TestCodecRejectsBadFrames(t *testing.T) {
	c, err := newCodec(LevelFastest)
	if err != nil {
		t.Fatal(err)
	}
	in := codecInputs()["text"]
	frame, err := c.encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		frame  []byte
		rawLen int
	}{
		"empty frame":      {nil, len(in)},
		"zero length":      {frame, 0},
		"length too short": {frame, len(in) - 1},
		"length too long":  {frame, len(in) + 1},
		"truncated":        {frame[:len(frame)/2], len(in)},
		"not zstd":         {[]byte("definitely not a zstd frame"), len(in)},
	} {
		if got, err := c.decode(nil, tc.frame, tc.rawLen); err == nil {
			t.Errorf("%s: no error (%d bytes)", name, len(got))
		}
	}
	for i := range frame {
		bad := bytes.Clone(frame)
		bad[i] ^= 0xff
		if got, err := c.decode(nil, bad, len(in)); err == nil && len(got) != len(in) {
			t.Errorf("flipped byte %d: %d bytes without an error, want %d", i, len(got), len(in))
		}
	}
}
