package chunkstore

import (
	"math"
	"sync"
)

// Compression pays when it saves at least 1/minSavingDiv of a chunk.
const minSavingDiv = 32

// sampleWindow is the size of each of the three windows compressed to
// detect incompressible chunks cheaply; chunks shorter than sampleMin are
// compressed whole at once.
const (
	sampleWindow = 2 << 10
	sampleMin    = 16 << 10
)

// lowEntropy is the order-0 entropy (bits per byte) of the sample windows
// below which a chunk is compressed whole without the trial compression of
// the sample: an entropy coder alone saves more than 1/8 of such data, far
// above the 1/minSavingDiv a chunk must save (which is still checked).
const lowEntropy = 7.0

// xlog2x[c] = c·log2(c), for the counts of a 3-window histogram.
var xlog2x = func() []float32 {
	t := make([]float32, 3*sampleWindow+1)
	for c := 1; c < len(t); c++ {
		t[c] = float32(float64(c) * math.Log2(float64(c)))
	}
	return t
}()

// sampleEntropy returns the order-0 entropy in bits per byte of the three
// sample windows of data (start, middle, end).
func sampleEntropy(data []byte) float64 {
	var hist [256]uint32
	mid := len(data)/2 - sampleWindow/2
	for _, w := range [][]byte{data[:sampleWindow], data[mid : mid+sampleWindow], data[len(data)-sampleWindow:]} {
		for _, b := range w {
			hist[b]++
		}
	}
	const n = 3 * sampleWindow
	var sum float32
	for _, c := range hist {
		sum += xlog2x[c]
	}
	// H = log2(n) - Σ c·log2(c) / n
	return math.Log2(n) - float64(sum)/n
}

// samplePool recycles the buffers of the sample windows.
var samplePool = sync.Pool{New: func() any { return new([]byte) }}

// roomFor is the room a record of a chunk of n bytes may take while it is
// encoded (encodeInto): the codec's bound, which is also at least n.
func (s *Store) roomFor(n int) int {
	if s.level == LevelNone || n < 64 {
		return n
	}
	return compressBound(n)
}

// encodeInto writes the bytes to store for data into dst, which holds
// roomFor(len(data)) bytes, and returns their length and encoding.
// Incompressible data (random, already compressed, encrypted) is
// detected by compressing three small windows first, so it costs a
// fraction of a full attempt; windows whose byte entropy is low skip that
// trial. A chunk is stored compressed only if that saves 1/minSavingDiv
// of it.
func (s *Store) encodeInto(dst, data []byte) (int, Compression) {
	if s.level == LevelNone || len(data) < 64 || !s.mayCompress(data) {
		return copy(dst, data), CompressionNone
	}
	c, err := s.codec.encode(dst[:0], data)
	if err != nil || len(c) >= len(data)-len(data)/minSavingDiv {
		return copy(dst, data), CompressionNone // raw: always correct
	}
	if &c[0] != &dst[0] { // the codec needed more than roomFor: never, but correct
		copy(dst, c)
	}
	return len(c), CompressionZstd
}

// mayCompress reports whether data may be worth compressing whole: short
// chunks and those whose sample windows have a low byte entropy are;
// others are if their sample windows compress.
func (s *Store) mayCompress(data []byte) bool {
	if len(data) < sampleMin || sampleEntropy(data) < lowEntropy {
		return true
	}
	buf := samplePool.Get().(*[]byte)
	defer samplePool.Put(buf)
	const n = 3 * sampleWindow
	if cap(*buf) < n+compressBound(n) { // the sample, then its compressed form
		*buf = make([]byte, 0, n+compressBound(n))
	}
	mid := len(data)/2 - sampleWindow/2
	sample := append((*buf)[:0], data[:sampleWindow]...)
	sample = append(sample, data[mid:mid+sampleWindow]...)
	sample = append(sample, data[len(data)-sampleWindow:]...)
	c, err := s.codec.encode(sample[n:], sample)
	return err == nil && len(c) < n-n/minSavingDiv
}
