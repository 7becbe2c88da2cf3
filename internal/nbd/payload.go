package nbd

import (
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxLowat bounds the receive low-water mark a WRITE payload sets: the
// kernel grows the socket's receive buffer to hold that much, per
// connection.
const maxLowat = 1 << 20

// payloadReader reads WRITE payloads. On a plain TCP connection it reads
// the part not buffered yet straight from the socket into the request's
// buffer, and before waiting for more it sets the socket's receive
// low-water mark (SO_RCVLOWAT) to what is missing: the goroutine is then
// woken once when the rest has arrived, rather than once for every
// segment the client's send happened to be cut into (each wake-up a
// failed read, a netpoller event and a goroutine switch; a 1 MiB payload
// on loopback took several). The mark is back at 1 before anything else
// is read. On a detached socket (socket.go) it reads the rest with one
// blocking recv. On other connections (TLS) it reads through the
// buffered reader.
type payloadReader struct {
	sock  *sock           // set: a blocking recv on this socket
	raw   syscall.RawConn // nil: read through the buffered reader
	lowat bool            // SO_RCVLOWAT is above 1 now
}

func newPayloadReader(rw net.Conn) payloadReader {
	tc, ok := rw.(*net.TCPConn)
	if !ok {
		return payloadReader{}
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return payloadReader{}
	}
	return payloadReader{raw: raw}
}

// read fills p with the payload that follows a request header read from
// c.br: first the bytes c.br holds, then the rest.
func (pr *payloadReader) read(c *conn, p []byte) error {
	k := 0
	if c.br.Buffered() > 0 {
		// Only what is buffered: bufio does not read while it holds data.
		k, _ = c.br.Read(p)
	}
	if k == len(p) {
		return nil
	}
	if pr.sock != nil {
		return pr.sock.readFull(p[k:])
	}
	if pr.raw == nil {
		_, err := io.ReadFull(c.br, p[k:])
		return err
	}
	err := pr.readRaw(p[k:])
	if pr.lowat {
		// The next header may be all there is to come: wake at one byte.
		if serr := pr.setLowat(1); err == nil {
			err = serr
		}
		pr.lowat = false
	}
	return err
}

// readRaw reads exactly len(p) bytes from the socket. The read deadline
// applies (a draining connection stops waiting).
func (pr *payloadReader) readRaw(p []byte) error {
	var err error
	werr := pr.raw.Read(func(fd uintptr) bool {
		for len(p) > 0 {
			n, e := unix.Read(int(fd), p)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				// Sleep until the rest is there.
				if want := min(len(p), maxLowat); want > 1 {
					if err = pr.setLowat(want); err != nil {
						return true
					}
					pr.lowat = true
				}
				return false
			case e != nil:
				err = fmt.Errorf("read payload: %w", e)
				return true
			case n == 0:
				err = io.ErrUnexpectedEOF
				return true
			}
			p = p[n:]
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return err
}

func (pr *payloadReader) setLowat(n int) error {
	var err error
	cerr := pr.raw.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set SO_RCVLOWAT to %d: %w", n, err)
	}
	return nil
}
