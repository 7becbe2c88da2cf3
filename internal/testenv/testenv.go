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

// HaveProgram is NeedProgram for one part of a test: it returns the path of
// the program and true, or, when the program is not on PATH, fails the test
// if the program is required and otherwise logs that the part is left out
// and returns false, so that the rest of the test still runs.
func HaveProgram(t testing.TB, name string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p, true
	}
	if Required(name) {
		t.Fatalf("%s is required (COFFER_TEST_REQUIRE=%s) but is not on PATH", name, os.Getenv("COFFER_TEST_REQUIRE"))
	}
	t.Logf("leaving out what needs %s: it is not on PATH", name)
	return "", false
}
