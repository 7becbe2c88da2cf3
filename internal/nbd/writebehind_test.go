//go:build linux

package nbd_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"

	"coffer/internal/nbd/nbdtest"
)

// gatedBackend is a durableBackend that is also an Inliner whose
// TryWriteAt of a write of gateLen bytes or more waits for gate, after
// telling entered: the test holds a large write in the backend.
type gatedBackend struct {
	*durableBackend
	gateLen int
	entered chan struct{}
	gate    chan struct{}
	open    sync.Once
}

func newGatedBackend(size, gateLen int) *gatedBackend {
	b := &gatedBackend{
		durableBackend: &durableBackend{cache: make([]byte, size), durable: make([]byte, size)},
		gateLen:        gateLen, entered: make(chan struct{}, 16), gate: make(chan struct{}),
	}
	return b
}

// release lets the held writes go on.
func (b *gatedBackend) release() { b.open.Do(func() { close(b.gate) }) }

func (b *gatedBackend) TryReadAt(p []byte, off int64) (int, bool, error) {
	n, err := b.ReadAt(p, off)
	return n, true, err
}

func (b *gatedBackend) TryWriteAt(p []byte, off int64) (bool, error) {
	if len(p) >= b.gateLen {
		b.entered <- struct{}{}
		<-b.gate
	}
	_, err := b.WriteAt(p, off)
	return true, err
}

// simpleReply reads one simple reply from c (data of dataLen bytes when
// its handle is dataHandle) and returns its handle; the test fails on an
// error reply or when nothing comes for a minute (the server waits for
// something it should not).
func simpleReply(t *testing.T, c *nbdtest.Client, dataHandle uint64, dataLen int) (uint64, []byte) {
	t.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(time.Minute))
	var h [16]byte
	if _, err := io.ReadFull(c.Conn, h[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if e := binary.BigEndian.Uint32(h[4:8]); e != 0 {
		t.Fatalf("reply %x: errno %d", h, e)
	}
	handle := binary.BigEndian.Uint64(h[8:16])
	if handle != dataHandle {
		return handle, nil
	}
	p := make([]byte, dataLen)
	if _, err := io.ReadFull(c.Conn, p); err != nil {
		t.Fatalf("read reply data: %v", err)
	}
	return handle, p
}

// TestWriteBehind: a large WRITE is written behind the connection's
// reader (its write-behind worker), so the reader goes on to the next
// request, here a READ answered while the write is held in the backend;
// the WRITEs and the FLUSH received after it wait for it and are applied
// in the order received, a small WRITE to the same range included, and
// the FLUSH makes durable every write received before it on the
// connection, though their replies had not been sent when it arrived.
func TestWriteBehind(t *testing.T) {
	const size = 4 << 20
	b := newGatedBackend(size, 1<<20)
	ex := &exports{}
	ex.add("disk", b, false)
	addr, _ := startServer(t, ex, nil)
	// Cleanups run last first: a failed test does not leave the server's
	// shutdown waiting for the gate.
	t.Cleanup(b.release)
	c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	copy(b.cache[3<<20:], "read me")

	a := bytes.Repeat([]byte{0xaa}, 1<<20)
	bb := bytes.Repeat([]byte{0xbb}, 1<<20)
	cc := bytes.Repeat([]byte{0xcc}, 4096)
	send := func(typ uint16, off uint64, length uint32, p []byte) {
		t.Helper()
		if err := c.SendRequest(typ, 0, off, length, p); err != nil {
			t.Fatal(err)
		}
	}
	send(nbdtest.CmdWrite, 0, 1<<20, a)     // handle 1
	<-b.entered                             // held in the backend
	send(nbdtest.CmdWrite, 0, 1<<20, bb)    // 2: behind 1
	send(nbdtest.CmdWrite, 0, 4096, cc)     // 3: small, behind 2
	send(nbdtest.CmdFlush, 0, 0, nil)       // 4: behind 3
	send(nbdtest.CmdRead, 3<<20, 4096, nil) // 5: answered now
	h, got := simpleReply(t, c, 5, 4096)
	if h != 5 || !bytes.HasPrefix(got, []byte("read me")) {
		t.Fatalf("first reply: to request %d; want the READ (5), with its data, while the 1 MiB write is held", h)
	}
	b.mu.Lock()
	flushes := b.flushes
	b.mu.Unlock()
	if flushes != 0 {
		t.Fatal("the FLUSH ran before the writes received before it")
	}
	b.release()
	for want := uint64(1); want <= 4; want++ {
		if h, _ := simpleReply(t, c, 0, 0); h != want {
			t.Fatalf("reply to %d, want %d: the writes and the FLUSH are answered in the order received", h, want)
		}
	}
	want := append(append([]byte{}, cc...), bb[4096:]...)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.flushes != 1 {
		t.Errorf("%d flushes, want 1", b.flushes)
	}
	if !bytes.Equal(b.cache[:1<<20], want) {
		t.Error("the writes were not applied in the order received (1 MiB of 0xaa, 1 MiB of 0xbb, 4 KiB of 0xcc at 0)")
	}
	if !bytes.Equal(b.durable[:1<<20], want) {
		t.Error("the FLUSH did not make durable the writes received before it")
	}
}

// TestWriteBehindClientGone: a client that goes away while large writes
// it sent wait behind one held in the backend ends its connection once
// they are done (the export is released) and the writes it sent whole are
// applied; the server goes on serving.
func TestWriteBehindClientGone(t *testing.T) {
	const size = 8 << 20
	b := newGatedBackend(size, 1<<20)
	ex := &exports{}
	ex.add("disk", b, false)
	addr, _ := startServer(t, ex, nil)
	// Cleanups run last first: a failed test does not leave the server's
	// shutdown waiting for the gate.
	t.Cleanup(b.release)
	c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := bytes.Repeat([]byte{byte(1 + i)}, 1<<20)
		if err := c.SendRequest(nbdtest.CmdWrite, 0, uint64(i)<<20, 1<<20, p); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-b.entered
		}
	}
	// Half of a fourth: never applied.
	if _, err := c.Conn.Write(append(writeHeader(3<<20, 1<<20), bytes.Repeat([]byte{9}, 512<<10)...)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	b.release()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		ex.mu.Lock()
		released := ex.released
		ex.mu.Unlock()
		if released == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection of a client gone with writes queued was not ended")
		}
	}
	b.mu.Lock()
	for i := range 4 {
		want := byte(1 + i)
		if i == 3 {
			want = 0
		}
		if got := b.cache[i<<20 : (i+1)<<20]; !bytes.Equal(got, bytes.Repeat([]byte{want}, 1<<20)) {
			t.Errorf("MiB %d: not %#x throughout", i, want)
		}
	}
	b.mu.Unlock()
	c2, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got := make([]byte, 4096)
	if _, err := c2.ReadAt(got, 2<<20); err != nil || got[0] != 3 {
		t.Fatalf("a new connection reads %#x (%v), want 0x03", got[0], err)
	}
}
