// Package e2e holds Coffer's end-to-end tests: a real server on a loopback
// port driven by third-party clients — the official Azure SDK for Go, the
// CLI in-process, and (where installed) qemu-img, nbdcopy and Chromium.
// It has no non-test code beyond the harness in harness.go.
package e2e
