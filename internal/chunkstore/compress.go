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

// bufPool recycles compression output buffers: the stored bytes are copied
// into the open pack, so the buffer is free again when Put returns.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// compress returns the bytes to store for data and how they are encoded.
// Incompressible data (random, already compressed, encrypted) is detected by
// compressing three small windows first, so it costs a fraction of a full
// attempt; windows whose byte entropy is low skip that trial. A returned
// buffer that is not data must be given back with release.
func (s *Store) compress(data []byte) ([]byte, Compression, *[]byte) {
	if s.level == LevelNone || len(data) < 64 {
		return data, CompressionNone, nil
	}
	buf := bufPool.Get().(*[]byte)
	if len(data) >= sampleMin && sampleEntropy(data) >= lowEntropy {
		mid := len(data)/2 - sampleWindow/2
		sample := append((*buf)[:0], data[:sampleWindow]...)
		sample = append(sample, data[mid:mid+sampleWindow]...)
		sample = append(sample, data[len(data)-sampleWindow:]...)
		c, err := s.codec.encode(sample[len(sample):], sample)
		*buf = sample[:0]
		if err != nil || len(c) >= len(sample)-len(sample)/minSavingDiv {
			bufPool.Put(buf)
			return data, CompressionNone, nil
		}
	}
	c, err := s.codec.encode(*buf, data)
	if err != nil { // stored raw: always correct
		bufPool.Put(buf)
		return data, CompressionNone, nil
	}
	*buf = c[:0]
	if len(c) >= len(data)-len(data)/minSavingDiv {
		bufPool.Put(buf)
		return data, CompressionNone, nil
	}
	return c, CompressionZstd, buf
}

// release gives a buffer returned by compress back.
func release(buf *[]byte) {
	if buf != nil {
		bufPool.Put(buf)
	}
}
