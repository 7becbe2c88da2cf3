// Package cluster owns what several Coffer nodes sharing one metadata store
// agree on through that store, and nothing else: the node registry (which
// nodes exist, where their API and NBD servers listen, when each started
// and last beat) and named leases with fencing epochs (one scheduler at a
// time).
//
// Both live in the metadata store (store.Store) and change only through its
// serializable Updates, so they work alike on SQLite (one node) and
// PostgreSQL (several): there is no consensus protocol of Coffer's own, and
// no advisory lock, whose loss a holder cannot see.
//
// # Leases and fencing
//
// A lease is a row (kind cluster.lease) naming its holder, an epoch and an
// expiry. Acquire takes a lease that is free, expired, or held by the same
// holder name (a restarted node fences its previous incarnation), and
// always gives the new holding an epoch one larger than any before it.
// Renew moves the expiry of a holding that still has its epoch and has not
// expired; Release ends a holding at once, so that another node need not
// wait out the expiry. Every decision reads the time from the one injected
// clock of the node that makes it.
//
// A holder can be paused (a stop-the-world pause, a frozen VM, a lost
// network) past its expiry and go on believing it holds the lease. So
// every write a holder makes as holder calls Fence in the write's own
// transaction: Fence fails with ErrLeaseLost unless the stored lease still
// has the holder and epoch the write was made under. Since Updates are
// serializable, a fenced write either commits before a successor's Acquire
// (which then sees its effect) or fails: no write of an old epoch commits
// after a new epoch began. Fence compares epochs, not clocks, so clock skew
// between nodes can delay a takeover but never let two holders commit.
//
// Elector holds one lease for one holder step by step (Step) or in a loop
// that runs a function for as long as the lease is held (Run).
//
// # Nodes
//
// Each `coffer serve` registers itself (Registry.Register) under its
// --node-name with a random incarnation and renews its heartbeat every few
// seconds (Registry.Run). A node is live while its heartbeat is younger
// than the registry's Timeout; a node record is kept when the node stops,
// so that what was homed on it can name it.
package cluster
