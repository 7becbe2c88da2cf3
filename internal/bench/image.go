package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// DefaultCorpus are the directories whose regular files, read in sorted
// order, are the image's real-world compressible data.
var DefaultCorpus = []string{"/usr/bin", "/usr/lib", "/usr/share"}

// Kinds of image segments.
const (
	kindZero = iota
	kindCorpus
	kindRandom
)

// segment is one run of one kind of data in the image.
type segment struct {
	off, n int64
	kind   int
}

// planSegments cuts size bytes into 1–8 MiB segments (multiples of
// align): data bytes of data (0: half of size), two thirds of them corpus
// data and the rest random, and zeros, in a seeded order. The kind of each
// segment is drawn with weights equal to what is left of each kind's
// budget, so the kinds interleave across the disk.
func planSegments(size, data, align int64, rng *rand.Rand) []segment {
	budget := [3]int64{}
	if data == 0 {
		budget[kindZero] = size / 2 / align * align
		budget[kindCorpus] = size / 3 / align * align
	} else {
		budget[kindZero] = (size - data) / align * align
		budget[kindCorpus] = data * 2 / 3 / align * align
	}
	budget[kindRandom] = size - budget[kindZero] - budget[kindCorpus]
	var segs []segment
	var off int64
	for off < size {
		left := budget[0] + budget[1] + budget[2]
		pick := rng.Int64N(left)
		k := 0
		for pick >= budget[k] {
			pick -= budget[k]
			k++
		}
		n := min(int64(1+rng.IntN(8))<<20, budget[k])
		budget[k] -= n
		if l := len(segs); l > 0 && segs[l-1].kind == k {
			segs[l-1].n += n // adjacent pieces of one kind are one segment
		} else {
			segs = append(segs, segment{off: off, n: n, kind: k})
		}
		off += n
	}
	return segs
}

// corpus streams the bytes of the regular files under its roots, in sorted
// order. When they are exhausted it starts again, each new pass XORed with
// a per-pass constant: repetitions keep their compressibility but do not
// deduplicate against earlier passes. Unreadable files are skipped. With no
// readable file at all it produces seeded pseudo-text instead.
type corpus struct {
	roots  []string
	stack  []string // paths still to visit, next at the end
	cur    *os.File
	pass   int
	xor    byte
	first  int64 // bytes read in the first pass (distinct corpus bytes)
	inPass int64
	files  int
	synth  *rand.Rand
}

func newCorpus(roots []string, seed uint64) *corpus {
	c := &corpus{roots: roots}
	c.restart()
	c.synth = rand.New(rand.NewPCG(seed, 0xc0ffee))
	return c
}

func (c *corpus) restart() {
	c.stack = c.stack[:0]
	for i := len(c.roots) - 1; i >= 0; i-- {
		c.stack = append(c.stack, c.roots[i])
	}
	c.inPass = 0
}

// nextFile opens the next regular file of the walk, or returns false at the
// end of a pass.
func (c *corpus) nextFile() bool {
	for len(c.stack) > 0 {
		p := c.stack[len(c.stack)-1]
		c.stack = c.stack[:len(c.stack)-1]
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		switch {
		case fi.IsDir():
			ents, err := os.ReadDir(p) // sorted by name
			if err != nil {
				continue
			}
			for i := len(ents) - 1; i >= 0; i-- {
				c.stack = append(c.stack, filepath.Join(p, ents[i].Name()))
			}
		case fi.Mode().IsRegular() && fi.Size() > 0:
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			c.cur = f
			c.files++
			return true
		}
	}
	return false
}

// fill fills p completely.
func (c *corpus) fill(p []byte) {
	for len(p) > 0 {
		if c.synth != nil && c.pass > 0 && c.first == 0 {
			c.fillSynthetic(p)
			return
		}
		if c.cur == nil {
			if !c.nextFile() {
				c.pass++
				c.xor = byte(0x5b + 0x9e*c.pass)
				if c.xor == 0 {
					c.xor = 0xa5
				}
				c.restart()
				continue
			}
		}
		n, err := c.cur.Read(p)
		if n > 0 {
			if c.xor != 0 {
				for i := range p[:n] {
					p[i] ^= c.xor
				}
			}
			if c.pass == 0 {
				c.first += int64(n)
			}
			c.inPass += int64(n)
			p = p[n:]
		}
		if err != nil { // io.EOF or a read error: next file
			c.cur.Close()
			c.cur = nil
		}
	}
}

// fillSynthetic writes compressible pseudo-text: words from a small seeded
// vocabulary, for machines without a corpus.
func (c *corpus) fillSynthetic(p []byte) {
	words := []string{"block ", "chunk ", "snapshot ", "volume ", "restore ", "the ", "of ", "pack ", "index ", "page ", "\n", "0x7f454c46 ", "manifest ", "zstd "}
	for i := 0; i < len(p); {
		w := words[c.synth.IntN(len(words))]
		i += copy(p[i:], w)
	}
}

func (c *corpus) close() {
	if c.cur != nil {
		c.cur.Close()
		c.cur = nil
	}
}

// imageInfo describes a built image.
type imageInfo struct {
	segs  []segment
	bytes [3]int64
	sha   string
	files int
	first int64
	pass  int
}

// seedKey derives a ChaCha8 key for a purpose from the seed.
func seedKey(seed uint64, purpose uint64) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[0:], seed)
	binary.LittleEndian.PutUint64(k[8:], purpose)
	binary.LittleEndian.PutUint64(k[16:], 0x636f66666572) // "coffer"
	return k
}

// buildImage writes the mixed image of size bytes, data of them data (0:
// half), to path as a sparse file (zero segments are holes) and returns
// its layout and SHA-256. The same seed and the same corpus give the same
// bytes.
func buildImage(ctx context.Context, path string, size, data int64, seed uint64, roots []string) (imageInfo, error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	segs := planSegments(size, data, blockSize, rng)
	random := rand.NewChaCha8(seedKey(seed, 2))
	cp := newCorpus(roots, seed)
	defer cp.close()

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return imageInfo{}, fmt.Errorf("build image: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return imageInfo{}, fmt.Errorf("build image: %w", err)
	}
	h := sha256.New()
	zero := make([]byte, 1<<20)
	buf := make([]byte, 1<<20)
	info := imageInfo{segs: segs}
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return imageInfo{}, fmt.Errorf("build image: %w", err)
		}
		info.bytes[s.kind] += s.n
		for done := int64(0); done < s.n; {
			n := min(int64(len(buf)), s.n-done)
			switch s.kind {
			case kindZero:
				h.Write(zero[:n])
				done += n
				continue
			case kindCorpus:
				cp.fill(buf[:n])
			case kindRandom:
				random.Read(buf[:n])
			}
			if _, err := f.WriteAt(buf[:n], s.off+done); err != nil {
				return imageInfo{}, fmt.Errorf("build image: %w", err)
			}
			h.Write(buf[:n])
			done += n
		}
	}
	if err := f.Sync(); err != nil {
		return imageInfo{}, fmt.Errorf("build image: %w", err)
	}
	info.sha = hex.EncodeToString(h.Sum(nil))
	info.files, info.first, info.pass = cp.files, cp.first, cp.pass
	return info, nil
}

// hashFile returns the SHA-256 of a file's contents; holes are hashed as
// zeros without being read.
func hashFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	h := sha256.New()
	if err := hashExtents(ctx, f, 0, fi.Size(), h); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashReaderAt hashes the first size bytes of r, reading everything.
func hashReaderAt(ctx context.Context, r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return "", fmt.Errorf("read at %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashExtents feeds the bytes [off, end) of f into h, reading only the
// data extents (SEEK_DATA/SEEK_HOLE) and hashing holes as zeros.
func hashExtents(ctx context.Context, f *os.File, off, end int64, h hash.Hash) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	feedZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zero)))
			h.Write(zero[:k])
			n -= k
		}
	}
	for off < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, hole, err := nextData(f, off, end)
		if err != nil {
			return err
		}
		feedZeros(data - off)
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := f.ReadAt(buf[:n], p); err != nil {
				return fmt.Errorf("read at %d: %w", p, err)
			}
			h.Write(buf[:n])
			p += n
		}
		off = hole
	}
	return nil
}
