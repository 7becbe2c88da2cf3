package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"

	"coffer/internal/audit"
)

// conn is one client connection, from accept to close.
type conn struct {
	srv *Server
	nc  net.Conn // the accepted connection, closed on every exit path
	rw  net.Conn // nc, or the TLS connection over it after STARTTLS
	// sock is the socket taken out of Go's network poller for
	// transmission on a plain connection (see socket.go); nil on TLS
	// and on connections that are not sockets. Set under dmu.
	sock *sock
	br   *bufio.Reader
	log  *slog.Logger

	dmu      sync.Mutex // guards draining against deadline changes and sock
	draining bool

	// Negotiated during the handshake.
	tls        bool
	fixed      bool
	noZeroes   bool
	structured bool
	metaBase   bool   // base:allocation selected
	metaName   string // export name the meta context was selected for

	// Transmission phase.
	exp      *Export
	size     int64
	flags    uint16
	inflight sync.WaitGroup
	slots    chan struct{}
	budget   *semaphore.Weighted

	// Replies waiting to be written, and whether a request goroutine is
	// writing them (see send).
	wmu     sync.Mutex
	queue   []*outReply
	spare   []*outReply
	writing bool
	broken  bool        // a write failed: the connection is closed
	iov     net.Buffers // the writer's scratch; only the writer uses it

	// ahead are READs the reader took out of the stream to answer a
	// BLOCK_STATUS after them first (blockStatusAhead); next returns
	// them before reading on. Only the reader uses it.
	ahead []request
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		srv: s,
		nc:  nc,
		rw:  nc,
		log: s.logger().With("remote", nc.RemoteAddr().String()),
	}
}

// drain asks the connection to finish: a handshaking connection closes, a
// transmitting one stops reading requests and closes once the requests it
// has read are answered.
func (c *conn) drain() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.draining = true
	// A deadline in the past wakes a blocked Read; no wall clock needed.
	c.nc.SetReadDeadline(time.Unix(1, 0))
	if c.sock != nil {
		// A thread blocked in recv wakes with end of file; replies
		// still go out.
		c.sock.shutdown(unix.SHUT_RD)
	}
}

// abort closes the connection at once: blocked reads and writes fail.
func (c *conn) abort() {
	c.dmu.Lock()
	if c.sock != nil {
		c.sock.shutdown(unix.SHUT_RDWR)
	}
	c.dmu.Unlock()
	c.nc.Close()
}

// detach takes a plain connection's socket out of Go's network poller
// for transmission (see sock). It reports false when the connection is
// draining and must end.
func (c *conn) detach() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.draining {
		return false
	}
	if c.tls {
		return true
	}
	s, err := detachSocket(c.nc)
	if err != nil {
		// Not a socket (net.Pipe in tests) or out of descriptors:
		// serve it through the poller.
		c.log.Debug("nbd connection stays on the network poller", "err", err)
		return true
	}
	c.sock = s
	return true
}

// setReadDeadline sets the deadline unless the connection is draining.
func (c *conn) setDeadline(t time.Time) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.draining {
		return false
	}
	c.nc.SetDeadline(t)
	return true
}

func (c *conn) serve(ctx context.Context) {
	defer c.nc.Close()
	c.srv.Metrics.connOpened()
	defer c.srv.Metrics.connClosed()
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("nbd connection panicked", "panic", fmt.Sprint(r))
		}
	}()

	if !c.setDeadline(c.srv.clock().Now().Add(c.srv.handshakeTimeout())) {
		return
	}
	exp, err := c.handshake(ctx)
	if err != nil {
		if !errors.Is(err, errAbort) {
			c.log.Info("nbd handshake ended", "err", err)
		}
		return
	}
	if exp.Release != nil {
		defer exp.Release()
	}
	if !c.setDeadline(time.Time{}) || !c.detach() {
		return
	}
	defer c.closeSock()
	c.log.Debug("nbd transmission started", "size", c.size, "flags", c.flags, "tls", c.tls, "structured", c.structured, "blocking", c.sock != nil)
	c.transmit(ctx, exp)
	if c.tls {
		c.closeTLS()
	}
}

// tlsCloseTimeout bounds how long a TLS connection whose transmission has
// ended waits for the client to close its side after the server's
// close_notify.
const tlsCloseTimeout = 5 * time.Second

// closeTLS ends a TLS connection in order: the server's close_notify, then
// whatever the client still sends read and dropped until it closes its
// side (its own close_notify, which libnbd's nbd_shutdown sends after
// NBD_CMD_DISC) or tlsCloseTimeout passes. Closing the socket with the
// client's close_notify unread, or arriving after, resets the connection
// under the client's orderly shutdown (libnbd: "server closed socket
// unexpectedly"), and without the server's close_notify the client cannot
// tell the end from a truncation. A draining or aborted connection closes
// at once.
func (c *conn) closeTLS() {
	tc, ok := c.rw.(*tls.Conn)
	if !ok || !c.setDeadline(c.srv.clock().Now().Add(tlsCloseTimeout)) {
		return
	}
	if err := tc.CloseWrite(); err != nil {
		return
	}
	// Until the client's close_notify (EOF), its close, the deadline, or
	// a drain or abort.
	_, _ = io.Copy(io.Discard, c.br)
}

// errAbort ends a handshake the client ended itself.
var errAbort = errors.New("nbd: client aborted negotiation")

func (c *conn) handshake(ctx context.Context) (*Export, error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:8], magicInit)
	binary.BigEndian.PutUint64(hello[8:16], magicOpt)
	binary.BigEndian.PutUint16(hello[16:18], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.rw.Write(hello[:]); err != nil {
		return nil, fmt.Errorf("send greeting: %w", err)
	}
	var cf [4]byte
	c.br = bufio.NewReaderSize(c.rw, 4096)
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, fmt.Errorf("read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return nil, fmt.Errorf("%w: unknown client flags %#x", errMalformed, flags)
	}
	c.fixed = flags&flagCFixedNewstyle != 0
	c.noZeroes = flags&flagCNoZeroes != 0

	var hdr [optHeaderSize]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return nil, fmt.Errorf("read option header: %w", err)
		}
		h, err := decodeOptHeader(hdr[:])
		if err != nil {
			return nil, err
		}
		if !c.fixed && h.opt != optExportName {
			return nil, fmt.Errorf("%w: option %d from a non-fixed-newstyle client", errMalformed, h.opt)
		}
		if h.length > maxOptionLen {
			if h.length > maxOptionDiscard || h.opt == optExportName {
				return nil, fmt.Errorf("%w: option %d payload of %d bytes", errMalformed, h.opt, h.length)
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(h.length)); err != nil {
				return nil, fmt.Errorf("skip oversized option: %w", err)
			}
			if err := c.optReply(h.opt, repErrTooBig, []byte("option payload too large")); err != nil {
				return nil, err
			}
			continue
		}
		data := make([]byte, h.length)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return nil, fmt.Errorf("read option %d payload: %w", h.opt, err)
		}
		c.log.Debug("nbd option", "opt", h.opt, "length", h.length)
		exp, err := c.option(ctx, h.opt, data)
		if err != nil || exp != nil {
			return exp, err
		}
	}
}

// option handles one option. It returns a non-nil export when transmission
// begins, an error when the connection must close.
func (c *conn) option(ctx context.Context, opt uint32, data []byte) (*Export, error) {
	if opt == optAbort {
		// Best effort: the client may already have closed.
		c.optReply(opt, repAck, nil)
		return nil, errAbort
	}
	if c.srv.isClosing() {
		if opt == optExportName {
			return nil, errors.New("server shutting down")
		}
		return nil, c.optReply(opt, repErrShutdown, []byte("server is shutting down"))
	}
	if c.srv.RequireTLS && !c.tls && opt != optStartTLS {
		if opt == optExportName {
			return nil, errors.New("NBD_OPT_EXPORT_NAME before the required TLS upgrade")
		}
		return nil, c.optReply(opt, repErrTLSReqd, []byte("TLS is required"))
	}
	switch opt {
	case optExportName:
		return c.exportName(ctx, data)
	case optList:
		// Export names are access tokens: never enumerate them.
		return nil, c.optReply(opt, repErrPolicy, []byte("export listing is disabled"))
	case optStartTLS:
		return nil, c.startTLS(ctx, data)
	case optInfo, optGo:
		return c.infoGo(ctx, opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, c.optReply(opt, repErrInvalid, []byte("unexpected payload"))
		}
		c.structured = true
		return nil, c.optReply(opt, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return nil, c.metaContext(opt, data)
	default:
		return nil, c.optReply(opt, repErrUnsup, nil)
	}
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint64(b[0:8], magicOptReply)
	binary.BigEndian.PutUint32(b[8:12], opt)
	binary.BigEndian.PutUint32(b[12:16], typ)
	binary.BigEndian.PutUint32(b[16:20], uint32(len(data)))
	copy(b[20:], data)
	if _, err := c.rw.Write(b); err != nil {
		return fmt.Errorf("send reply to option %d: %w", opt, err)
	}
	return nil
}

func (c *conn) startTLS(ctx context.Context, data []byte) error {
	switch {
	case c.srv.TLSConfig == nil:
		return c.optReply(optStartTLS, repErrPolicy, []byte("TLS is not configured"))
	case c.tls:
		return c.optReply(optStartTLS, repErrInvalid, []byte("TLS is already active"))
	case len(data) != 0:
		return c.optReply(optStartTLS, repErrInvalid, []byte("unexpected payload"))
	}
	if c.br.Buffered() != 0 {
		return fmt.Errorf("%w: data sent after NBD_OPT_STARTTLS before its reply", errMalformed)
	}
	if err := c.optReply(optStartTLS, repAck, nil); err != nil {
		return err
	}
	tc := tls.Server(c.nc, c.srv.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.rw = tc
	c.br = bufio.NewReaderSize(tc, 4096)
	c.tls = true
	// Nothing negotiated in clear text survives the upgrade.
	c.structured, c.metaBase, c.metaName = false, false, ""
	return nil
}

// resolve asks the Resolver for name; it returns the option reply to send
// when the export is refused.
func (c *conn) resolve(ctx context.Context, name string) (*Export, uint32, error) {
	exp, err := c.srv.Resolver(ctx, name)
	if err == nil && (exp == nil || exp.Backend == nil || exp.Backend.Size() < 0) {
		if exp != nil && exp.Release != nil {
			exp.Release()
		}
		err = fmt.Errorf("%w: resolver returned no usable backend", ErrUnknownExport)
	}
	if err != nil {
		if errors.Is(err, ErrUnknownExport) {
			c.srv.Metrics.exportRefused()
			audit.AuthenticationFailed(ctx, c.log, audit.Refusal{Surface: audit.SurfaceNBD, Reason: "unknown, expired or revoked export name (access grant)"})
			return nil, repErrUnknown, err
		}
		c.log.Warn("nbd export refused", "err", err)
		return nil, repErrPolicy, err
	}
	return exp, 0, nil
}

func (c *conn) exportFlags(exp *Export) uint16 {
	f := flagHasFlags | flagCanMultiConn | flagSendFlush | flagSendFUA
	_, writable := exp.Backend.(Writer)
	if exp.ReadOnly || !writable {
		f |= flagReadOnly
	} else {
		f |= flagSendWriteZeroes
		if _, ok := exp.Backend.(Trimmer); ok {
			f |= flagSendTrim
		}
		if _, ok := exp.Backend.(Zeroer); ok {
			// Zeroing through a Zeroer deallocates, which beats
			// writing zeroes; NO_HOLE zeroing fails fast instead.
			f |= flagSendFastZero
		}
	}
	if c.structured {
		f |= flagSendDF
	}
	return f
}

func (c *conn) exportName(ctx context.Context, data []byte) (*Export, error) {
	if len(data) > maxString {
		return nil, fmt.Errorf("%w: export name of %d bytes", errMalformed, len(data))
	}
	exp, _, err := c.resolve(ctx, string(data))
	if err != nil {
		// NBD_OPT_EXPORT_NAME cannot fail politely: close.
		return nil, fmt.Errorf("resolve export: %w", err)
	}
	c.enter(exp, string(data))
	b := make([]byte, 10, 10+124)
	binary.BigEndian.PutUint64(b[0:8], uint64(c.size))
	binary.BigEndian.PutUint16(b[8:10], c.flags)
	if !c.noZeroes {
		b = b[:10+124]
	}
	if _, err := c.rw.Write(b); err != nil {
		if exp.Release != nil {
			exp.Release()
		}
		return nil, fmt.Errorf("send export info: %w", err)
	}
	return exp, nil
}

// enter records the export chosen for transmission.
func (c *conn) enter(exp *Export, name string) {
	c.exp = exp
	c.size = exp.Backend.Size()
	c.flags = c.exportFlags(exp)
	if c.metaName != name {
		// Contexts chosen for another export do not carry over.
		c.metaBase = false
	}
}

func (c *conn) infoGo(ctx context.Context, opt uint32, data []byte) (*Export, error) {
	req, err := decodeInfoRequest(data)
	if err != nil {
		return nil, c.optReply(opt, repErrInvalid, []byte("malformed request"))
	}
	exp, rep, err := c.resolve(ctx, req.name)
	if err != nil {
		msg := "unknown export"
		if rep != repErrUnknown {
			msg = "export unavailable"
		}
		return nil, c.optReply(opt, rep, []byte(msg))
	}
	release := func() {
		if exp.Release != nil {
			exp.Release()
		}
	}
	size, flags := exp.Backend.Size(), c.exportFlags(exp)
	info := make([]byte, 12)
	binary.BigEndian.PutUint16(info[0:2], infoExport)
	binary.BigEndian.PutUint64(info[2:10], uint64(size))
	binary.BigEndian.PutUint16(info[10:12], flags)
	if err := c.optReply(opt, repInfo, info); err != nil {
		release()
		return nil, err
	}
	// Always advertised: the client learns the request size limit.
	bs := make([]byte, 14)
	binary.BigEndian.PutUint16(bs[0:2], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:6], 1)
	binary.BigEndian.PutUint32(bs[6:10], 4096)
	binary.BigEndian.PutUint32(bs[10:14], uint32(c.srv.maxRequest()))
	if err := c.optReply(opt, repInfo, bs); err != nil {
		release()
		return nil, err
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		release()
		return nil, err
	}
	if opt == optInfo {
		release()
		return nil, nil
	}
	c.enter(exp, req.name)
	return exp, nil
}

func (c *conn) metaContext(opt uint32, data []byte) error {
	if !c.structured {
		return c.optReply(opt, repErrInvalid, []byte("structured replies not negotiated"))
	}
	req, err := decodeMetaRequest(data)
	if err != nil {
		return c.optReply(opt, repErrInvalid, []byte("malformed request"))
	}
	match := false
	for _, q := range req.queries {
		switch {
		case q == metaContextBase:
			match = true
		case opt == optListMetaContext && q == "base:":
			match = true
		}
	}
	if opt == optListMetaContext && len(req.queries) == 0 {
		match = true
	}
	if opt == optSetMetaContext {
		c.metaBase, c.metaName = match, req.name
	}
	if match {
		b := make([]byte, 4+len(metaContextBase))
		id := metaContextID
		if opt == optListMetaContext {
			id = 0
		}
		binary.BigEndian.PutUint32(b[0:4], id)
		copy(b[4:], metaContextBase)
		if err := c.optReply(opt, repMetaContext, b); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}
