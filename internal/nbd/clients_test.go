//go:build linux

package nbd_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"coffer/internal/testenv"
)

// mapExtent is one line of `nbdinfo --map`.
type mapExtent struct {
	off, length int64
	desc        string
}

func parseMap(t *testing.T, out string) []mapExtent {
	t.Helper()
	var exts []mapExtent
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("unparsable nbdinfo --map line %q", line)
		}
		exts = append(exts, mapExtent{off, n, f[3]})
	}
	return exts
}

func extentAt(exts []mapExtent, off int64) string {
	for _, e := range exts {
		if off >= e.off && off < e.off+e.length {
			return e.desc
		}
	}
	return ""
}

// TestRealClientsRoundTrip writes a mixed image into exports with
// qemu-img convert and nbdcopy (4 connections), reads each back with the
// other tool, and checks hashes, sparseness and export properties.
func TestRealClientsRoundTrip(t *testing.T) {
	for _, p := range []string{"qemu-img", "nbdcopy", "nbdinfo"} {
		testenv.NeedProgram(t, p)
	}
	const size = 256 << 20
	src := makeImage(t, size)
	want := hashFile(t, src)
	a, b := fileBackend(t, size), fileBackend(t, size)
	ex := &exports{}
	ex.add("grant-a", a, false)
	ex.add("grant-b", b, false)
	addr, _ := startServer(t, ex, nil)
	uriA, uriB := nbdURI(addr, "grant-a"), nbdURI(addr, "grant-b")
	dir := t.TempDir()

	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uriA)
	if got := hashBackend(t, a); got != want {
		t.Fatalf("after qemu-img convert into export: hash %s, want %s", got, want)
	}
	outA := filepath.Join(dir, "a.raw")
	run(t, "nbdcopy", "--connections=4", uriA, outA)
	if got := hashFile(t, outA); got != want {
		t.Fatalf("nbdcopy read back: hash %s, want %s", got, want)
	}

	run(t, "nbdcopy", "--connections=4", src, uriB)
	if got := hashBackend(t, b); got != want {
		t.Fatalf("after nbdcopy into export: hash %s, want %s", got, want)
	}
	outB := filepath.Join(dir, "b.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uriB, outB)
	if got := hashFile(t, outB); got != want {
		t.Fatalf("qemu-img read back: hash %s, want %s", got, want)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, uriB)

	for _, uri := range []string{uriA, uriB} {
		exts := parseMap(t, run(t, "nbdinfo", "--map", uri))
		var covered int64
		for _, e := range exts {
			covered += e.length
		}
		if covered != size {
			t.Errorf("nbdinfo --map %s covers %d bytes, want %d", uri, covered, size)
		}
		for i := int64(0); i < size/segment; i++ {
			d := extentAt(exts, i*segment)
			switch k := segmentKind(i); {
			case k == 0 && !strings.Contains(d, "hole"):
				t.Errorf("%s: zero segment %d mapped as %q, want a hole", uri, i, d)
			case k == 1 && d != "data":
				t.Errorf("%s: random segment %d mapped as %q, want data", uri, i, d)
			}
		}
		totals := run(t, "nbdinfo", "--map", "--totals", uri)
		if !strings.Contains(totals, "hole,zero") || !strings.Contains(totals, "data") {
			t.Errorf("nbdinfo --map --totals %s:\n%s\nwant both data and hole,zero", uri, totals)
		}
	}

	if got := strings.TrimSpace(run(t, "nbdinfo", "--size", uriA)); got != strconv.Itoa(size) {
		t.Errorf("nbdinfo --size = %q, want %d", got, size)
	}
	run(t, "nbdinfo", "--can", "trim", uriA)
	run(t, "nbdinfo", "--can", "multi-conn", uriA)
}

func TestQemuIOPattern(t *testing.T) {
	testenv.NeedProgram(t, "qemu-io")
	f := fileBackend(t, 16<<20)
	ex := &exports{}
	ex.add("rw", f, false)
	addr, _ := startServer(t, ex, nil)
	uri := nbdURI(addr, "rw")

	out := run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", uri)
	if !strings.Contains(out, "wrote 1048576/1048576 bytes") {
		t.Fatalf("qemu-io write output:\n%s", out)
	}
	out = run(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 0 1M", uri)
	if strings.Contains(out, "Pattern verification failed") || !strings.Contains(out, "read 1048576/1048576 bytes") {
		t.Fatalf("qemu-io read output:\n%s", out)
	}
	got := make([]byte, 1<<20+1)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:1<<20], bytes.Repeat([]byte{0xab}, 1<<20)) || got[1<<20] != 0 {
		t.Fatal("backend does not hold the 0xab pattern written by qemu-io")
	}
	// Unaligned write and zeroing through the same client.
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 1000 3000", "-c", "write -z 4096 8192", uri)
	run(t, "qemu-io", "-f", "raw", "-c", "read -P 0x11 1000 3000", "-c", "read -P 0 4096 8192", "-c", "read -P 0xab 12288 4096", uri)
}

func TestReadOnlyExportRefusesWrites(t *testing.T) {
	testenv.NeedProgram(t, "qemu-io")
	testenv.NeedProgram(t, "nbdinfo")
	f := fileBackend(t, 4<<20)
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	before := hashBackend(t, f)
	ex := &exports{}
	ex.add("ro", f, true)
	addr, _ := startServer(t, ex, nil)
	uri := nbdURI(addr, "ro")

	out, err := runErr(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", uri)
	if err == nil && strings.Contains(out, "wrote") {
		t.Fatalf("qemu-io write to a read-only export succeeded:\n%s", out)
	}
	t.Logf("qemu-io write (rw open): err=%v\n%s", err, out)
	// Opened read-only on purpose, the write must fail at the NBD level.
	out, _ = runErr(t, "qemu-io", "-r", "-f", "raw", "-c", "write -P 0xab 0 1M", uri)
	if strings.Contains(out, "wrote") {
		t.Fatalf("qemu-io -r write succeeded:\n%s", out)
	}
	t.Logf("qemu-io -r write: %s", out)
	run(t, "qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5a 0 1M", uri)
	run(t, "nbdinfo", "--is", "read-only", uri)
	if _, err := runErr(t, "nbdinfo", "--can", "trim", uri); err == nil {
		t.Error("nbdinfo --can trim succeeded on a read-only export")
	}
	if got := hashBackend(t, f); got != before {
		t.Fatal("read-only export's backend changed")
	}
}

func TestUnknownExportRefused(t *testing.T) {
	testenv.NeedProgram(t, "nbdinfo")
	ex := &exports{}
	ex.add("right", fileBackend(t, 1<<20), false)
	addr, _ := startServer(t, ex, nil)
	out, err := runErr(t, "nbdinfo", nbdURI(addr, "wrong"))
	var ee *exec.ExitError
	if err == nil {
		t.Fatalf("nbdinfo on an unknown export succeeded:\n%s", out)
	} else if !errorsAs(err, &ee) {
		t.Fatalf("nbdinfo: %v", err)
	}
	// Listing is refused: export names are secrets.
	out, _ = runErr(t, "nbdinfo", "--list", "nbd://"+addr)
	if strings.Contains(out, "right") {
		t.Fatalf("nbdinfo --list revealed an export name:\n%s", out)
	}
	run(t, "nbdinfo", "--size", nbdURI(addr, "right"))
}
