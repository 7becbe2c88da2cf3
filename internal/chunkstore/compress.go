package chunkstore

// Compression pays when it saves at least 1/minSavingDiv of a chunk.
const minSavingDiv = 32

// sampleWindow is the size of each of the three windows compressed to
// detect incompressible chunks cheaply; chunks shorter than sampleMin are
// compressed whole at once.
const (
	sampleWindow = 2 << 10
	sampleMin    = 16 << 10
)

// compress returns the bytes to store for data and how they are encoded.
// Incompressible data (random, already compressed, encrypted) is detected by
// compressing three small windows first, so it costs a fraction of a full
// attempt.
func (s *Store) compress(data []byte) ([]byte, Compression) {
	if s.level == LevelNone || len(data) < 64 {
		return data, CompressionNone
	}
	if len(data) >= sampleMin {
		mid := len(data)/2 - sampleWindow/2
		sample := make([]byte, 0, 3*sampleWindow)
		sample = append(sample, data[:sampleWindow]...)
		sample = append(sample, data[mid:mid+sampleWindow]...)
		sample = append(sample, data[len(data)-sampleWindow:]...)
		c := s.enc.EncodeAll(sample, make([]byte, 0, len(sample)))
		if len(c) >= len(sample)-len(sample)/minSavingDiv {
			return data, CompressionNone
		}
	}
	c := s.enc.EncodeAll(data, make([]byte, 0, len(data)))
	if len(c) >= len(data)-len(data)/minSavingDiv {
		return data, CompressionNone
	}
	return c, CompressionZstd
}
