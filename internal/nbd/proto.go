package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants, named as in the NBD protocol document.
const (
	magicInit        uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt         uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply    uint64 = 0x3e889045565a9
	magicRequest     uint32 = 0x25609513
	magicSimpleReply uint32 = 0x67446698
	magicStructReply uint32 = 0x668e33ef

	// Handshake flags (server) and client flags.
	flagFixedNewstyle  uint16 = 1 << 0
	flagNoZeroes       uint16 = 1 << 1
	flagCFixedNewstyle uint32 = 1 << 0
	flagCNoZeroes      uint32 = 1 << 1

	// Transmission flags.
	flagHasFlags        uint16 = 1 << 0
	flagReadOnly        uint16 = 1 << 1
	flagSendFlush       uint16 = 1 << 2
	flagSendFUA         uint16 = 1 << 3
	flagSendTrim        uint16 = 1 << 5
	flagSendWriteZeroes uint16 = 1 << 6
	flagSendDF          uint16 = 1 << 7
	flagCanMultiConn    uint16 = 1 << 8
	flagSendFastZero    uint16 = 1 << 11

	// Options.
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredReply uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10

	// Option replies.
	repAck          uint32 = 1
	repInfo         uint32 = 3
	repMetaContext  uint32 = 4
	repErrUnsup     uint32 = 1<<31 + 1
	repErrPolicy    uint32 = 1<<31 + 2
	repErrInvalid   uint32 = 1<<31 + 3
	repErrTLSReqd   uint32 = 1<<31 + 5
	repErrUnknown   uint32 = 1<<31 + 6
	repErrShutdown  uint32 = 1<<31 + 7
	repErrTooBig    uint32 = 1<<31 + 9
	infoExport      uint16 = 0
	infoBlockSize   uint16 = 3
	metaContextBase        = "base:allocation"
	metaContextID   uint32 = 1

	// Commands and command flags.
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7

	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagNoHole   uint16 = 1 << 1
	cmdFlagDF       uint16 = 1 << 2
	cmdFlagReqOne   uint16 = 1 << 3
	cmdFlagFastZero uint16 = 1 << 4

	// Structured reply chunk types and flags.
	replyFlagDone        uint16 = 1 << 0
	replyTypeNone        uint16 = 0
	replyTypeOffsetData  uint16 = 1
	replyTypeOffsetHole  uint16 = 2
	replyTypeBlockStatus uint16 = 5
	replyTypeError       uint16 = 1<<15 + 1

	// Block status flags for base:allocation.
	stateHole uint32 = 1 << 0
	stateZero uint32 = 1 << 1

	// Error values.
	errnoPerm     uint32 = 1
	errnoIO       uint32 = 5
	errnoInval    uint32 = 22
	errnoNoSpc    uint32 = 28
	errnoOverflow uint32 = 75
	errnoNotSup   uint32 = 95
	errnoShutdown uint32 = 108

	requestSize   = 28
	optHeaderSize = 16
	// maxString is the protocol's bound on export names and query strings.
	maxString = 4096
	// maxOptionLen bounds an option payload the server reads into memory.
	maxOptionLen = 16 << 10
	// maxOptionDiscard bounds an oversized option payload the server skips
	// (answering NBD_REP_ERR_TOO_BIG) before it gives up on the client.
	maxOptionDiscard = 1 << 20
)

// errMalformed marks a decoding failure of client-sent bytes.
var errMalformed = errors.New("nbd: malformed message")

// request is a decoded transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	offset uint64
	length uint32
}

// decodeRequest decodes a 28-byte request header.
func decodeRequest(b []byte) (request, error) {
	if len(b) != requestSize {
		return request{}, fmt.Errorf("%w: request header is %d bytes, want %d", errMalformed, len(b), requestSize)
	}
	if m := binary.BigEndian.Uint32(b[0:4]); m != magicRequest {
		return request{}, fmt.Errorf("%w: bad request magic %#x", errMalformed, m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:6]),
		typ:    binary.BigEndian.Uint16(b[6:8]),
		handle: binary.BigEndian.Uint64(b[8:16]),
		offset: binary.BigEndian.Uint64(b[16:24]),
		length: binary.BigEndian.Uint32(b[24:28]),
	}, nil
}

// optHeader is a decoded option header.
type optHeader struct {
	opt    uint32
	length uint32
}

func decodeOptHeader(b []byte) (optHeader, error) {
	if len(b) != optHeaderSize {
		return optHeader{}, fmt.Errorf("%w: option header is %d bytes", errMalformed, len(b))
	}
	if m := binary.BigEndian.Uint64(b[0:8]); m != magicOpt {
		return optHeader{}, fmt.Errorf("%w: bad option magic %#x", errMalformed, m)
	}
	return optHeader{opt: binary.BigEndian.Uint32(b[8:12]), length: binary.BigEndian.Uint32(b[12:16])}, nil
}

// cursor reads big-endian fields from an option payload, recording the
// first short read.
type cursor struct {
	b   []byte
	bad bool
}

func (c *cursor) take(n int) []byte {
	if c.bad || n < 0 || n > len(c.b) {
		c.bad = true
		return nil
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u16() uint16 {
	if v := c.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if v := c.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// str reads a 32-bit length-prefixed string of at most maxString bytes.
func (c *cursor) str() string {
	n := c.u32()
	if n > maxString {
		c.bad = true
		return ""
	}
	return string(c.take(int(n)))
}

// infoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

func decodeInfoRequest(b []byte) (infoRequest, error) {
	c := cursor{b: b}
	var r infoRequest
	r.name = c.str()
	n := c.u16()
	for i := 0; i < int(n) && !c.bad; i++ {
		r.infos = append(r.infos, c.u16())
	}
	if c.bad || len(c.b) != 0 {
		return infoRequest{}, fmt.Errorf("%w: NBD_OPT_INFO/GO payload of %d bytes", errMalformed, len(b))
	}
	return r, nil
}

// metaRequest is the payload of NBD_OPT_SET_META_CONTEXT and
// NBD_OPT_LIST_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

func decodeMetaRequest(b []byte) (metaRequest, error) {
	c := cursor{b: b}
	var r metaRequest
	r.name = c.str()
	n := c.u32()
	// Each query needs at least its 4-byte length; refuse counts the
	// payload cannot hold before allocating anything for them.
	if uint64(n)*4 > uint64(len(c.b)) {
		return metaRequest{}, fmt.Errorf("%w: %d meta context queries in %d bytes", errMalformed, n, len(c.b))
	}
	for i := 0; i < int(n) && !c.bad; i++ {
		r.queries = append(r.queries, c.str())
	}
	if c.bad || len(c.b) != 0 {
		return metaRequest{}, fmt.Errorf("%w: meta context payload of %d bytes", errMalformed, len(b))
	}
	return r, nil
}
