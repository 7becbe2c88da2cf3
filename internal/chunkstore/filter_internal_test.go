package chunkstore

import (
	"testing"

	"coffer/internal/chunk"
)

// TestBloomNoFalseNegatives: every recorded ID is reported, including
// across chained filters, and the false-positive rate stays low.
func TestBloomNoFalseNegatives(t *testing.T) {
	f := &idFilter{chain: []*bloom{newBloom(1000)}, ready: true}
	const n = 200_000
	id := func(i int) chunk.ID { return chunk.Hash([]byte{byte(i), byte(i >> 8), byte(i >> 16), 1}) }
	for i := 0; i < n; i += 100 {
		batch := make([]chunk.ID, 0, 100)
		for j := i; j < i+100; j++ {
			batch = append(batch, id(j))
		}
		f.add(batch...)
	}
	if len(f.chain) < 2 {
		t.Fatalf("filter did not chain: %d filters", len(f.chain))
	}
	for i := range n {
		if !f.mayHave(id(i)) {
			t.Fatalf("false negative for ID %d", i)
		}
	}
	fp := 0
	const probes = 100_000
	for i := range probes {
		if f.mayHave(chunk.Hash([]byte{byte(i), byte(i >> 8), byte(i >> 16), 2})) {
			fp++
		}
	}
	if rate := float64(fp) / probes; rate > 0.05 {
		t.Errorf("false-positive rate %.3f", rate)
	}
	var bytes int64
	for _, b := range f.chain {
		bytes += int64(len(b.bits)) * 8
	}
	t.Logf("%d filters, %d bytes for %d IDs (%.2f B/ID), false positives %.2f%%", len(f.chain), bytes, n, float64(bytes)/n, 100*float64(fp)/probes)
}

// TestFilterNotReadySaysYes: before it is built from the index the filter
// must not be trusted.
func TestFilterNotReadySaysYes(t *testing.T) {
	f := &idFilter{chain: []*bloom{newBloom(10)}}
	if !f.mayHave(chunk.Hash([]byte("x"))) {
		t.Fatal("a filter that is not built answered no")
	}
}

func TestSampleEntropy(t *testing.T) {
	zeros := make([]byte, 64<<10)
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(chunk.Hash([]byte{byte(i), byte(i >> 8)})[0])
	}
	text := make([]byte, 64<<10)
	for i := range text {
		text[i] = "the quick brown fox jumps over the lazy dog "[i%44]
	}
	if h := sampleEntropy(zeros); h > 0.01 {
		t.Errorf("zeros: %.2f bits/byte", h)
	}
	if h := sampleEntropy(random); h < 7.9 {
		t.Errorf("random: %.2f bits/byte", h)
	}
	if h := sampleEntropy(text); h >= lowEntropy {
		t.Errorf("text: %.2f bits/byte", h)
	}
}
