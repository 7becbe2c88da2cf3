package chunkstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"coffer/internal/chunk"
)

func samplePack(n int) []byte {
	b := packHeader()
	var es []trailerEntry
	for i := range n {
		rec := bytes.Repeat([]byte{byte(i)}, 10+i)
		es = append(es, trailerEntry{ID: chunk.Hash(rec), Offset: int64(len(b)), Length: uint32(len(rec)), RawLength: uint32(len(rec))})
		b = append(b, rec...)
	}
	return appendTrailer(b, 1234, es)
}

func TestPackRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 5} {
		p := samplePack(n)
		tr, err := decodePack(p)
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		if len(tr.Entries) != n || tr.Created != 1234 {
			t.Fatalf("decoded %+v", tr)
		}
	}
	// Every single-byte change in the trailer or footer is detected.
	p := samplePack(3)
	tstart := len(p) - footerSize - trailerHeadSize - 3*entrySize
	for i := tstart; i < len(p); i++ {
		q := bytes.Clone(p)
		q[i] ^= 0x01
		if _, err := decodePack(q); !errors.Is(err, errFormat) {
			t.Errorf("flip at %d of %d: err %v", i, len(p), err)
		}
	}
}

func TestPackNames(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	name := newPackName(at)
	got, ok := packCreated(name)
	if !ok || !got.Equal(at) {
		t.Fatalf("packCreated(%s) = %v %v", name, got, ok)
	}
	for _, bad := range []string{"packs/ab/xyz", "other/ab/0000000000000000-abcdefabcdefabcd", "packs/zz/0000000000000000-abcdefabcdefabcd"} {
		if _, ok := packCreated(bad); ok {
			t.Errorf("packCreated(%s) accepted", bad)
		}
	}
}

// FuzzDecodePack: the pack decoder never panics, and whatever it accepts
// re-encodes to the same trailer.
func FuzzDecodePack(f *testing.F) {
	f.Add(samplePack(0))
	f.Add(samplePack(1))
	f.Add(samplePack(4))
	f.Add([]byte("CFPK\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		tr, err := decodePack(p)
		if err != nil {
			if !errors.Is(err, errFormat) {
				t.Fatalf("error %v does not wrap errFormat", err)
			}
			return
		}
		tstart := len(p) - footerSize - trailerHeadSize - len(tr.Entries)*entrySize
		again := appendTrailer(nil, tr.Created, tr.Entries)
		if !bytes.Equal(again, p[tstart:]) {
			t.Fatalf("re-encoded trailer differs")
		}
		for _, e := range tr.Entries {
			if e.Offset < headerSize || e.Offset+int64(e.Length) > int64(tstart) {
				t.Fatalf("accepted entry outside the records: %+v", e)
			}
		}
	})
}
