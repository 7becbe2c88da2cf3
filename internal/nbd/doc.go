// Package nbd is Coffer's Network Block Device server: it exports live
// volumes and read-only snapshots to standard NBD clients (qemu-img,
// qemu-io, nbdcopy, nbdinfo, nbdfuse) over the fixed newstyle protocol
// described in the NetworkBlockDevice project's doc/proto.md.
//
// A Server asks its Resolver, once per connection, which export an export
// name denotes; in Coffer the name is the secret token of an access grant,
// so the server never lists exports (NBD_OPT_LIST is refused) and an
// unknown name is refused like a revoked one.
//
// Supported in the handshake: NBD_OPT_EXPORT_NAME, NBD_OPT_GO and
// NBD_OPT_INFO (NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE), NBD_OPT_ABORT,
// NBD_OPT_STARTTLS (optionally required), NBD_OPT_STRUCTURED_REPLY and
// NBD_OPT_SET_META_CONTEXT / NBD_OPT_LIST_META_CONTEXT for the
// "base:allocation" context. In transmission: READ (simple or structured
// replies; in a structured reply aligned 4 KiB pages of zeroes, and the
// holes a SparseReader backend reports, are sent as OFFSET_HOLE chunks
// unless the client sets DF), WRITE (with FUA), FLUSH,
// TRIM, WRITE_ZEROES (with NO_HOLE, and FAST_ZERO when the backend is a
// Zeroer), BLOCK_STATUS and DISC. Requests on one connection run
// concurrently, bounded in number and in buffered bytes: each on a
// goroutine of its own, except a READ of up to 64 KiB or a WRITE of any
// size that an Inliner backend can complete at once, which the
// connection's reader serves itself. The
// reader of a plain (TCP or Unix) connection is an OS thread of its own
// blocked in recv on the socket, taken out of Go's network poller
// (socket.go); on TLS it is a goroutine. Each reply is written whole:
// replies that complete while another is being written are queued and
// leave together in one writev, so several connections and pipelined
// requests may share one export (NBD_FLAG_CAN_MULTI_CONN: the backend is
// shared, so a FLUSH on one connection covers the writes completed on all
// of them).
//
// Extended headers (64-bit lengths) are not implemented; clients fall back
// to the classic 32-bit request header.
//
// A Backend is the exported device; optional capabilities (Writer, Flusher,
// Trimmer, Zeroer, BlockStatuser, Inliner, SparseReader) are discovered by type assertion and
// decide which transmission flags are advertised. Package nbdtest holds a
// sparse-file Backend and a small protocol client for tests.
package nbd
