package chunkstore

// Codec exposes this build's zstd codec to the benchmarks.
type Codec = codec

// NewCodec returns this build's codec at level l.
func NewCodec(l Level) (*Codec, error) { return newCodec(l) }

// Encode compresses src into dst's storage.
func (c *Codec) Encode(dst, src []byte) []byte {
	out, err := c.encode(dst, src)
	if err != nil {
		panic(err) // benchmarks only
	}
	return out
}

// Decode decompresses src, of rawLen bytes, into dst's storage.
func (c *Codec) Decode(dst, src []byte, rawLen int) ([]byte, error) {
	return c.decode(dst, src, rawLen)
}

// ZstdImpl names this build's zstd implementation.
const ZstdImpl = zstdImpl

// PackBuffers counts the pack buffers the Store holds: open, sealed and
// kept for reuse.
func (s *Store) PackBuffers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.free) + len(s.sealed) + len(s.streams)
}

// WaitWritten waits until no sealed pack waits to be written (packs
// whose write failed would keep it waiting: tests without failures only).
func (s *Store) WaitWritten() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.sealed) > 0 {
		s.cond.Wait()
	}
}
