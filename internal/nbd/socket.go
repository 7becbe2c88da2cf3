package nbd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A plain (TCP or Unix) connection in transmission is read by an OS
// thread of its own blocked in recv on the socket, taken out of Go's
// network poller, as nbdkit's connections are: the kernel wakes that
// thread when a request arrives, where the poller took an epoll_pwait
// and, often, a futex wake-up of another thread per wait. The reader's
// buffer takes as many requests as have arrived with one recv, a WRITE's
// payload arrives with one recv MSG_WAITALL, what completes at once
// (Inliner) is served on the thread, anything else on a goroutine as on
// the poller, and replies leave with one blocking writev (see send).
//
// Measured (docs/design.md, "Night session 2"): per 4 KiB request this
// takes half the system calls and no epoll_pwait; passing the read on to
// another locked thread for every request, as nbdkit does with its
// threads, doubled the CPU time per 4 KiB request and the context
// switches per 1 MiB request (a Go thread parked on a mutex is woken
// through the scheduler, two futex wake-ups, not by the kernel alone).
//
// Stopping: shutdown(2) wakes a thread blocked in recv or writev (close
// does not); SHUT_RD when draining (requests read so far are answered),
// SHUT_RDWR to abort. The descriptor is closed only once transmission
// has returned and every request goroutine with it, so its number cannot
// be reused under a blocked call.

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
		case errors.Is(err, unix.EINTR):
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
		case errors.Is(err, unix.EINTR):
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
		if errors.Is(err, unix.EINTR) {
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

// closeSock closes the detached socket, if any; transmission has ended.
func (c *conn) closeSock() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sock != nil {
		c.sock.close()
	}
}
