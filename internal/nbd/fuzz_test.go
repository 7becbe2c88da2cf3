package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func encodeRequest(r request) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, r.flags)
	b = binary.BigEndian.AppendUint16(b, r.typ)
	b = binary.BigEndian.AppendUint64(b, r.handle)
	b = binary.BigEndian.AppendUint64(b, r.offset)
	return binary.BigEndian.AppendUint32(b, r.length)
}

func FuzzRequestDecoder(f *testing.F) {
	f.Add(encodeRequest(request{typ: cmdRead, handle: 1, length: 4096}))
	f.Add(encodeRequest(request{typ: cmdWrite, flags: cmdFlagFUA, handle: 2, offset: 1 << 40, length: 1 << 31}))
	f.Add(encodeRequest(request{typ: 0xffff, flags: 0xffff, handle: ^uint64(0), offset: ^uint64(0), length: ^uint32(0)}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		if got := encodeRequest(r); !bytes.Equal(got, b) {
			t.Fatalf("decode/encode mismatch: %x -> %+v -> %x", b, r, got)
		}
	})
}

func encodeInfo(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func encodeMeta(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// FuzzOptionDecoders feeds arbitrary payloads to the option decoders:
// they must not panic, must not accept trailing bytes, and what they
// accept must re-encode to the same bytes.
func FuzzOptionDecoders(f *testing.F) {
	f.Add(encodeInfo("token", infoExport, infoBlockSize))
	f.Add(encodeInfo(""))
	f.Add(encodeMeta("token", metaContextBase))
	f.Add(encodeMeta("", "base:", "qemu:dirty-bitmap:x"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= optHeaderSize {
			if h, err := decodeOptHeader(b[:optHeaderSize]); err == nil {
				_ = h
			}
		}
		if r, err := decodeInfoRequest(b); err == nil {
			if got := encodeInfo(r.name, r.infos...); !bytes.Equal(got, b) {
				t.Fatalf("info request %x decoded as %+v re-encodes as %x", b, r, got)
			}
			if len(r.name) > maxString {
				t.Fatalf("accepted a %d-byte name", len(r.name))
			}
		}
		if r, err := decodeMetaRequest(b); err == nil {
			if got := encodeMeta(r.name, r.queries...); !bytes.Equal(got, b) {
				t.Fatalf("meta request %x decoded as %+v re-encodes as %x", b, r, got)
			}
		}
	})
}

// memBackend is a small in-memory Backend with every capability.
type memBackend struct {
	mu   sync.RWMutex
	data []byte
}

func (m *memBackend) Size() int64 { return int64(len(m.data)) }
func (m *memBackend) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return copy(p, m.data[off:]), nil
}
func (m *memBackend) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.data[off:], p), nil
}
func (m *memBackend) Flush() error { return nil }
func (m *memBackend) Trim(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+n])
	return nil
}
func (m *memBackend) WriteZeroes(off, n int64) error { return m.Trim(off, n) }
func (m *memBackend) BlockStatus(off, n int64) ([]Extent, error) {
	return []Extent{{Offset: off, Length: n / 2}, {Offset: off + n/2, Length: n - n/2, Hole: true, Zero: true}}, nil
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func clientHello(opts ...[]byte) []byte {
	b := []byte{0, 0, 0, 3}
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

func option(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// FuzzConnection runs whole client byte streams through one server
// connection: whatever arrives, the server must not panic or hang, and the
// read-only export must stay unchanged.
func FuzzConnection(f *testing.F) {
	goRO := option(optGo, encodeInfo("ro"))
	goRW := option(optGo, encodeInfo("rw"))
	sr := option(optStructuredReply, nil)
	meta := option(optSetMetaContext, encodeMeta("rw", metaContextBase))
	write := append(encodeRequest(request{typ: cmdWrite, length: 8, offset: 16}), "payload!"...)
	f.Add(clientHello(goRW, encodeRequest(request{typ: cmdRead, length: 64})))
	f.Add(clientHello(sr, meta, goRW, write, encodeRequest(request{typ: cmdBlockStatus, length: 1024}), encodeRequest(request{typ: cmdDisc})))
	f.Add(clientHello(goRO, write, encodeRequest(request{typ: cmdTrim, length: 4096})))
	f.Add(clientHello(option(optExportName, []byte("ro")), write))
	f.Add(clientHello(option(optInfo, encodeInfo("rw")), option(optList, nil), option(99, []byte("x")), option(optAbort, nil)))
	f.Add([]byte("garbage garbage garbage garbage"))
	// Every command and flag, oversized and truncated requests, options
	// out of order.
	f.Add(clientHello(sr, meta, goRW,
		encodeRequest(request{typ: cmdWriteZeroes, flags: cmdFlagFUA | cmdFlagNoHole, offset: 512, length: 1024}),
		encodeRequest(request{typ: cmdFlush}), encodeRequest(request{typ: cmdRead, flags: cmdFlagDF, length: 2048}),
		encodeRequest(request{typ: cmdBlockStatus, flags: cmdFlagReqOne, offset: 4096, length: 4096}),
		encodeRequest(request{typ: cmdTrim, flags: cmdFlagFUA, offset: 8000, length: 192}), encodeRequest(request{typ: cmdDisc})))
	f.Add(clientHello(option(optListMetaContext, encodeMeta("rw", "base:")), option(optStartTLS, nil), goRW,
		encodeRequest(request{typ: cmdRead, length: 1 << 20}), encodeRequest(request{typ: cmdRead, offset: 8190, length: 4})))
	f.Add(clientHello(goRW, encodeRequest(request{typ: cmdWrite, offset: 16, length: 16}), []byte("shrt")))
	f.Add(clientHello(goRO, encodeRequest(request{typ: cmdWriteZeroes, length: 8192}), encodeRequest(request{typ: 99, length: 1})))
	f.Fuzz(func(t *testing.T, in []byte) {
		ro := &memBackend{data: bytes.Repeat([]byte{0x5a}, 8192)}
		rw := &memBackend{data: make([]byte, 8192)}
		var logs lockedBuffer
		s := &Server{
			Resolver: func(_ context.Context, name string) (*Export, error) {
				switch name {
				case "ro":
					return &Export{Backend: ro, ReadOnly: true}, nil
				case "rw":
					return &Export{Backend: rw}, nil
				}
				return nil, ErrUnknownExport
			},
			Logger:           slog.New(slog.NewTextHandler(&logs, nil)),
			MaxRequest:       4096,
			HandshakeTimeout: 5 * time.Second,
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			newConn(s, server).serve(context.Background())
		}()
		go io.Copy(io.Discard, client)
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection did not finish")
		}
		if strings.Contains(logs.String(), "panicked") {
			t.Fatalf("server panicked:\n%s", logs.String())
		}
		if !bytes.Equal(ro.data, bytes.Repeat([]byte{0x5a}, 8192)) {
			t.Fatal("read-only backend modified")
		}
	})
}
