package blockdev

import "math/bits"

// bitset is a fixed-size set of block numbers. It is not safe for concurrent
// use; Volume guards its bitsets with its mutex.
type bitset struct {
	n     int64
	words []uint64
}

func newBitset(n int64) *bitset {
	return &bitset{n: n, words: make([]uint64, (n+63)/64)}
}

func (s *bitset) has(i int64) bool {
	if i < 0 || i >= s.n {
		return false
	}
	return s.words[i>>6]&(1<<(uint(i)&63)) != 0
}

func (s *bitset) set(i int64)   { s.words[i>>6] |= 1 << (uint(i) & 63) }
func (s *bitset) clear(i int64) { s.words[i>>6] &^= 1 << (uint(i) & 63) }

// grow extends the set to n bits (never shrinks); new bits are clear.
func (s *bitset) grow(n int64) {
	if n <= s.n {
		return
	}
	need := (n + 63) / 64
	if int64(len(s.words)) < need {
		w := make([]uint64, need)
		copy(w, s.words)
		s.words = w
	}
	s.n = n
}

func (s *bitset) clone() *bitset {
	c := &bitset{n: s.n, words: make([]uint64, len(s.words))}
	copy(c.words, s.words)
	return c
}

// or sets every bit of o in s, growing s if o is larger.
func (s *bitset) or(o *bitset) {
	s.grow(o.n)
	for i, w := range o.words {
		s.words[i] |= w
	}
}

// covers reports whether every bit in [lo,hi) is set.
func (s *bitset) covers(lo, hi int64) bool {
	for i := lo; i < hi; i++ {
		if !s.has(i) {
			return false
		}
	}
	return true
}

func (s *bitset) count() int64 {
	var c int
	for _, w := range s.words {
		c += bits.OnesCount64(w)
	}
	return int64(c)
}

// anyIn reports whether any bit in [lo,hi) is set.
func (s *bitset) anyIn(lo, hi int64) bool {
	if hi > s.n {
		hi = s.n
	}
	for i := lo; i < hi; {
		if i&63 == 0 && i+64 <= hi {
			if s.words[i>>6] != 0 {
				return true
			}
			i += 64
			continue
		}
		if s.has(i) {
			return true
		}
		i++
	}
	return false
}

// bytes returns the little-endian byte form of the set ((n+7)/8 bytes).
func (s *bitset) bytes() []byte {
	b := make([]byte, (s.n+7)/8)
	for i := range b {
		b[i] = byte(s.words[i/8] >> (uint(i%8) * 8))
	}
	return b
}

// bitsetFromBytes is the inverse of bytes; bits at or past n are ignored.
func bitsetFromBytes(n int64, b []byte) *bitset {
	s := newBitset(n)
	for i := 0; i < len(b) && int64(i) < (n+7)/8; i++ {
		s.words[i/8] |= uint64(b[i]) << (uint(i%8) * 8)
	}
	if r := n & 63; r != 0 && len(s.words) > 0 {
		s.words[len(s.words)-1] &= (1 << uint(r)) - 1
	}
	return s
}
