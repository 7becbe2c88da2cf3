// Package e2e holds Coffer's end-to-end tests: a real server on a loopback
// port driven by third-party clients — the official Azure SDK for Go, the
// CLI in-process, and where installed Debian's Azure CLI and Python SDK,
// qemu-img, nbdcopy and Chromium; the README's tour and client sections
// run as written. Its only non-test code is the harness (harness.go) and
// the client-side checks that other test packages share (check.go: a
// disk's SHA-256 through a grant, waiting for a job, restoring a recovery
// point and hashing it).
package e2e
