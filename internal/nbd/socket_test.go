//go:build linux

package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"coffer/internal/nbd"
	"coffer/internal/nbd/nbdtest"
)

// readHeader encodes a READ request header.
func readHeader(handle, off uint64, length uint32) []byte {
	h := make([]byte, 28)
	binary.BigEndian.PutUint32(h[0:4], 0x25609513) // NBD_REQUEST_MAGIC
	binary.BigEndian.PutUint16(h[6:8], nbdtest.CmdRead)
	binary.BigEndian.PutUint64(h[8:16], handle)
	binary.BigEndian.PutUint64(h[16:24], off)
	binary.BigEndian.PutUint32(h[24:28], length)
	return h
}

// TestStopWakesBlockedThreads: a connection's threads block in system
// calls the server must interrupt (closing a descriptor does not wake
// them): one idle in recv, one in the middle of a WRITE payload, one in
// writev because its client reads no replies. Closing the server,
// cancelling Serve's context, and a Shutdown whose context ends each
// wake them all: the call returns, Serve returns, every connection is
// closed and every export released, and the half-received write changed
// nothing.
func TestStopWakesBlockedThreads(t *testing.T) {
	for _, how := range []string{"Close", "cancel", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			ex := &exports{}
			f := fileBackend(t, 64<<20)
			ex.add("rw", f, false)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &nbd.Server{Resolver: ex.resolve, MaxRequest: 1 << 20}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx, ln) }()
			dial := func() *nbdtest.Client {
				c, err := nbdtest.Dial(t.Context(), ln.Addr().String(), "rw", nbdtest.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}

			idle := dial()
			half := dial()
			msg := append(writeHeader(0, 1<<20), bytes.Repeat([]byte{0xa5}, 1<<19)...)
			if _, err := half.Conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			deaf := dial()
			var reqs []byte
			for i := range 64 {
				reqs = append(reqs, readHeader(uint64(i), uint64(i%64)<<20, 1<<20)...)
			}
			if _, err := deaf.Conn.Write(reqs); err != nil {
				t.Fatal(err)
			}
			// The server is writing replies: the first header is here;
			// 64 MiB of them fill the socket buffers and block writev.
			var rep [16]byte
			if _, err := io.ReadFull(deaf.Conn, rep[:]); err != nil {
				t.Fatalf("first reply: %v", err)
			}

			stopped := make(chan error, 1)
			go func() {
				switch how {
				case "Close":
					stopped <- srv.Close()
				case "cancel":
					cancel()
					stopped <- nil
				case "Shutdown":
					// The deaf client never lets the drain finish.
					sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
					defer scancel()
					err := srv.Shutdown(sctx)
					if !errors.Is(err, context.DeadlineExceeded) {
						err = fmt.Errorf("Shutdown returned %v, want the deadline", err)
					} else {
						err = nil
					}
					stopped <- err
				}
			}()
			// A hang guard, not a timing requirement.
			select {
			case err := <-stopped:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("stopping the server hung with threads blocked in recv and writev")
			}
			select {
			case err := <-served:
				want := nbd.ErrServerClosed
				if how == "cancel" {
					want = context.Canceled
				}
				if !errors.Is(err, want) {
					t.Fatalf("Serve returned %v, want %v", err, want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Serve did not return")
			}
			if how == "cancel" {
				// Serve does not wait for its connections; Close does.
				srv.Close()
			}
			waitClosed(t, idle.Conn)
			waitClosed(t, half.Conn)
			waitClosed(t, deaf.Conn)
			ex.mu.Lock()
			released := ex.released
			ex.mu.Unlock()
			if released != 3 {
				t.Errorf("Release called %d times, want 3", released)
			}
			got := make([]byte, 1<<20)
			if _, err := f.ReadAt(got, 0); err != nil || !allZeroBytes(got) {
				t.Errorf("a half-received write changed the export (%v)", err)
			}
		})
	}
}

// TestClientGoneMidPayload: a client that disconnects in the middle of a
// WRITE payload ends its connection (the export is released and left as
// it was) and nothing else: another connection to the same export keeps
// working.
func TestClientGoneMidPayload(t *testing.T) {
	ex := &exports{}
	// An Inliner: a whole 1 MiB write would be served on the reader.
	inl := &inlineFile{File: fileBackend(t, 4<<20), mode: "ok"}
	f := inl.File
	ex.add("rw", inl, false)
	addr, _ := startServer(t, ex, nil)
	other, err := nbdtest.Dial(t.Context(), addr, "rw", nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := nbdtest.Dial(t.Context(), addr, "rw", nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	msg := append(writeHeader(1<<20, 1<<20), bytes.Repeat([]byte{0x5a}, 300<<10)...)
	if _, err := c.Conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ex.mu.Lock()
		released := ex.released
		ex.mu.Unlock()
		if released == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection of a client gone mid-payload was not ended")
		}
	}
	got := make([]byte, 1<<20)
	if _, err := f.ReadAt(got, 1<<20); err != nil || !allZeroBytes(got) {
		t.Fatalf("a half-received write changed the export (%v)", err)
	}
	inl.mu.Lock()
	if inl.tryWrites != 0 || inl.slowWrites != 0 {
		t.Errorf("a half-received write reached the backend (%d inline, %d usual)", inl.tryWrites, inl.slowWrites)
	}
	inl.mu.Unlock()
	p := bytes.Repeat([]byte("still here"), 400)
	if _, err := other.WriteAt(p, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ReadAt(got[:len(p)], 4096); err != nil || !bytes.Equal(got[:len(p)], p) {
		t.Fatalf("the other connection after one went away: %v", err)
	}
}

// TestManyConnections: 32 connections at once, each pipelining writes of
// 4 KiB and 256 KiB into a region of its own and then reading the region
// back, get every reply once and the right data, and the export holds
// what each wrote.
func TestManyConnections(t *testing.T) {
	const (
		conns  = 32
		region = 1 << 20
	)
	ex := &exports{}
	f := fileBackend(t, conns*region)
	ex.add("rw", f, false)
	addr, _ := startServer(t, ex, nil)
	want := make([]byte, conns*region)
	for i := range want {
		want[i] = byte(i>>12) ^ byte(i*31)
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				c, err := nbdtest.Dial(t.Context(), addr, "rw", nbdtest.Options{})
				if err != nil {
					return err
				}
				defer c.Close()
				c.Conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang fails
				base := k * region
				// 128 writes of 4 KiB over the first half, 2 of 256 KiB
				// over the second, all sent before any reply is read.
				type w struct{ off, n int }
				var ws []w
				for off := 0; off < region/2; off += 4096 {
					ws = append(ws, w{base + off, 4096})
				}
				for off := region / 2; off < region; off += 256 << 10 {
					ws = append(ws, w{base + off, 256 << 10})
				}
				sent := make(chan error, 1)
				go func() {
					for _, x := range ws {
						if err := c.SendRequest(nbdtest.CmdWrite, 0, uint64(x.off), uint32(x.n), want[x.off:x.off+x.n]); err != nil {
							sent <- err
							return
						}
					}
					sent <- nil
				}()
				seen := make(map[uint64]bool)
				for range ws {
					var h [16]byte
					if _, err := io.ReadFull(c.Conn, h[:]); err != nil {
						return fmt.Errorf("connection %d: reply: %w", k, err)
					}
					if e := binary.BigEndian.Uint32(h[4:8]); e != 0 {
						return fmt.Errorf("connection %d: write failed with errno %d", k, e)
					}
					hd := binary.BigEndian.Uint64(h[8:16])
					if seen[hd] {
						return fmt.Errorf("connection %d: handle %d answered twice", k, hd)
					}
					seen[hd] = true
				}
				if err := <-sent; err != nil {
					return err
				}
				got := make([]byte, region)
				if _, err := c.ReadAt(got, int64(base)); err != nil {
					return err
				}
				if !bytes.Equal(got, want[base:base+region]) {
					return fmt.Errorf("connection %d read back other data", k)
				}
				return c.Disconnect()
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if hashBackend(t, f) != hashReader(t, bytes.NewReader(want)) {
		t.Error("the export does not hold what the connections wrote")
	}
}

// TestUnixSocket: an export served on a Unix socket takes writes and
// reads of every size, and the server stops cleanly.
func TestUnixSocket(t *testing.T) {
	ex := &exports{}
	f := fileBackend(t, 8<<20)
	ex.add("rw", f, false)
	path := filepath.Join(t.TempDir(), "nbd.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Resolver: ex.resolve}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := nbdtest.Negotiate(t.Context(), nc, "rw", nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{1, 4096, 1 << 20, 4 << 20} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*13 + n)
		}
		if _, err := c.WriteAt(p, 1<<20); err != nil {
			t.Fatalf("write of %d bytes: %v", n, err)
		}
		got := make([]byte, n)
		if _, err := c.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read back %d bytes: %v", n, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, nbd.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	waitClosed(t, c.Conn)
}
