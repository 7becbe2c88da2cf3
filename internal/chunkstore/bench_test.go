package chunkstore_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/directio"
)

const benchBlock = 64 << 10

// binaryBlocks returns up to 8 MiB of /usr/bin executables cut into 64 KiB
// blocks: realistic, compressible disk contents.
func binaryBlocks(b *testing.B) [][]byte {
	b.Helper()
	files, _ := filepath.Glob("/usr/bin/*")
	var all []byte
	for _, f := range files {
		if len(all) >= 8<<20 {
			break
		}
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		d, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		all = append(all, d...)
	}
	if len(all) < benchBlock {
		b.Skip("no binaries in /usr/bin to benchmark with")
	}
	var blocks [][]byte
	for off := 0; off+benchBlock <= len(all) && off < 8<<20; off += benchBlock {
		blocks = append(blocks, all[off:off+benchBlock])
	}
	return blocks
}

func randomBlocks(n int) [][]byte {
	var blocks [][]byte
	for i := range n {
		blocks = append(blocks, randomData(uint64(i), benchBlock))
	}
	return blocks
}

func BenchmarkHash(b *testing.B) {
	data := randomData(1, benchBlock)
	b.Run("blake3-64KiB", func(b *testing.B) {
		b.SetBytes(benchBlock)
		for b.Loop() {
			blake3.Sum256(data)
		}
	})
	b.Run("sha256-64KiB", func(b *testing.B) {
		b.SetBytes(benchBlock)
		for b.Loop() {
			sha256.Sum256(data)
		}
	})
}

// BenchmarkZstd compares the pure-Go encoder (klauspost/compress) with
// this build's codec (libzstd through cgo, or the same pure-Go encoder
// without cgo: chunkstore.ZstdImpl says which) on 64 KiB blocks.
func BenchmarkZstd(b *testing.B) {
	sets := map[string][][]byte{"binaries": binaryBlocks(b), "random": randomBlocks(32)}
	type impl struct {
		enc func(dst, src []byte) []byte
		dec func(dst, src []byte, n int) ([]byte, error)
	}
	impls := map[string]impl{}
	for lname, lvl := range map[string]zstd.EncoderLevel{"fastest": zstd.SpeedFastest, "default": zstd.SpeedDefault} {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		impls["go-"+lname] = impl{
			enc: func(dst, src []byte) []byte { return enc.EncodeAll(src, dst[:0]) },
			dec: func(dst, src []byte, _ int) ([]byte, error) { return dec.DecodeAll(src, dst[:0]) },
		}
	}
	for lname, lvl := range map[string]chunkstore.Level{"fastest": chunkstore.LevelFastest, "default": chunkstore.LevelDefault} {
		c, err := chunkstore.NewCodec(lvl)
		if err != nil {
			b.Fatal(err)
		}
		impls["codec-"+lname] = impl{enc: c.Encode, dec: c.Decode}
	}
	b.Logf("this build's codec: %s", chunkstore.ZstdImpl)
	for iname, im := range impls {
		for sname, blocks := range sets {
			var in, out int64
			comp := make([][]byte, len(blocks))
			for i, blk := range blocks {
				comp[i] = im.enc(nil, blk)
				in += int64(len(blk))
				out += int64(len(comp[i]))
			}
			b.Run(iname+"/"+sname+"/compress", func(b *testing.B) {
				b.SetBytes(benchBlock)
				buf := make([]byte, 0, 2*benchBlock)
				i := 0
				for b.Loop() {
					buf = im.enc(buf[:0], blocks[i%len(blocks)])
					i++
				}
				b.ReportMetric(float64(in)/float64(out), "ratio")
			})
			b.Run(iname+"/"+sname+"/decompress", func(b *testing.B) {
				b.SetBytes(benchBlock)
				buf := make([]byte, 0, benchBlock)
				i := 0
				for b.Loop() {
					var err error
					buf, err = im.dec(buf[:0], comp[i%len(comp)], benchBlock)
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkPutFlush measures Put throughput from all cores into an
// in-memory backend, including sealing and writing packs. Every block is
// distinct (binaries with a counter stamped in), so nothing deduplicates.
func BenchmarkPutFlush(b *testing.B) {
	ctx := context.Background()
	eachDistinctBlock(b, func(s *chunkstore.Store, buf []byte) {
		if _, err := s.Put(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}, func(s *chunkstore.Store) {
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEncode does to the blocks of BenchmarkPutFlush (the same
// sets, the same copies and changes) what the bench's compute limit does:
// Encode, the hashing and compression of Put and nothing else. Their
// ratio in the same run is what the rest of Put costs (lookups, the copy
// into the pack, the pack writes); their profiles
// (-cpuprofile) show whether the codecs cost more inside Put.
func BenchmarkEncode(b *testing.B) {
	eachDistinctBlock(b, func(s *chunkstore.Store, buf []byte) { s.Encode(buf) }, nil)
}

// eachDistinctBlock runs a sub-benchmark per block set (binaries, random)
// that calls op in parallel on a fresh store with blocks of the set made
// distinct (a counter stamped into their first bytes), then done, if set,
// once at the end.
func eachDistinctBlock(b *testing.B, op func(s *chunkstore.Store, buf []byte), done func(s *chunkstore.Store)) {
	sets := map[string][][]byte{"binaries": binaryBlocks(b), "random": randomBlocks(64)}
	for name, blocks := range sets {
		b.Run(name, func(b *testing.B) {
			s := newStore(b, mem.New(), chunkstore.NewMemIndex(), chunkstore.Options{})
			var n atomic.Int64
			b.SetBytes(benchBlock)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, benchBlock)
				for pb.Next() {
					i := n.Add(1)
					copy(buf, blocks[int(i)%len(blocks)])
					for j := range 8 {
						buf[j] ^= byte(i >> (8 * j))
					}
					op(s, buf)
				}
			})
			if done != nil {
				done(s)
			}
		})
	}
}

// BenchmarkGetManyInto reads batches of 128 chunks (a restore job's span:
// 8 MiB of 64 KiB blocks, binaries and random data) from packs on the
// local blob store, which reads them with direct I/O, decompressing each
// into its destination: "sequential" with a read buffer of one 2 MiB
// part, reading and decoding in turn; "readahead" with two such parts,
// reading the next run while the previous one is decoded;
// "readahead-7" reading up to 7 runs while one is decoded. Three blocks
// stored in four belong to other batches, so runs are short, as in packs
// that several backups wrote at once. All make the same reads; compare
// their ns/op in the same run.
func BenchmarkGetManyInto(b *testing.B) {
	ctx := context.Background()
	lb, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s := newStore(b, lb, chunkstore.NewMemIndex(), chunkstore.Options{})
	var ids []chunk.ID
	var raw int64
	for i, d := range append(binaryBlocks(b), randomBlocks(256)...) {
		id := mustPut(b, s, d)
		if i%4 != 0 { // three blocks in four of other batches: short runs
			continue
		}
		ids = append(ids, id)
		raw += int64(len(d))
	}
	mustFlush(b, s)
	const batch = 128
	dst := make([][]byte, batch)
	for i := range dst {
		dst[i] = make([]byte, benchBlock)
	}
	part := 2<<20 + 2*directio.Align
	for _, bc := range []struct {
		name  string
		rbuf  []byte
		ahead int
	}{
		{"sequential", directio.Buffer(part), 0},
		{"readahead", directio.Buffer(2 * part), 1},
		{"readahead-7", directio.Buffer(2 * part), 7},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(raw)
			for b.Loop() {
				for lo := 0; lo < len(ids); lo += batch {
					part := ids[lo:min(lo+batch, len(ids))]
					if err := s.GetManyInto(ctx, part, bc.rbuf, bc.ahead, func(i int) []byte { return dst[i] }, func(int, []byte) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
