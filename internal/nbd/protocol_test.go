//go:build linux

package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"coffer/internal/nbd"
	"coffer/internal/nbd/nbdtest"
)

// protoFixture is a server with a writable export "rw" and a read-only
// export "ro", both 4 MiB file backends seeded with data.
type protoFixture struct {
	addr   string
	ex     *exports
	rw, ro *nbdtest.File
}

func newProtoFixture(t *testing.T, configure func(*nbd.Server)) *protoFixture {
	t.Helper()
	fx := &protoFixture{ex: &exports{}, rw: fileBackend(t, 4<<20), ro: fileBackend(t, 4<<20)}
	seed := bytes.Repeat([]byte("coffer!"), 100000)
	for _, f := range []*nbdtest.File{fx.rw, fx.ro} {
		if _, err := f.WriteAt(seed, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	fx.ex.add("rw", fx.rw, false)
	fx.ex.add("ro", fx.ro, true)
	fx.addr, _ = startServer(t, fx.ex, func(s *nbd.Server) {
		s.MaxRequest = 1 << 20
		s.HandshakeTimeout = 500 * time.Millisecond
		if configure != nil {
			configure(s)
		}
	})
	return fx
}

func (fx *protoFixture) dial(t *testing.T, name string, o nbdtest.Options) *nbdtest.Client {
	t.Helper()
	c, err := nbdtest.Dial(context.Background(), fx.addr, name, o)
	if err != nil {
		t.Fatalf("dial %q: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (fx *protoFixture) raw(t *testing.T) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", fx.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// alive checks the server still serves a fresh connection correctly.
func (fx *protoFixture) alive(t *testing.T) {
	t.Helper()
	c := fx.dial(t, "rw", nbdtest.Options{Structured: true})
	got := make([]byte, 7)
	if _, err := c.ReadAt(got, 1<<20); err != nil || string(got) != "coffer!" {
		t.Fatalf("server not healthy after abuse: read %q, %v", got, err)
	}
	c.Disconnect()
}

// waitClosed asserts the server closes nc (reads hit EOF) soon.
func waitClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server did not close the connection")
	}
}

func wantErrno(t *testing.T, what string, err error, errno uint32) {
	t.Helper()
	var e *nbdtest.Error
	if !errors.As(err, &e) || e.Errno != errno {
		t.Errorf("%s: got %v, want errno %d", what, err, errno)
	}
}

func wantOptErr(t *testing.T, what string, err error, reply uint32) {
	t.Helper()
	var e *nbdtest.OptionError
	if !errors.As(err, &e) || e.Reply != reply {
		t.Errorf("%s: got %v, want option reply %#x", what, err, reply)
	}
}

func TestHandshakeAbuse(t *testing.T) {
	fx := newProtoFixture(t, nil)
	before := hashBackend(t, fx.rw)

	t.Run("garbage client flags", func(t *testing.T) {
		nc := fx.raw(t)
		io.ReadFull(nc, make([]byte, 18))
		nc.Write([]byte{0xde, 0xad, 0xbe, 0xef, 'g', 'a', 'r', 'b', 'a', 'g', 'e'})
		waitClosed(t, nc)
	})
	t.Run("pure garbage", func(t *testing.T) {
		nc := fx.raw(t)
		nc.Write(bytes.Repeat([]byte{0xff}, 4096))
		waitClosed(t, nc)
	})
	t.Run("truncated option header", func(t *testing.T) {
		nc := fx.raw(t)
		c := nbdtest.NewClient(nc)
		if err := c.Greet(); err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte("IHAVEO"))
		nc.(*net.TCPConn).CloseWrite()
		waitClosed(t, nc)
	})
	t.Run("silent client times out", func(t *testing.T) {
		nc := fx.raw(t)
		start := time.Now()
		waitClosed(t, nc)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("closed after %v, before the handshake timeout", d)
		}
	})
	t.Run("bad option magic", func(t *testing.T) {
		nc := fx.raw(t)
		c := nbdtest.NewClient(nc)
		c.Greet()
		nc.Write(append([]byte("NOTMAGIC"), 0, 0, 0, 7, 0, 0, 0, 0))
		waitClosed(t, nc)
	})
	t.Run("options refused politely", func(t *testing.T) {
		c := nbdtest.NewClient(fx.raw(t))
		if err := c.Greet(); err != nil {
			t.Fatal(err)
		}
		_, err := c.Option(0x1234, []byte("whatever"))
		wantOptErr(t, "unknown option", err, nbdtest.RepErrUnsup)
		_, err = c.Option(nbdtest.OptList, nil)
		wantOptErr(t, "NBD_OPT_LIST", err, nbdtest.RepErrPolicy)
		_, err = c.Option(nbdtest.OptStartTLS, nil)
		wantOptErr(t, "STARTTLS without TLS config", err, nbdtest.RepErrPolicy)
		_, err = c.Option(nbdtest.OptSetMetaContext, make([]byte, 8))
		wantOptErr(t, "SET_META_CONTEXT before structured replies", err, nbdtest.RepErrInvalid)
		_, err = c.Option(nbdtest.OptStructuredReply, []byte{1})
		wantOptErr(t, "STRUCTURED_REPLY with payload", err, nbdtest.RepErrInvalid)
		_, err = c.Option(nbdtest.OptInfo, []byte{0, 0, 0, 9, 'x'})
		wantOptErr(t, "truncated NBD_OPT_INFO", err, nbdtest.RepErrInvalid)
		_, err = c.Option(nbdtest.OptInfo, []byte{0xff, 0xff, 0xff, 0xff})
		wantOptErr(t, "NBD_OPT_INFO with a huge name length", err, nbdtest.RepErrInvalid)
		_, err = c.Option(nbdtest.OptGo, append([]byte{0, 0, 0, 5}, "wrong\x00\x00"...))
		wantOptErr(t, "GO for an unknown export", err, nbdtest.RepErrUnknown)
		_, err = c.Option(nbdtest.OptInfo, make([]byte, 64<<10))
		wantOptErr(t, "oversized option", err, nbdtest.RepErrTooBig)
		// Still negotiating: a good NBD_OPT_INFO then GO works.
		rs, err := c.Option(nbdtest.OptInfo, append([]byte{0, 0, 0, 2}, "rw\x00\x00"...))
		if err != nil || len(rs) == 0 {
			t.Fatalf("NBD_OPT_INFO after refusals: %v %v", rs, err)
		}
		if _, err := c.Option(nbdtest.OptGo, append([]byte{0, 0, 0, 2}, "rw\x00\x00"...)); err != nil {
			t.Fatalf("GO after refusals: %v", err)
		}
		got := make([]byte, 7)
		if _, err := c.ReadAt(got, 1<<20); err != nil || string(got) != "coffer!" {
			t.Fatalf("read after GO: %q %v", got, err)
		}
		c.Disconnect()
	})
	t.Run("huge option payload closes", func(t *testing.T) {
		nc := fx.raw(t)
		c := nbdtest.NewClient(nc)
		c.Greet()
		hdr := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
		hdr = binary.BigEndian.AppendUint32(hdr, nbdtest.OptGo)
		hdr = binary.BigEndian.AppendUint32(hdr, math.MaxUint32)
		nc.Write(hdr)
		waitClosed(t, nc)
	})
	t.Run("abort", func(t *testing.T) {
		c := nbdtest.NewClient(fx.raw(t))
		c.Greet()
		if _, err := c.Option(nbdtest.OptAbort, nil); err != nil {
			t.Fatalf("abort: %v", err)
		}
	})
	t.Run("unknown export name via EXPORT_NAME", func(t *testing.T) {
		if _, err := nbdtest.Dial(context.Background(), fx.addr, "nope", nbdtest.Options{LegacyExportName: true}); err == nil {
			t.Fatal("EXPORT_NAME of an unknown export succeeded")
		}
	})
	fx.alive(t)
	if hashBackend(t, fx.rw) != before {
		t.Fatal("backend changed by handshake abuse")
	}
}

func TestTransmissionErrors(t *testing.T) {
	fx := newProtoFixture(t, nil)
	before, beforeRO := hashBackend(t, fx.rw), hashBackend(t, fx.ro)
	size := uint64(fx.rw.Size())

	for _, structured := range []bool{false, true} {
		name := map[bool]string{false: "simple", true: "structured"}[structured]
		t.Run(name, func(t *testing.T) {
			c := fx.dial(t, "rw", nbdtest.Options{Structured: structured})
			if c.Size != int64(size) {
				t.Fatalf("size %d, want %d", c.Size, size)
			}
			_, err := c.Do(nbdtest.CmdRead, 0, size-10, 11, nil)
			wantErrno(t, "read past end", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdRead, 0, math.MaxUint64-5, 10, nil)
			wantErrno(t, "read at offset overflow", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdWrite, 0, size-1, 2, []byte{1, 2})
			wantErrno(t, "write past end", err, nbdtest.ENOSPC)
			_, err = c.Do(nbdtest.CmdRead, 0, 0, 2<<20, nil)
			wantErrno(t, "read above the maximum request", err, nbdtest.EOVERFLOW)
			_, err = c.Do(nbdtest.CmdWrite, 0, 0, 2<<20, make([]byte, 2<<20))
			wantErrno(t, "write above the maximum request", err, nbdtest.EOVERFLOW)
			_, err = c.Do(99, 0, 0, 0, nil)
			wantErrno(t, "unknown command", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdRead, 1<<12, 0, 16, nil)
			wantErrno(t, "unknown command flag", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdFlush, 0, 4096, 0, nil)
			wantErrno(t, "flush with an offset", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdTrim, 0, size, 1, nil)
			wantErrno(t, "trim past end", err, nbdtest.EINVAL)
			_, err = c.Do(nbdtest.CmdWriteZeroes, 0, size-4096, 8192, nil)
			wantErrno(t, "write zeroes past end", err, nbdtest.ENOSPC)
			if !structured {
				_, err = c.Do(nbdtest.CmdBlockStatus, 0, 0, 4096, nil)
				wantErrno(t, "block status without a meta context", err, nbdtest.EINVAL)
			}
			// The connection still works after every refusal.
			got := make([]byte, 7)
			if _, err := c.ReadAt(got, 1<<20); err != nil || string(got) != "coffer!" {
				t.Fatalf("read after errors: %q %v", got, err)
			}
			if _, err := c.Do(nbdtest.CmdRead, 0, size-7, 7, nil); err != nil {
				t.Fatalf("read of the last bytes: %v", err)
			}
			if _, err := c.Do(nbdtest.CmdFlush, 0, 0, 0, nil); err != nil {
				t.Fatalf("flush: %v", err)
			}
			c.Disconnect()
		})
	}
	t.Run("read-only", func(t *testing.T) {
		c := fx.dial(t, "ro", nbdtest.Options{Structured: true})
		if c.Flags&nbdtest.FlagReadOnly == 0 {
			t.Error("read-only export lacks NBD_FLAG_READ_ONLY")
		}
		_, err := c.Do(nbdtest.CmdWrite, 0, 0, 4, []byte("evil"))
		wantErrno(t, "write to read-only", err, nbdtest.EPERM)
		_, err = c.Do(nbdtest.CmdWrite, nbdtest.CmdFlagFUA, 1<<20, 4, []byte("evil"))
		wantErrno(t, "FUA write to read-only", err, nbdtest.EPERM)
		_, err = c.Do(nbdtest.CmdTrim, 0, 1<<20, 4096, nil)
		wantErrno(t, "trim of read-only", err, nbdtest.EPERM)
		_, err = c.Do(nbdtest.CmdWriteZeroes, 0, 1<<20, 4096, nil)
		wantErrno(t, "write zeroes to read-only", err, nbdtest.EPERM)
		got := make([]byte, 7)
		if _, err := c.ReadAt(got, 1<<20); err != nil || string(got) != "coffer!" {
			t.Fatalf("read from read-only: %q %v", got, err)
		}
		c.Disconnect()
	})
	t.Run("bad request magic closes", func(t *testing.T) {
		c := fx.dial(t, "rw", nbdtest.Options{Structured: true})
		c.Conn.Write(bytes.Repeat([]byte{0x42}, 28))
		waitClosed(t, c.Conn)
	})
	t.Run("disconnect mid-write", func(t *testing.T) {
		c := fx.dial(t, "rw", nbdtest.Options{})
		hdr := binary.BigEndian.AppendUint32(nil, 0x25609513)
		hdr = binary.BigEndian.AppendUint16(hdr, 0)
		hdr = binary.BigEndian.AppendUint16(hdr, nbdtest.CmdWrite)
		hdr = binary.BigEndian.AppendUint64(hdr, 1)
		hdr = binary.BigEndian.AppendUint64(hdr, 0)
		hdr = binary.BigEndian.AppendUint32(hdr, 1<<20)
		c.Conn.Write(append(hdr, bytes.Repeat([]byte{0xee}, 300<<10)...))
		c.Close()
	})
	t.Run("disconnect mid-header", func(t *testing.T) {
		c := fx.dial(t, "rw", nbdtest.Options{})
		c.Conn.Write([]byte{0x25, 0x60, 0x95, 0x13, 0, 0})
		c.Close()
	})
	fx.alive(t)
	if hashBackend(t, fx.rw) != before || hashBackend(t, fx.ro) != beforeRO {
		t.Fatal("refused requests changed a backend")
	}
}

func TestDataCommands(t *testing.T) {
	fx := newProtoFixture(t, nil)
	c := fx.dial(t, "rw", nbdtest.Options{Structured: true})

	// A read of a hole comes back as one OFFSET_HOLE chunk.
	r, err := c.Do(nbdtest.CmdRead, 0, 0, 64<<10, nil)
	if err != nil || r.Holes != 1 || !bytes.Equal(r.Data, make([]byte, 64<<10)) {
		t.Fatalf("hole read: holes=%d err=%v", r.Holes, err)
	}
	// FUA write, then block status sees data where written and holes elsewhere.
	data := bytes.Repeat([]byte{7}, 8192)
	if _, err := c.Do(nbdtest.CmdWrite, nbdtest.CmdFlagFUA, 3<<20, uint32(len(data)), data); err != nil {
		t.Fatal(err)
	}
	r, err = c.Do(nbdtest.CmdBlockStatus, 0, 3<<20-4096, 3*4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []nbdtest.Extent{{Length: 4096, Flags: 3}, {Length: 8192, Flags: 0}}
	if len(r.Extents) < 2 || r.Extents[0] != want[0] || r.Extents[1] != want[1] {
		t.Fatalf("block status extents %v, want prefix %v", r.Extents, want)
	}
	r, err = c.Do(nbdtest.CmdBlockStatus, nbdtest.CmdFlagReqOne, 0, 4<<20, nil)
	if err != nil || len(r.Extents) != 1 {
		t.Fatalf("REQ_ONE block status: %v %v", r.Extents, err)
	}
	// Trim and write zeroes punch holes; NO_HOLE writes real zeroes.
	if _, err := c.Do(nbdtest.CmdTrim, 0, 3<<20, 4096, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(nbdtest.CmdWriteZeroes, 0, 3<<20+4096, 4096, nil); err != nil {
		t.Fatal(err)
	}
	r, err = c.Do(nbdtest.CmdBlockStatus, 0, 3<<20, 8192, nil)
	if err != nil || len(r.Extents) != 1 || r.Extents[0] != (nbdtest.Extent{Length: 8192, Flags: 3}) {
		t.Fatalf("after trim and write zeroes: %v %v", r.Extents, err)
	}
	if _, err := c.Do(nbdtest.CmdWriteZeroes, nbdtest.CmdFlagNoHole, 3<<20, 4096, nil); err != nil {
		t.Fatal(err)
	}
	r, err = c.Do(nbdtest.CmdBlockStatus, nbdtest.CmdFlagReqOne, 3<<20, 8192, nil)
	if err != nil || r.Extents[0].Flags&1 != 0 {
		t.Fatalf("NO_HOLE write zeroes left a hole: %v %v", r.Extents, err)
	}
	// Unaligned read spanning data.
	got := make([]byte, 10)
	if _, err := c.ReadAt(got, 1<<20+3); err != nil || string(got) != "fer!coffer" {
		t.Fatalf("unaligned read %q %v", got, err)
	}
	c.Disconnect()
}

// TestPipelinedRequests sends many requests before reading any reply and
// checks every handle is answered exactly once with the right data.
func TestPipelinedRequests(t *testing.T) {
	fx := newProtoFixture(t, func(s *nbd.Server) { s.MaxInFlight = 4 })
	c := fx.dial(t, "rw", nbdtest.Options{})
	const n = 200
	go func() {
		for i := 0; i < n; i++ {
			p := bytes.Repeat([]byte{byte(i)}, 4096)
			if err := c.SendRequest(nbdtest.CmdWrite, 0, uint64(i)*4096, 4096, p); err != nil {
				return
			}
		}
	}()
	seen := make(map[uint64]bool)
	br := c.Conn
	for i := 0; i < n; i++ {
		var h [16]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if e := binary.BigEndian.Uint32(h[4:8]); e != 0 {
			t.Fatalf("write failed with errno %d", e)
		}
		hd := binary.BigEndian.Uint64(h[8:16])
		if seen[hd] {
			t.Fatalf("handle %d answered twice", hd)
		}
		seen[hd] = true
	}
	buf := make([]byte, 4096)
	for i := 0; i < n; i += 37 {
		if _, err := fx.rw.ReadAt(buf, int64(i)*4096); err != nil || buf[0] != byte(i) || buf[4095] != byte(i) {
			t.Fatalf("block %d holds %d, want %d", i, buf[0], byte(i))
		}
	}
	c.Disconnect()
}

// TestShutdownReleasesExports checks graceful shutdown closes idle
// transmission connections and calls Release once per connection.
func TestShutdownReleasesExports(t *testing.T) {
	ex := &exports{}
	ex.add("rw", fileBackend(t, 1<<20), false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Resolver: ex.resolve}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	var cs []*nbdtest.Client
	for i := 0; i < 3; i++ {
		c, err := nbdtest.Dial(context.Background(), ln.Addr().String(), "rw", nbdtest.Options{Structured: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, nbd.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	for _, c := range cs {
		waitClosed(t, c.Conn)
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.released != 3 {
		t.Fatalf("Release called %d times, want 3", ex.released)
	}
}
