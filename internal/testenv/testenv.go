// Package testenv tells tests what the machine they run on provides, and
// decides whether a test that needs a missing program skips or fails.
//
// By default a test whose outside program (qemu-img, nbdcopy, chromium,
// postgres, an S3 server, restic …) is missing skips with a clear message,
// so `go test ./...` passes on a machine with only Go. With
// COFFER_TEST_REQUIRE=all (set by .ci/run after installing them) — or a
// comma-separated list of program names — such a test fails instead.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether a missing name must fail rather than skip.
func Required(name string) bool {
	req := os.Getenv("COFFER_TEST_REQUIRE")
	if req == "all" {
		return true
	}
	for _, r := range strings.Split(req, ",") {
		if strings.TrimSpace(r) == name {
			return true
		}
	}
	return false
}

// Missing skips the test, or fails it when name is required, saying why.
func Missing(t testing.TB, name, why string) {
	t.Helper()
	if Required(name) {
		t.Fatalf("%s is required (COFFER_TEST_REQUIRE=%s) but %s", name, os.Getenv("COFFER_TEST_REQUIRE"), why)
	}
	t.Skipf("skipping: %s (set COFFER_TEST_REQUIRE=all to make this a failure)", why)
}

// NeedProgram returns the path of the program, or skips/fails the test if it
// is not on PATH.
func NeedProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, name+" is not on PATH")
	}
	return p
}
