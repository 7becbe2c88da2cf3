package server

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// The Azure SDK for Go sends some query parameters unencoded (armauthorization
// appends "$filter=principalId eq '…'" verbatim), so its request lines carry
// raw spaces, which Azure's front end accepts and Go's HTTP server refuses
// with a bare 400. lenientConn sits under the HTTP server and percent-encodes
// spaces inside the request target of each HTTP/1.x request line. It follows
// the message framing (Content-Length and chunked bodies) so that it only
// ever touches request lines; on anything it does not understand it stops
// rewriting and passes bytes through unchanged.

type lenientListener struct{ net.Listener }

func (l lenientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lenientConn{Conn: c}, nil
}

type framing int

const (
	inRequestLine framing = iota
	inHeaders
	inBody
	inChunkSize
	inChunkData
	inChunkDataEnd
	inTrailers
	passthrough
)

type lenientConn struct {
	net.Conn
	state   framing
	line    []byte // partial line being accumulated
	remain  int64  // body or chunk bytes left
	clen    int64
	chunked bool
	out     []byte // processed bytes not yet returned
}

const maxLine = 64 << 10

func (c *lenientConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		buf := make([]byte, len(p))
		n, err := c.Conn.Read(buf)
		if n > 0 {
			c.feed(buf[:n])
		}
		if len(c.out) > 0 {
			break
		}
		if err != nil {
			if len(c.line) > 0 { // flush what is left
				c.out, c.line = append(c.out, c.line...), nil
				break
			}
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

func (c *lenientConn) feed(b []byte) {
	for len(b) > 0 {
		switch c.state {
		case passthrough:
			c.out = append(c.out, b...)
			return
		case inBody, inChunkData:
			n := int64(len(b))
			if n > c.remain {
				n = c.remain
			}
			c.out = append(c.out, b[:n]...)
			b = b[n:]
			c.remain -= n
			if c.remain == 0 {
				if c.state == inBody {
					c.state = inRequestLine
				} else {
					c.state = inChunkDataEnd
				}
			}
		default:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.line = append(c.line, b...)
				if len(c.line) > maxLine {
					c.out, c.line, c.state = append(c.out, c.line...), nil, passthrough
				}
				return
			}
			line := append(c.line, b[:i+1]...)
			c.line = nil
			b = b[i+1:]
			c.out = append(c.out, c.onLine(line)...)
		}
	}
}

// onLine handles one complete line (with its newline) and returns the bytes
// to pass on.
func (c *lenientConn) onLine(line []byte) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	switch c.state {
	case inRequestLine:
		if text == "" { // stray CRLF between requests
			return line
		}
		c.state, c.clen, c.chunked = inHeaders, 0, false
		return fixRequestLine(line, text)
	case inHeaders:
		if text == "" {
			switch {
			case c.chunked:
				c.state = inChunkSize
			case c.clen > 0:
				c.state, c.remain = inBody, c.clen
			default:
				c.state = inRequestLine
			}
			return line
		}
		k, v, _ := strings.Cut(text, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				c.state = passthrough
				return line
			}
			c.clen = n
		case "transfer-encoding":
			if strings.Contains(strings.ToLower(v), "chunked") {
				c.chunked = true
			}
		case "upgrade":
			c.state = passthrough
		}
		return line
	case inChunkSize:
		sz, _, _ := strings.Cut(text, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil || n < 0 {
			c.state = passthrough
			return line
		}
		if n == 0 {
			c.state = inTrailers
		} else {
			c.state, c.remain = inChunkData, n
		}
		return line
	case inChunkDataEnd:
		c.state = inChunkSize
		return line
	case inTrailers:
		if text == "" {
			c.state = inRequestLine
		}
		return line
	}
	return line
}

// fixRequestLine percent-encodes spaces in the target of "METHOD target
// HTTP/1.x" when the target contains them.
func fixRequestLine(line []byte, text string) []byte {
	sp1 := strings.IndexByte(text, ' ')
	sp2 := strings.LastIndexByte(text, ' ')
	if sp1 < 0 || sp2 <= sp1 || !strings.HasPrefix(text[sp2+1:], "HTTP/1.") {
		return line
	}
	target := text[sp1+1 : sp2]
	if !strings.Contains(target, " ") {
		return line
	}
	eol := line[len(text):]
	fixed := text[:sp1+1] + strings.ReplaceAll(target, " ", "%20") + text[sp2:]
	return append([]byte(fixed), eol...)
}
