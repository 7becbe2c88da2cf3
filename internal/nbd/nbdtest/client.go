package nbdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Protocol values the client uses (from the NBD protocol document).
const (
	magicInit        = 0x4e42444d41474943
	magicOpt         = 0x49484156454F5054
	magicOptReply    = 0x3e889045565a9
	magicRequest     = 0x25609513
	magicSimpleReply = 0x67446698
	magicStructReply = 0x668e33ef

	OptExportName      = 1
	OptAbort           = 2
	OptList            = 3
	OptStartTLS        = 5
	OptInfo            = 6
	OptGo              = 7
	OptStructuredReply = 8
	OptSetMetaContext  = 10

	RepAck         = 1
	RepInfo        = 3
	RepMetaContext = 4
	RepErrUnsup    = 1<<31 + 1
	RepErrPolicy   = 1<<31 + 2
	RepErrInvalid  = 1<<31 + 3
	RepErrTLSReqd  = 1<<31 + 5
	RepErrUnknown  = 1<<31 + 6
	RepErrTooBig   = 1<<31 + 9

	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdWriteZeroes = 6
	CmdBlockStatus = 7

	CmdFlagFUA      = 1 << 0
	CmdFlagNoHole   = 1 << 1
	CmdFlagDF       = 1 << 2
	CmdFlagReqOne   = 1 << 3
	CmdFlagFastZero = 1 << 4

	FlagReadOnly     = 1 << 1
	FlagSendTrim     = 1 << 5
	FlagCanMultiConn = 1 << 8
	FlagSendFastZero = 1 << 11

	EPERM     = 1
	EIO       = 5
	EINVAL    = 22
	ENOSPC    = 28
	EOVERFLOW = 75
	ENOTSUP   = 95
)

// OptionError is a refused option (an NBD_REP_ERR_* reply).
type OptionError struct {
	Option, Reply uint32
	Message       string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("nbd option %d refused with reply %#x: %s", e.Option, e.Reply, e.Message)
}

// Error is a failed transmission request.
type Error struct {
	Errno   uint32
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("nbd request failed: errno %d: %s", e.Errno, e.Message)
}

// Options select what Dial negotiates.
type Options struct {
	// TLS, when set, upgrades with NBD_OPT_STARTTLS first.
	TLS *tls.Config
	// Structured negotiates structured replies and base:allocation.
	Structured bool
	// LegacyExportName uses NBD_OPT_EXPORT_NAME instead of NBD_OPT_GO.
	LegacyExportName bool
}

// Client is a sequential NBD client: one request at a time.
type Client struct {
	Conn  net.Conn // after TLS, the TLS connection
	Size  int64
	Flags uint16

	raw        net.Conn
	br         *bufio.Reader
	structured bool
	handle     uint64
}

// NewClient wraps a connection on which nothing has been exchanged yet;
// use Greet, Option and the request methods to drive it by hand.
func NewClient(nc net.Conn) *Client {
	return &Client{Conn: nc, raw: nc, br: bufio.NewReader(nc)}
}

// SetStructured tells the client that structured replies were negotiated
// by hand.
func (c *Client) SetStructured(v bool) { c.structured = v }

// Dial connects to addr and negotiates export name.
func Dial(ctx context.Context, addr, name string, o Options) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial nbd server: %w", err)
	}
	return Negotiate(ctx, nc, name, o)
}

// Negotiate negotiates export name on nc, a connection to an NBD server
// on which nothing has been exchanged yet (a Unix socket, say). It closes
// nc if negotiation fails.
func Negotiate(ctx context.Context, nc net.Conn, name string, o Options) (*Client, error) {
	c := &Client{Conn: nc, raw: nc, br: bufio.NewReader(nc)}
	if err := c.negotiate(ctx, name, o); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Greet reads the server greeting and sends the client flags
// (fixed newstyle, no zeroes).
func (c *Client) Greet() error {
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[0:8]) != magicInit || binary.BigEndian.Uint64(g[8:16]) != magicOpt {
		return errors.New("bad greeting magic")
	}
	_, err := c.Conn.Write([]byte{0, 0, 0, 3})
	return err
}

// SendOption sends one option.
func (c *Client) SendOption(opt uint32, data []byte) error {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b[0:8], magicOpt)
	binary.BigEndian.PutUint32(b[8:12], opt)
	binary.BigEndian.PutUint32(b[12:16], uint32(len(data)))
	copy(b[16:], data)
	_, err := c.Conn.Write(b)
	return err
}

// OptionReply is one reply to an option.
type OptionReply struct {
	Option, Type uint32
	Data         []byte
}

// ReadOptionReply reads one option reply.
func (c *Client) ReadOptionReply() (OptionReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return OptionReply{}, fmt.Errorf("read option reply: %w", err)
	}
	if binary.BigEndian.Uint64(h[0:8]) != magicOptReply {
		return OptionReply{}, errors.New("bad option reply magic")
	}
	r := OptionReply{Option: binary.BigEndian.Uint32(h[8:12]), Type: binary.BigEndian.Uint32(h[12:16])}
	n := binary.BigEndian.Uint32(h[16:20])
	if n > 1<<20 {
		return OptionReply{}, fmt.Errorf("option reply of %d bytes", n)
	}
	r.Data = make([]byte, n)
	if _, err := io.ReadFull(c.br, r.Data); err != nil {
		return OptionReply{}, fmt.Errorf("read option reply data: %w", err)
	}
	return r, nil
}

// Option sends an option and collects replies up to the final one; an
// error reply becomes an *OptionError.
func (c *Client) Option(opt uint32, data []byte) ([]OptionReply, error) {
	if err := c.SendOption(opt, data); err != nil {
		return nil, err
	}
	var rs []OptionReply
	for {
		r, err := c.ReadOptionReply()
		if err != nil {
			return rs, err
		}
		if r.Type&(1<<31) != 0 {
			return rs, &OptionError{Option: opt, Reply: r.Type, Message: string(r.Data)}
		}
		if r.Type == RepAck {
			return rs, nil
		}
		rs = append(rs, r)
	}
}

// StartTLS upgrades the connection.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if _, err := c.Option(OptStartTLS, nil); err != nil {
		return err
	}
	tc := tls.Client(c.raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	c.Conn = tc
	c.br = bufio.NewReader(tc)
	return nil
}

func (c *Client) negotiate(ctx context.Context, name string, o Options) error {
	if err := c.Greet(); err != nil {
		return err
	}
	if o.TLS != nil {
		if err := c.StartTLS(ctx, o.TLS); err != nil {
			return err
		}
	}
	if o.Structured {
		if _, err := c.Option(OptStructuredReply, nil); err != nil {
			return err
		}
		c.structured = true
		q := "base:allocation"
		b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		b = append(b, name...)
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
		if _, err := c.Option(OptSetMetaContext, b); err != nil {
			return err
		}
	}
	if o.LegacyExportName {
		if err := c.SendOption(OptExportName, []byte(name)); err != nil {
			return err
		}
		var b [10]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return fmt.Errorf("read export info: %w", err)
		}
		c.Size = int64(binary.BigEndian.Uint64(b[0:8]))
		c.Flags = binary.BigEndian.Uint16(b[8:10])
		return nil
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = append(b, 0, 0)
	rs, err := c.Option(OptGo, b)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Type == RepInfo && len(r.Data) == 12 && binary.BigEndian.Uint16(r.Data) == 0 {
			c.Size = int64(binary.BigEndian.Uint64(r.Data[2:10]))
			c.Flags = binary.BigEndian.Uint16(r.Data[10:12])
		}
	}
	return nil
}

// Close closes the connection without NBD_CMD_DISC.
func (c *Client) Close() error { return c.Conn.Close() }

// Disconnect sends NBD_CMD_DISC and closes.
func (c *Client) Disconnect() error {
	err := c.SendRequest(CmdDisc, 0, 0, 0, nil)
	c.Conn.Close()
	return err
}

// SendRequest writes one request (and its payload) without reading a reply.
func (c *Client) SendRequest(typ, flags uint16, off uint64, length uint32, payload []byte) error {
	c.handle++
	b := make([]byte, 28, 28+len(payload))
	binary.BigEndian.PutUint32(b[0:4], magicRequest)
	binary.BigEndian.PutUint16(b[4:6], flags)
	binary.BigEndian.PutUint16(b[6:8], typ)
	binary.BigEndian.PutUint64(b[8:16], c.handle)
	binary.BigEndian.PutUint64(b[16:24], off)
	binary.BigEndian.PutUint32(b[24:28], length)
	_, err := c.Conn.Write(append(b, payload...))
	return err
}

// Extent is one block-status descriptor.
type Extent struct{ Length, Flags uint32 }

// Reply is the decoded reply to one request.
type Reply struct {
	Data    []byte   // READ data, holes filled with zeroes
	Extents []Extent // BLOCK_STATUS descriptors
	Holes   int      // OFFSET_HOLE chunks seen
	// HoleSpans are the OFFSET_HOLE chunks' ranges, relative to the
	// request's offset; DataChunks counts the OFFSET_DATA chunks.
	HoleSpans  [][2]uint64
	DataChunks int
}

// ReadReply reads the reply to the last request; dataLen is the READ
// length (0 for other commands).
func (c *Client) ReadReply(off uint64, dataLen uint32) (Reply, error) {
	var r Reply
	var first [4]byte
	if _, err := io.ReadFull(c.br, first[:]); err != nil {
		return r, fmt.Errorf("read reply: %w", err)
	}
	switch binary.BigEndian.Uint32(first[:]) {
	case magicSimpleReply:
		var h [12]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return r, fmt.Errorf("read simple reply: %w", err)
		}
		if binary.BigEndian.Uint64(h[4:12]) != c.handle {
			return r, errors.New("reply handle mismatch")
		}
		if e := binary.BigEndian.Uint32(h[0:4]); e != 0 {
			return r, &Error{Errno: e}
		}
		r.Data = make([]byte, dataLen)
		_, err := io.ReadFull(c.br, r.Data)
		return r, err
	case magicStructReply:
	default:
		return r, errors.New("bad reply magic")
	}
	var rerr error
	for chunk := 0; ; chunk++ {
		if chunk > 0 {
			if _, err := io.ReadFull(c.br, first[:]); err != nil {
				return r, fmt.Errorf("read reply chunk: %w", err)
			}
			if binary.BigEndian.Uint32(first[:]) != magicStructReply {
				return r, errors.New("bad chunk magic")
			}
		}
		var h [16]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return r, fmt.Errorf("read chunk header: %w", err)
		}
		flags, typ := binary.BigEndian.Uint16(h[0:2]), binary.BigEndian.Uint16(h[2:4])
		if binary.BigEndian.Uint64(h[4:12]) != c.handle {
			return r, errors.New("chunk handle mismatch")
		}
		n := binary.BigEndian.Uint32(h[12:16])
		if n > 64<<20 {
			return r, fmt.Errorf("chunk of %d bytes", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return r, fmt.Errorf("read chunk payload: %w", err)
		}
		if r.Data == nil && dataLen > 0 {
			r.Data = make([]byte, dataLen)
		}
		switch {
		case typ == 0:
		case typ == 1 && n >= 8: // OFFSET_DATA
			o := binary.BigEndian.Uint64(p[0:8]) - off
			if o+uint64(n-8) > uint64(dataLen) {
				return r, errors.New("data chunk outside the request")
			}
			copy(r.Data[o:], p[8:])
			r.DataChunks++
		case typ == 2 && n == 12: // OFFSET_HOLE
			o, hl := binary.BigEndian.Uint64(p[0:8])-off, uint64(binary.BigEndian.Uint32(p[8:12]))
			if o+hl > uint64(dataLen) {
				return r, errors.New("hole chunk outside the request")
			}
			r.Holes++
			r.HoleSpans = append(r.HoleSpans, [2]uint64{o, hl})
		case typ == 5 && n >= 12: // BLOCK_STATUS
			for i := 4; i+8 <= len(p); i += 8 {
				r.Extents = append(r.Extents, Extent{binary.BigEndian.Uint32(p[i:]), binary.BigEndian.Uint32(p[i+4:])})
			}
		case typ&(1<<15) != 0 && n >= 6:
			ml := int(binary.BigEndian.Uint16(p[4:6]))
			if 6+ml > len(p) {
				return r, errors.New("error chunk message too long")
			}
			rerr = &Error{Errno: binary.BigEndian.Uint32(p[0:4]), Message: string(p[6 : 6+ml])}
		default:
			return r, fmt.Errorf("unexpected chunk type %d length %d", typ, n)
		}
		if flags&1 != 0 {
			return r, rerr
		}
	}
}

// Do sends a request and reads its reply.
func (c *Client) Do(typ, flags uint16, off uint64, length uint32, payload []byte) (Reply, error) {
	if err := c.SendRequest(typ, flags, off, length, payload); err != nil {
		return Reply{}, fmt.Errorf("send request: %w", err)
	}
	dl := uint32(0)
	if typ == CmdRead {
		dl = length
	}
	return c.ReadReply(off, dl)
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	r, err := c.Do(CmdRead, 0, uint64(off), uint32(len(p)), nil)
	if err != nil {
		return 0, err
	}
	return copy(p, r.Data), nil
}

// WriteAt writes p at off.
func (c *Client) WriteAt(p []byte, off int64) (int, error) {
	if _, err := c.Do(CmdWrite, 0, uint64(off), uint32(len(p)), p); err != nil {
		return 0, err
	}
	return len(p), nil
}
