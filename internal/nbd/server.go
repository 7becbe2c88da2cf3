package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
)

// Backend is one exported device. Implementations must be safe for
// concurrent use: the server issues requests from several connections and
// several goroutines per connection at once.
type Backend interface {
	// Size is the export size in bytes; it must not change while exported.
	Size() int64
	// ReadAt reads len(p) bytes at off, as io.ReaderAt. The server never
	// asks for bytes past Size.
	ReadAt(p []byte, off int64) (int, error)
}

// Writer is a Backend that accepts writes; without it an export is
// read-only whatever Export.ReadOnly says.
type Writer interface {
	WriteAt(p []byte, off int64) (int, error)
}

// Flusher makes completed writes durable (NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA).
// Flush must cover writes made through every connection to the backend.
type Flusher interface {
	Flush() error
}

// Trimmer discards a range (NBD_CMD_TRIM); afterwards the range's contents
// are unspecified until rewritten.
type Trimmer interface {
	Trim(off, length int64) error
}

// Zeroer makes a range read as zeroes, possibly by deallocating it
// (NBD_CMD_WRITE_ZEROES). Without it the server writes zero buffers.
type Zeroer interface {
	WriteZeroes(off, length int64) error
}

// Inliner is an optional Backend capability for I/O that completes at
// once: data in the page cache, no background work to wait for. The
// server tries it on the connection's reader (a thread or a goroutine)
// before handing a READ or WRITE to a goroutine of its own. TryReadAt and
// TryWriteAt either do the whole I/O and report ok (with its error, if it
// failed), or do nothing and report !ok; they must not wait for the disk
// or for other requests.
type Inliner interface {
	TryReadAt(p []byte, off int64) (n int, ok bool, err error)
	TryWriteAt(p []byte, off int64) (ok bool, err error)
}

// SparseReader is an optional Backend capability for READs larger than
// the inline limit: ReadSparse reads like ReadAt, except that the ranges
// it passes to hole (export offsets, in increasing order, within [off,
// off+len(p))) read as zeroes and were left unfilled in p. A structured
// reply sends them as holes, so a sparse export's zeroes cost neither a
// copy nor a scan. TryReadSparse is ReadSparse when it completes at once,
// as Inliner's TryReadAt; when it reports !ok the holes it passed are
// void. On a plain connection's reader thread the server tries it first
// and hands the READ to a goroutine only when it refuses.
type SparseReader interface {
	ReadSparse(p []byte, off int64, hole func(off, length int64)) (int, error)
	TryReadSparse(p []byte, off int64, hole func(off, length int64)) (n int, ok bool, err error)
}

// Extent describes the allocation of a range: Hole means not allocated,
// Zero means it reads as zeroes.
type Extent struct {
	Offset, Length int64
	Hole           bool
	Zero           bool
}

// BlockStatuser reports allocation for NBD_CMD_BLOCK_STATUS
// ("base:allocation"). It returns consecutive extents starting at off; it
// may cover less than length but must cover at least one byte.
type BlockStatuser interface {
	BlockStatus(off, length int64) ([]Extent, error)
}

// Export is what an export name resolves to for one connection.
type Export struct {
	Backend  Backend
	ReadOnly bool
	// Release, if set, is called once when the connection that resolved
	// the export closes (or, for NBD_OPT_INFO, when the reply is sent).
	Release func()
}

// ErrUnknownExport is wrapped by a Resolver's error to refuse a name
// (NBD_REP_ERR_UNKNOWN). Other errors are refused with NBD_REP_ERR_POLICY.
var ErrUnknownExport = errors.New("nbd: unknown export")

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("nbd: server closed")

// Resolver maps an export name to an export. It is called for every
// NBD_OPT_GO, NBD_OPT_INFO and NBD_OPT_EXPORT_NAME, so revoking access
// takes effect on the next connection.
type Resolver func(ctx context.Context, name string) (*Export, error)

// Defaults for the zero values of Server's tuning fields.
const (
	DefaultMaxRequest       = 32 << 20
	DefaultMaxInFlight      = 16
	DefaultHandshakeTimeout = 30 * time.Second
)

// Server serves NBD exports. Set its fields before the first Serve; the zero
// values of the tuning fields mean their defaults.
type Server struct {
	// Resolver maps export names to exports; required.
	Resolver Resolver
	// TLSConfig enables NBD_OPT_STARTTLS when set.
	TLSConfig *tls.Config
	// RequireTLS refuses every option but STARTTLS and ABORT until TLS is
	// up (FORCEDTLS mode). It needs TLSConfig.
	RequireTLS bool
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// Clock sets the handshake deadline; nil means clock.Real.
	Clock clock.Clock
	// MaxRequest is the largest READ or WRITE payload accepted and the
	// maximum block size advertised (default 32 MiB).
	MaxRequest int
	// MaxInFlight bounds the requests one connection processes at once
	// (default 16).
	MaxInFlight int
	// MaxBufferedBytes bounds the request and reply payload bytes one
	// connection holds at once (default 2×MaxRequest).
	MaxBufferedBytes int64
	// HandshakeTimeout bounds the whole option negotiation (default 30 s).
	HandshakeTimeout time.Duration
	// Metrics, when set, counts connections and requests.
	Metrics *Metrics

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool
	connsWG   sync.WaitGroup
	// readers counts the plain connections whose reader threads are
	// transmitting (see sendBehind).
	readers atomic.Int32
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) clock() clock.Clock {
	if s.Clock != nil {
		return s.Clock
	}
	return clock.Real{}
}

func (s *Server) maxRequest() int {
	if s.MaxRequest > 0 {
		return s.MaxRequest
	}
	return DefaultMaxRequest
}

func (s *Server) maxInFlight() int {
	if s.MaxInFlight > 0 {
		return s.MaxInFlight
	}
	return DefaultMaxInFlight
}

func (s *Server) maxBuffered() int64 {
	if s.MaxBufferedBytes >= int64(s.maxRequest()) {
		return s.MaxBufferedBytes
	}
	return 2 * int64(s.maxRequest())
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is cancelled (which also hard-closes the connections it
// accepted) or Shutdown/Close is called. It always closes ln. It returns
// ErrServerClosed after Shutdown or Close, ctx.Err() after cancellation.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Resolver == nil {
		ln.Close()
		return errors.New("nbd: serve: Server.Resolver is nil")
	}
	if s.RequireTLS && s.TLSConfig == nil {
		ln.Close()
		return errors.New("nbd: serve: RequireTLS without TLSConfig")
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	log := s.logger()
	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Transient accept failures back off briefly, as net/http does.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				t := s.clock().NewTimer(tempDelay)
				select {
				case <-t.C():
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		tempDelay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[c] = struct{}{}
		s.connsWG.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.connsWG.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			c.serve(ctx)
		}()
		log.Debug("nbd connection accepted", "remote", nc.RemoteAddr().String())
	}
}

// Shutdown stops accepting connections, refuses further options in
// handshaking connections, lets connections in transmission finish the
// requests they have read and then closes them. If ctx ends first, the
// remaining connections are closed hard and ctx.Err() is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return fmt.Errorf("nbd: shutdown: %w", ctx.Err())
	}
}

// Close closes all listeners and connections at once, without waiting
// for in-flight requests, and waits for the connection goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	s.connsWG.Wait()
	return nil
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
