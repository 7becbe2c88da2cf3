package server

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

type scriptConn struct {
	net.Conn
	chunks [][]byte
}

func (s *scriptConn) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}
func (s *scriptConn) SetReadDeadline(time.Time) error { return nil }

func TestLenientConn(t *testing.T) {
	body := "GET /x?a=b c HTTP/1.1\r\n" // looks like a request line but is body bytes
	in := "GET /subscriptions/s/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq 'p' HTTP/1.1\r\n" +
		"Host: h\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body +
		"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n" +
		"PUT /c?q=1 2 HTTP/1.1\r\n\r\n"
	want := "GET /subscriptions/s/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'p' HTTP/1.1\r\n" +
		"Host: h\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body +
		"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n" +
		"PUT /c?q=1%202 HTTP/1.1\r\n\r\n"
	// Feed it in awkward pieces: byte by byte and in one go.
	for _, step := range []int{1, 3, 7, len(in)} {
		var chunks [][]byte
		for i := 0; i < len(in); i += step {
			end := min(i+step, len(in))
			chunks = append(chunks, []byte(in[i:end]))
		}
		c := &lenientConn{Conn: &scriptConn{chunks: chunks}}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Fatalf("step %d:\n got %q\nwant %q", step, got, want)
		}
	}
}

func itoa(n int) string { return string(bytes.TrimSpace([]byte(fmtInt(n)))) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
