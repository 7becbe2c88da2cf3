package nbd

import (
	"io"
	"sync/atomic"
	"time"

	"coffer/internal/prom"
)

// Metrics counts what a Server does: connections, refused handshakes,
// requests by command with their latency, failed requests, bytes read and
// written. A nil *Metrics counts nothing. Counting is lock-free, so the
// data path pays a few atomic adds per request.
type Metrics struct {
	open, accepted, refused atomic.Int64
	requests, failed        [numCmds]atomic.Uint64
	handedOff               [numCmds]atomic.Uint64
	behind                  atomic.Uint64 // READ replies written behind the reader
	read, written           atomic.Uint64
	chunks                  atomic.Uint64 // content chunks of structured READ replies
	latency                 [numCmds]*prom.Hist
}

// numCmds bounds the command numbers counted (BLOCK_STATUS is 7); others
// count as "other".
const numCmds = 9

var cmdNames = [numCmds]string{"read", "write", "disc", "flush", "trim", "cache", "write_zeroes", "block_status", "other"}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	m := &Metrics{}
	for i := range m.latency {
		m.latency[i] = prom.NewHist(prom.LatencyBuckets)
	}
	return m
}

func cmdIndex(typ uint16) int {
	if int(typ) < numCmds-1 {
		return int(typ)
	}
	return numCmds - 1
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.open.Add(1)
		m.accepted.Add(1)
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.open.Add(-1)
	}
}

func (m *Metrics) exportRefused() {
	if m != nil {
		m.refused.Add(1)
	}
}

// request counts a request that was answered, with its latency from the
// moment its header was read.
func (m *Metrics) request(req request, d time.Duration) {
	if m == nil {
		return
	}
	i := cmdIndex(req.typ)
	m.requests[i].Add(1)
	m.latency[i].ObserveDuration(d)
	switch req.typ {
	case cmdRead:
		m.read.Add(uint64(req.length))
	case cmdWrite:
		m.written.Add(uint64(req.length))
	}
}

// handOff counts a request the connection's reader gave to a goroutine of
// its own.
func (m *Metrics) handOff(req request) {
	if m != nil {
		m.handedOff[cmdIndex(req.typ)].Add(1)
	}
}

// HandedOff returns how many READs and WRITEs were served on goroutines
// of their own, not on the connection's reader: those the backend could
// not complete at once (data not in the page cache, a block busy or to
// copy for a snapshot, a disk hydrating), and those the reader does not
// try (a WRITE with FUA, a large READ on TLS).
func (m *Metrics) HandedOff() (reads, writes uint64) {
	if m == nil {
		return 0, 0
	}
	return m.handedOff[cmdRead].Load(), m.handedOff[cmdWrite].Load()
}

// replyBehind counts a READ reply left to be written behind the
// connection's reader (sendBehind).
func (m *Metrics) replyBehind() {
	if m != nil {
		m.behind.Add(1)
	}
}

// RepliesBehind returns how many READ replies the connections' readers
// left to be written behind them while they served the next request
// (only ever on the one plain connection transmitting, for a READ over
// 64 KiB with another request received).
func (m *Metrics) RepliesBehind() uint64 {
	if m == nil {
		return 0
	}
	return m.behind.Load()
}

// readChunks counts the content chunks (data and holes) of a structured
// READ reply.
func (m *Metrics) readChunks(n int) {
	if m != nil {
		m.chunks.Add(uint64(n))
	}
}

// Served is what a Server's READs and WRITEs took: how many were
// answered, the seconds they took in all (each from its header read to
// its reply written, or queued behind one being written), and the
// content chunks of the structured replies to the READs.
type Served struct {
	Reads, Writes             uint64
	ReadSeconds, WriteSeconds float64
	ReadChunks                uint64
}

// Served returns the READs and WRITEs answered so far.
func (m *Metrics) Served() Served {
	if m == nil {
		return Served{}
	}
	r, w := m.latency[cmdRead], m.latency[cmdWrite]
	return Served{Reads: r.Count(), Writes: w.Count(), ReadSeconds: r.Sum(), WriteSeconds: w.Sum(), ReadChunks: m.chunks.Load()}
}

// requestFailed counts a request answered with an error.
func (m *Metrics) requestFailed(req request) {
	if m != nil {
		m.failed[cmdIndex(req.typ)].Add(1)
	}
}

// WriteMetrics writes the metrics in Prometheus text format.
func (m *Metrics) WriteMetrics(w io.Writer) {
	if m == nil {
		return
	}
	prom.Family(w, "coffer_nbd_open_connections", prom.Gauge, "NBD connections open now.", float64(m.open.Load()))
	prom.Family(w, "coffer_nbd_connections_total", prom.Counter, "NBD connections accepted.", float64(m.accepted.Load()))
	prom.Family(w, "coffer_nbd_exports_refused_total", prom.Counter, "NBD handshakes refused for their export name (an unknown, expired or revoked access grant).", float64(m.refused.Load()))
	prom.Header(w, "coffer_nbd_requests_total", prom.Counter, "NBD requests answered, by command.")
	for i, n := range cmdNames {
		if v := m.requests[i].Load(); v > 0 {
			prom.Sample(w, "coffer_nbd_requests_total", float64(v), "cmd", n)
		}
	}
	prom.Header(w, "coffer_nbd_request_errors_total", prom.Counter, "NBD requests answered with an error, by command.")
	for i, n := range cmdNames {
		if v := m.failed[i].Load(); v > 0 {
			prom.Sample(w, "coffer_nbd_request_errors_total", float64(v), "cmd", n)
		}
	}
	prom.Header(w, "coffer_nbd_requests_handed_off_total", prom.Counter, "NBD reads and writes served on a goroutine of their own rather than on the connection's reader, which serves those it can complete at once.")
	for _, i := range []uint16{cmdRead, cmdWrite} {
		if v := m.handedOff[i].Load(); v > 0 {
			prom.Sample(w, "coffer_nbd_requests_handed_off_total", float64(v), "cmd", cmdNames[i])
		}
	}
	prom.Family(w, "coffer_nbd_read_replies_behind_total", prom.Counter, "NBD read replies written behind the connection's reader while it served the next request.", float64(m.behind.Load()))
	prom.Family(w, "coffer_nbd_read_bytes_total", prom.Counter, "Bytes NBD clients asked to read (the length of every read request answered, a failed one included).", float64(m.read.Load()))
	prom.Family(w, "coffer_nbd_read_reply_chunks_total", prom.Counter, "Content chunks (data and holes) of the structured replies to NBD reads.", float64(m.chunks.Load()))
	prom.Family(w, "coffer_nbd_written_bytes_total", prom.Counter, "Bytes NBD clients sent to write (the length of every write request answered, a failed one included).", float64(m.written.Load()))
	prom.Header(w, "coffer_nbd_request_duration_seconds", prom.Histogram, "NBD request latency, from its header read to its reply, by command.")
	for i, n := range cmdNames {
		if h := m.latency[i]; h.Count() > 0 {
			h.Write(w, "coffer_nbd_request_duration_seconds", "cmd", n)
		}
	}
}
