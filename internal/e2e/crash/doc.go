// Package crash holds Coffer's crash matrix: tests that build the coffer
// binary, run `coffer serve` as a subprocess on a data directory, drive
// work through the HTTP API and kill the process with SIGKILL at random
// moments — during backups (on demand and scheduled), restores and
// hydration, retention, garbage collection, verify, uploads over SAS page
// writes and NBD, and policy and backup-instance changes — then restart it
// on the same directory and check that nothing committed was lost or left
// half done. See docs/operations.md, "What we test: crashes and upgrades".
//
// The package has no non-test code.
package crash
