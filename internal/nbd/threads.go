package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A plain (TCP or Unix) connection in transmission is served by OS
// threads of its own that block in system calls on the socket, as
// nbdkit's are, rather than by goroutines woken by Go's network poller:
// the kernel wakes the thread blocked in recv when a request arrives,
// where the poller took an epoll_pwait and, often, a futex wake-up of
// another thread per wait.
//
// The threads take turns at reading. The thread holding the read turn
// reads a request (the header from a buffer that one recv fills with as
// many requests as have arrived, a WRITE's payload with one recv
// MSG_WAITALL). A READ or WRITE that the backend can complete at once
// (Inliner) it serves itself, replies, and reads on: no hand-off at all.
// Any other request it serves after passing the turn on, starting a
// thread for it when none is waiting (up to MaxInFlight), so requests of
// one connection overlap and a request that waits for the disk or for
// background work holds up only its own thread. A reply leaves in one
// blocking writev (see send).
//
// Measured (docs/design.md, "NBD connections on blocking threads"):
// passing the turn on for every request, as nbdkit does, doubled the CPU
// time per 4 KiB request; a Go thread parked on a mutex is woken through
// the scheduler (futex wake-ups of two threads), not by the kernel alone.
//
// Stopping: shutdown(2) wakes a thread blocked in recv or writev (close
// does not); SHUT_RD when draining (requests read so far are answered),
// SHUT_RDWR to abort. The descriptor is closed only once every thread
// has returned, so its number cannot be reused under a blocked call.

// sock is a connected socket's own descriptor, in blocking mode, outside
// Go's network poller.
type sock struct {
	fd     int
	mu     sync.Mutex // guards closed against shutdown
	closed bool
}

// detachSocket duplicates nc's descriptor, puts it in blocking mode and
// closes nc, which removes nc's descriptor from the network poller (the
// socket stays open through the duplicate).
func detachSocket(nc net.Conn) (*sock, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fd := -1
	var derr error
	if err := raw.Control(func(p uintptr) {
		fd, derr = unix.FcntlInt(p, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("duplicate socket descriptor: %w", derr)
	}
	// O_NONBLOCK belongs to the open file, shared with nc's descriptor,
	// which is closed next and never used again.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set socket blocking: %w", err)
	}
	nc.Close()
	return &sock{fd: fd}, nil
}

// Read reads what is there, waiting for at least one byte.
func (s *sock) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(s.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, fmt.Errorf("read socket: %w", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// readFull fills p, asking the kernel to return only when it is full
// (MSG_WAITALL): one wake-up for a whole WRITE payload.
func (s *sock) readFull(p []byte) error {
	for len(p) > 0 {
		n, _, err := unix.Recvfrom(s.fd, p, unix.MSG_WAITALL)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("read payload: %w", err)
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
	}
	return nil
}

// writev writes all of bufs (which it consumes) in as few writev calls
// as the kernel allows.
func (s *sock) writev(bufs [][]byte) error {
	const iovMax = 1024
	for len(bufs) > 0 {
		n, err := unix.Writev(s.fd, bufs[:min(len(bufs), iovMax)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write socket: %w", err)
		}
		for n > 0 && len(bufs) > 0 {
			k := min(n, len(bufs[0]))
			bufs[0] = bufs[0][k:]
			n -= k
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}

// shutdown wakes threads blocked on the socket (how: unix.SHUT_RD or
// unix.SHUT_RDWR); a no-op once closed.
func (s *sock) shutdown(how int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		// ENOTCONN when the peer is gone already: nothing to wake.
		_ = unix.Shutdown(s.fd, how)
	}
}

func (s *sock) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		unix.Close(s.fd)
	}
}

// closeSock closes the detached socket, if any; its threads have ended.
func (c *conn) closeSock() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sock != nil {
		c.sock.close()
	}
}

// threads is the set of OS threads serving one connection.
type threads struct {
	c    *conn
	pr   payloadReader
	turn sync.Mutex   // held by the thread reading the next request
	idle atomic.Int32 // threads waiting for the turn
	n    int          // threads started; guarded by turn
	done bool         // no more requests will be read; guarded by turn
	wg   sync.WaitGroup
}

// transmitThreads serves the connection on its threads until the client
// disconnects or the connection is drained or aborted, and returns once
// every thread has.
func (c *conn) transmitThreads(ctx context.Context) {
	t := &threads{c: c, pr: payloadReader{sock: c.sock}, n: 1}
	t.wg.Add(1)
	t.run(ctx)
	t.wg.Wait()
}

// run is one thread: it takes the read turn and reads requests, serving
// those that complete at once while it holds the turn; it passes the turn
// on (starting another thread if none waits for it) to serve any other,
// until the connection reads no more.
func (t *threads) run(ctx context.Context) {
	defer t.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	limit := t.c.srv.maxInFlight()
	inl, _ := t.c.exp.Backend.(Inliner)
	turn := false
	for {
		if !turn {
			t.idle.Add(1)
			t.turn.Lock()
			t.idle.Add(-1)
			turn = true
		}
		if t.done {
			t.turn.Unlock()
			return
		}
		req, payload, hold, ok := t.c.next(ctx, &t.pr)
		if !ok {
			t.done = true
			t.turn.Unlock()
			return
		}
		start := t.c.srv.clock().Now()
		if inl != nil && t.c.tryInline(inl, req, payload, hold) {
			t.c.srv.Metrics.request(req, t.c.srv.clock().Now().Sub(start))
			continue
		}
		if t.idle.Load() == 0 && t.n < limit {
			t.n++
			t.wg.Add(1)
			go t.run(ctx)
		}
		t.turn.Unlock()
		turn = false
		t.c.serveRequest(req, payload, hold, start)
	}
}
