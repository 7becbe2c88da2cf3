package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"coffer/internal/client"
	"coffer/internal/testenv"
)

// TestComputeNBDImage writes a 2 GiB sparse image into disks over NBD with
// qemu-img convert and with nbdcopy, reads each back with the other tool,
// compares hashes, and checks that nbdinfo --map reports holes exactly where
// the image has none of its data.
func TestComputeNBDImage(t *testing.T) {
	qemuImg := testenv.NeedProgram(t, "qemu-img")
	nbdcopy := testenv.NeedProgram(t, "nbdcopy")
	nbdinfo := testenv.NeedProgram(t, "nbdinfo")
	ce := startCompute(t, Options{})
	dir := t.TempDir()
	const size = 2 << 30
	exts := []extent{{0, 48 << 20}, {512 << 20, 32 << 20}, {(1 << 30) + (64 << 10), 16 << 20}, {size - (32 << 20), 32 << 20}}
	img := sparseImage(t, dir, "src.img", size, 1, exts)
	want := fileHash(t, img)

	// qemu-img writes, nbdcopy reads.
	ce.createDisk(t, "qemu", client.DiskSpec{SizeGB: 2})
	g := ce.grant(t, client.Disks, "qemu", "Write")
	if got := strings.TrimSpace(run(t, nbdinfo, "--size", g.NBDURL)); got != strconv.Itoa(size) {
		t.Fatalf("nbdinfo --size = %s", got)
	}
	run(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", img, g.NBDURL)
	out := filepath.Join(dir, "qemu-back.img")
	run(t, nbdcopy, g.NBDURL, out)
	if got := fileHash(t, out); got != want {
		t.Fatalf("nbdcopy read back %s, want %s", got, want)
	}
	os.Remove(out)

	// nbdinfo --map: data exactly in the extents (they are block-aligned).
	m := run(t, nbdinfo, "--map", g.NBDURL)
	var data []extent
	for _, line := range strings.Split(strings.TrimSpace(m), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		off, _ := strconv.ParseInt(f[0], 10, 64)
		n, _ := strconv.ParseInt(f[1], 10, 64)
		typ, _ := strconv.Atoi(f[2])
		if typ&1 == 0 { // allocated
			if k := len(data); k > 0 && data[k-1].Off+data[k-1].Len == off {
				data[k-1].Len += n
			} else {
				data = append(data, extent{off, n})
			}
		}
	}
	if len(data) != len(exts) {
		t.Fatalf("nbdinfo --map data extents %v, want %v\n%s", data, exts, m)
	}
	for i := range exts {
		if data[i] != exts[i] {
			t.Fatalf("nbdinfo --map data extents %v, want %v\n%s", data, exts, m)
		}
	}

	// nbdcopy writes, qemu-img reads.
	ce.createDisk(t, "nbdcopy", client.DiskSpec{SizeGB: 2})
	g2 := ce.grant(t, client.Disks, "nbdcopy", "Write")
	run(t, nbdcopy, img, g2.NBDURL)
	out2 := filepath.Join(dir, "nbdcopy-back.img")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", g2.NBDURL, out2)
	if got := fileHash(t, out2); got != want {
		t.Fatalf("qemu-img read back %s, want %s", got, want)
	}
	run(t, qemuImg, "compare", "-f", "raw", "-F", "raw", img, g2.NBDURL)
}

// TestComputeNBDSnapshots writes over NBD, snapshots, writes more,
// snapshots again, makes a disk from each snapshot and checks that each
// reads back (over NBD) as the source did at its snapshot.
func TestComputeNBDSnapshots(t *testing.T) {
	qemuIO := testenv.NeedProgram(t, "qemu-io")
	nbdcopy := testenv.NeedProgram(t, "nbdcopy")
	ce := startCompute(t, Options{})
	dir := t.TempDir()
	const size = 256 << 20
	ce.createDisk(t, "src", client.DiskSpec{SizeGB: 1})
	g := ce.grant(t, client.Disks, "src", "Write")

	// State 1: random data in two places plus a pattern.
	img1 := sparseImage(t, dir, "state1.img", 1<<30, 7, []extent{{0, 8 << 20}, {300 << 20, 5 << 20}})
	run(t, nbdcopy, img1, g.NBDURL)
	run(t, qemuIO, "-f", "raw", "-c", "write -P 0xab 100M 1M", g.NBDURL)
	writePattern(t, img1, 100<<20, 1<<20, 0xab)
	want1 := fileHash(t, img1)
	ce.snapshot(t, "s1", "src")

	// State 2: overwrite part, zero part, write new data.
	run(t, qemuIO, "-f", "raw", "-c", "write -P 0xcd 4M 8M", "-c", "write -z 300M 1M", "-c", "write -P 0x11 900M 64k", g.NBDURL)
	writePattern(t, img1, 4<<20, 8<<20, 0xcd)
	writePattern(t, img1, 300<<20, 1<<20, 0)
	writePattern(t, img1, 900<<20, 64<<10, 0x11)
	want2 := fileHash(t, img1)
	ce.snapshot(t, "s2", "src")

	// Writes after the snapshots must not show in the restored disks.
	run(t, qemuIO, "-f", "raw", "-c", "write -P 0xee 0 16M", g.NBDURL)

	for _, c := range []struct{ snap, want string }{{"s1", want1}, {"s2", want2}} {
		name := "from-" + c.snap
		d := ce.createDisk(t, name, client.DiskSpec{CreateOption: "Copy",
			Source: "/subscriptions/" + ce.Admin.SubscriptionID + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/" + c.snap})
		if d.Properties.DiskSizeGB != 1 || d.Properties.ProvisioningState != "Succeeded" {
			t.Fatalf("%s: %+v", name, d.Properties)
		}
		rg := ce.grant(t, client.Disks, name, "Read")
		out := filepath.Join(dir, name+".img")
		run(t, nbdcopy, rg.NBDURL, out)
		if got := fileHash(t, out); got != c.want {
			t.Fatalf("%s reads %s, want %s", name, got, c.want)
		}
		os.Remove(out)
		// The snapshot itself, exported read-only.
		sg := ce.grant(t, client.Snapshots, c.snap, "Read")
		run(t, nbdcopy, sg.NBDURL, out)
		if got := fileHash(t, out); got != c.want {
			t.Fatalf("snapshot %s reads %s, want %s", c.snap, got, c.want)
		}
		os.Remove(out)
		fails(t, qemuIO, "-f", "raw", "-c", "write -P 0x01 0 4k", sg.NBDURL)
	}

	// A copy of the live disk (snapshot-then-restore) equals it.
	d := ce.createDisk(t, "copy", client.DiskSpec{CreateOption: "Copy", Source: ce.diskID("src")})
	if d.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("copy: %+v", d.Properties)
	}
	writePattern(t, img1, 0, 16<<20, 0xee)
	cg := ce.grant(t, client.Disks, "copy", "Read")
	out := filepath.Join(dir, "copy.img")
	run(t, nbdcopy, cg.NBDURL, out)
	if got, want := fileHash(t, out), fileHash(t, img1); got != want {
		t.Fatalf("copy reads %s, want %s", got, want)
	}
	_ = size
}

// writePattern fills [off, off+n) of a file with byte b.
func writePattern(t *testing.T, path string, off, n int64, b byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = b
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}
