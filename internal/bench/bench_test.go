package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"coffer/internal/clock"
	"coffer/internal/directio"
)

// TestRunSmall runs the whole pipeline on a 64 MiB disk. restic, borg and
// qemu-img run when they are on PATH; their absence is not a failure.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole benchmark")
	}
	dir := t.TempDir()
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{Size: 64 << 20, Dir: dir, Seed: 7, Peers: true, Progress: &progress})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"sizeBytes", "image.sha256", "image.sha256AfterChange",
		"coffer.fullSnapshot.seconds", "coffer.fullSnapshot.mibPerSecond", "coffer.fullSnapshot.storedBytes",
		"coffer.incrementalSnapshot.seconds", "coffer.incrementalSnapshot.storedBytes",
		"coffer.restore.seconds", "coffer.restoreRepositoryCached.seconds", "coffer.instantRestore.firstReadMs", "coffer.instantRestore.hydrationReads", "coffer.instantRestore.hydratedSeconds",
		"coffer.writeLatencyDuringSnapshot.p99Ms", "coffer.repositoryBytes", "peakRSSBytes",
		"coffer.fullSnapshot.internals.peakRSSBytes", "coffer.restore.internals.peakRSSBytes",
		"coffer.fullSnapshotComputeLimit.seconds", "coffer.fullSnapshotComputeLimit.cpuSeconds",
		"coffer.restoreIOFloor.seconds", "coffer.restoreIOFloor.readBytes", "coffer.restoreIOFloor.writeBytes",
		"coffer.manyDisks.backup.seconds", "coffer.manyDisks.restore.seconds",
		"ratios.fullSnapshotVsComputeLimit", "ratios.restoreVsIOFloor", "ratios.manyDisksBackupVsOne", "ratios.manyDisksRestoreThroughputVsOne",
	} {
		v, ok := lookup(m, path)
		if !ok {
			t.Errorf("JSON has no %s", path)
			continue
		}
		if f, isNum := v.(float64); isNum && f <= 0 {
			t.Errorf("%s = %v, want > 0", path, f)
		}
	}
	if !res.AllRestoresMatch {
		t.Errorf("a restore did not reproduce the image: %s", b)
	}
	if !res.Coffer.Restore.Match || !res.Coffer.RestoreCached.Match || !res.Coffer.Instant.Match || !res.Coffer.Instant.ReadsMatch {
		t.Errorf("coffer restores: %+v %+v %+v", res.Coffer.Restore, res.Coffer.RestoreCached, res.Coffer.Instant)
	}
	if got, want := res.Image.ZeroBytes+res.Image.CompressibleBytes+res.Image.RandomBytes, res.SizeBytes; got != want {
		t.Errorf("image kinds add up to %d, want %d", got, want)
	}
	if res.Coffer.Incremental.BlocksRead != int64(res.Image.ChangedBlocks) {
		t.Errorf("incremental snapshot read %d blocks, want the %d changed", res.Coffer.Incremental.BlocksRead, res.Image.ChangedBlocks)
	}
	if in := res.Coffer.Instant; in.HydrationReadsBad != 0 {
		t.Errorf("reads during hydration: %d of %d differed from the image", in.HydrationReadsBad, in.HydrationReads)
	}
	if res.Coffer.Latency.Writes == 0 {
		t.Error("no writes during the snapshot")
	}
	if len(res.Targets) != 13 {
		t.Errorf("%d targets, want 13", len(res.Targets))
	}
	// The compute limit covers the blocks the full snapshot stored; the
	// I/O floor replays the restore's reads and writes: the packs it read
	// and the data it wrote.
	if l := res.Coffer.FullComputeLimit; l.Blocks != res.Coffer.Full.BlocksStored || l.CPUSeconds <= 0 {
		t.Errorf("compute limit %+v, full snapshot stored %d blocks", l, res.Coffer.Full.BlocksStored)
	} else if l.ReadCPUSeconds <= 0 || l.ProcessCPUSeconds < l.ReadCPUSeconds {
		// The process's CPU covers the workers' reads (and their work:
		// not compared, the two clocks tick differently).
		t.Errorf("compute limit's process CPU %.3fs, reads %.3fs", l.ProcessCPUSeconds, l.ReadCPUSeconds)
	}
	// s2's data blocks: s1's, and the changed blocks that were holes.
	minData, maxData := res.Coffer.Full.BlocksStored*blockSize, (res.Coffer.Full.BlocksStored+int64(res.Image.ChangedBlocks))*blockSize
	if f, in := res.Coffer.RestoreIOFloor, res.Coffer.Restore.Internals; int64(f.Reads) != in.BlobGets || f.ReadBytes <= 0 ||
		f.WriteBytes%blockSize != 0 || f.WriteBytes < minData || f.WriteBytes > maxData {
		t.Errorf("I/O floor %+v; the restore made %d reads and wrote %d-%d bytes", f, in.BlobGets, minData, maxData)
	}
	// Each round's floor is the fastest of its replays, one per way (the
	// first round's are kept), and the floor is the median round.
	if f := res.Coffer.RestoreIOFloor; len(f.Runs) != len(floorWays) || len(f.Rounds) != DefaultRestoreRounds {
		t.Errorf("I/O floor replays %+v in rounds %v, want one in each of %v in %d rounds", f.Runs, f.Rounds, floorWays, DefaultRestoreRounds)
	} else {
		first := f.Rounds[0]
		for i, run := range f.Runs {
			w := floorWays[i]
			if run.Depth != w.depth || run.SyncEvery != w.syncEvery || run.Seconds <= 0 || run.Seconds < first ||
				run.Seconds == first && (run.Depth != f.Depth || run.SyncEvery != f.SyncEvery) {
				t.Errorf("I/O floor's first round %.3fs at depth %d, synced every %d; replay %+v", first, f.Depth, f.SyncEvery, run)
			}
		}
		if f.Seconds != median(f.Rounds) {
			t.Errorf("I/O floor %.3fs, not the median of its rounds %v", f.Seconds, f.Rounds)
		}
	}
	if m := res.Coffer.Many; m.Disks != manyDisks || m.DiskBytes*manyDisks != res.SizeBytes || !m.Restore.Match {
		t.Errorf("many disks: %+v", m)
	} else if f := m.RestoreIOFloor; f == nil || int64(f.Reads) != m.Restore.Internals.BlobGets || f.WriteBytes%blockSize != 0 ||
		f.WriteBytes < minData || f.WriteBytes > maxData || len(f.Runs) != len(floorWays) {
		// The same data as the one disk, restored as eight.
		t.Errorf("many disks' I/O floor %+v; their restores made %d reads", f, m.Restore.Internals.BlobGets)
	} else if a := m.RestoreIOFloorAtOnce; a == nil || a == f || a.Reads != f.Reads || a.ReadBytes != f.ReadBytes || a.Writes != f.Writes ||
		a.WriteBytes != f.WriteBytes || len(a.Runs) != len(floorWays) {
		// The same reads, each told to its restore, and the same writes,
		// each into its restore's file.
		t.Errorf("many disks' I/O floor at once %+v; in one file %+v", a, f)
	}
	for _, peer := range []struct {
		name string
		p    *Peer
	}{{"restic", res.Restic}, {"borg", res.Borg}} {
		if _, err := exec.LookPath(peer.name); err != nil {
			continue
		}
		if peer.p == nil {
			t.Errorf("%s is on PATH but did not run", peer.name)
			continue
		}
		if peer.p.Error != "" || !peer.p.Restore.Match || peer.p.Backup.Seconds <= 0 || peer.p.Backup2.Seconds <= 0 || peer.p.Restore.FsyncSeconds <= 0 ||
			!peer.p.RestoreCached.Match || peer.p.RestoreCached.FsyncSeconds <= 0 {
			t.Errorf("%s: %+v", peer.name, *peer.p)
		}
		for _, k := range []string{"fullSnapshotSpeedupVs", "incrementalSnapshotSpeedupVs", "restoreSpeedupVs", "restoreWithFsyncSpeedupVs",
			"restoreCachedSpeedupVs", "restoreCachedWithFsyncSpeedupVs", "fullStoredVs"} {
			if _, ok := res.Ratios[k+strings.ToUpper(peer.name[:1])+peer.name[1:]]; !ok {
				t.Errorf("no ratio %s for %s", k, peer.name)
			}
		}
	}
	if _, err := exec.LookPath("qemu-img"); err == nil && (res.Floor == nil || !res.Floor.Restore.Match) {
		t.Errorf("qemu-img floor: %+v", res.Floor)
	}
	if f := res.Floor; f != nil && f.Restore.Error == "" {
		// qemu-img does not fsync; the floor is also reported with an fsync.
		if f.SyncedSeconds < f.Restore.Seconds || f.SyncedSeconds != f.Restore.Seconds+f.FsyncSeconds {
			t.Errorf("floor with fsync: %+v", f)
		}
		if _, ok := res.Ratios["restoreVsFloorWithFsync"]; !ok {
			t.Error("no ratio restoreVsFloorWithFsync")
		}
		// And run again with the image in the page cache.
		if q := f.Cached; !q.Match || q.Seconds <= 0 || q.FsyncSeconds <= 0 {
			t.Errorf("qemu-img floor, image cached: %+v", q)
		}
		if _, ok := res.Ratios["restoreVsFloorSourceCachedWithFsync"]; !ok {
			t.Error("no ratio restoreVsFloorSourceCachedWithFsync")
		}
	}
	// Every restore from disk ran DefaultRestoreRounds times, and its
	// figures are its median run's.
	checkRuns := func(name string, r Restore) {
		t.Helper()
		if len(r.Runs) != DefaultRestoreRounds {
			t.Errorf("%s: %d runs from disk, want %d: %+v", name, len(r.Runs), DefaultRestoreRounds, r.Runs)
			return
		}
		m := r
		m.useMedian(res.SizeBytes)
		if m.Seconds != r.Seconds || m.FsyncSeconds != r.FsyncSeconds || r.Seconds <= 0 {
			t.Errorf("%s: %.3f + %.3f s, not its median run of %+v", name, r.Seconds, r.FsyncSeconds, r.Runs)
		}
	}
	checkRuns("coffer", res.Coffer.Restore)
	if f := res.Coffer.RestoreIOFloor; len(f.Rounds) != DefaultRestoreRounds || f.Seconds != median(f.Rounds) {
		t.Errorf("I/O floor %.3fs, rounds %v", f.Seconds, f.Rounds)
	}
	for _, p := range []*Peer{res.Restic, res.Borg} {
		if p != nil && p.Error == "" {
			checkRuns(p.Version, p.Restore)
		}
	}
	if f := res.Floor; f != nil && f.Restore.Error == "" {
		checkRuns("qemu-img", f.Restore)
	}
	// The restores at once ran in rounds beside the one disk's restore,
	// and are judged by the two medians.
	if m := res.Coffer.Many; m.One == nil {
		t.Error("many disks: no one-disk restore beside the restores at once")
	} else {
		checkRuns("restores at once", m.Restore)
		checkRuns("the one disk's restore beside them", *m.One)
		if got, want := res.Ratios["manyDisksRestoreThroughputVsOne"], m.One.Seconds/m.Restore.Seconds; math.Abs(got-want) > 1e-9*want {
			t.Errorf("restores at once vs one %.4f×, want their medians' ratio %.4f× (%+v, %+v)", got, want, m.Restore.Runs, m.One.Runs)
		}
	}
	// Restored copies are removed; the repositories stay for the caller.
	if _, err := os.Stat(filepath.Join(dir, "restore-coffer.img")); !os.IsNotExist(err) {
		t.Errorf("restored copy left behind: %v", err)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"full backup: seconds", "full restore, repository from disk: seconds", "full restore, repository in page cache: seconds", "Performance targets", "where the time went", "p99 write latency"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q:\n%s", want, table.String())
		}
	}
}

// TestUseMedian: a restore's figures are those of its median run by
// restore + fsync, the slower middle one of an even count.
func TestUseMedian(t *testing.T) {
	r := Restore{Seconds: 9, FsyncSeconds: 9, Runs: []RestoreRun{{3, 1}, {1, 1}, {2, 5}, {2, 1}}}
	r.useMedian(1 << 30)
	if r.Seconds != 3 || r.FsyncSeconds != 1 || r.MiBps != 1024.0/3 {
		t.Errorf("median of 4 runs: %+v, want the run 3 + 1 s", r)
	}
	r.Runs = r.Runs[:3]
	r.useMedian(1 << 30)
	if r.Seconds != 3 || r.FsyncSeconds != 1 {
		t.Errorf("median of 3 runs: %+v, want the run 3 + 1 s", r)
	}
	one := Restore{Seconds: 5, FsyncSeconds: 2}
	one.useMedian(1 << 30)
	if one.Seconds != 5 || one.FsyncSeconds != 2 {
		t.Errorf("no runs: %+v changed", one)
	}
}

// TestRestoreRounds measures restores again on a kept run: every round
// restores the image exactly, replays its I/O and restores the many
// disks; a directory that is not a kept run is refused.
func TestRestoreRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole benchmark")
	}
	dir := t.TempDir()
	if _, err := Run(context.Background(), Options{Size: 32 << 20, Dir: dir, Seed: 3, Keep: true}); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	res, err := RunRestores(context.Background(), RestoreOptions{Dir: dir, Rounds: 2, Progress: &progress})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 2 {
		t.Fatalf("%d rounds, want 2", len(res.Rounds))
	}
	for i, rd := range res.Rounds {
		if !rd.Restore.Match || rd.Restore.Seconds <= 0 || rd.IOFloor == nil || rd.IOFloor.Reads == 0 ||
			int64(rd.IOFloor.Reads) != rd.Restore.Internals.BlobGets || rd.IOFloor.WriteBytes <= 0 {
			t.Errorf("round %d: restore %+v, floor %+v", i+1, rd.Restore, rd.IOFloor)
		}
		if rd.Many == nil || !rd.Many.Restore.Match || rd.Many.Restore.Seconds <= 0 {
			t.Errorf("round %d: many disks %+v", i+1, rd.Many)
		}
	}
	var table bytes.Buffer
	if err := WriteRestoreTable(&table, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "round 2: restore") || !strings.Contains(table.String(), "medians of 2 rounds: restore") {
		t.Errorf("table:\n%s", table.String())
	}
	if _, err := RunRestores(context.Background(), RestoreOptions{Dir: t.TempDir()}); err == nil {
		t.Error("RunRestores accepted a directory that no run kept")
	}

	// Without floors: the one restore and the restores at once only.
	res, err = RunRestores(context.Background(), RestoreOptions{Dir: dir, Rounds: 1, NoFloors: true})
	if err != nil {
		t.Fatal(err)
	}
	if rd := res.Rounds[0]; !rd.Restore.Match || rd.IOFloor != nil || rd.Qemu != nil ||
		rd.Many == nil || !rd.Many.Restore.Match || rd.Many.RestoreIOFloor != nil {
		t.Errorf("without floors: %+v", rd)
	}
}

func lookup(m map[string]any, path string) (any, bool) {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// TestBackupOnly runs the backup steps alone: the full snapshot, its
// compute limit and the many disks' backups, and neither restores nor
// peers.
func TestBackupOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs part of the benchmark")
	}
	res, err := Run(context.Background(), Options{Size: 32 << 20, Dir: t.TempDir(), Seed: 7, Peers: true, BackupOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Coffer
	if c.Full.Seconds <= 0 || c.FullComputeLimit == nil || c.Many == nil || c.Many.Backup.Seconds <= 0 {
		t.Fatalf("backup steps missing: full %v, compute limit %v, many %+v", c.Full.Seconds, c.FullComputeLimit, c.Many)
	}
	if c.Restore.Seconds != 0 || c.Incremental.Seconds != 0 || c.Many.Restore.Seconds != 0 || res.Restic != nil || res.Borg != nil || res.Floor != nil {
		t.Errorf("--backup-only ran more than the backups: %+v", res)
	}
	if _, ok := res.Ratios["fullSnapshotVsComputeLimit"]; !ok || !res.AllRestoresMatch || !res.BackupOnly {
		t.Errorf("ratios %v, all restores match %v, backup only %v", res.Ratios, res.AllRestoresMatch, res.BackupOnly)
	}
}

// TestImageReproducible checks that a seed determines the image, and that
// the layout has the intended shares.
func TestImageReproducible(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	build := func(name string, seed uint64) imageInfo {
		info, err := buildImage(ctx, filepath.Join(dir, name), 16<<20, 0, seed, DefaultCorpus)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := hashFile(ctx, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if sum != info.sha {
			t.Fatalf("hash of the file %s, of the stream %s", sum, info.sha)
		}
		return info
	}
	a, b, c := build("a", 1), build("b", 1), build("c", 2)
	if a.sha != b.sha {
		t.Error("same seed, different images")
	}
	if a.sha == c.sha {
		t.Error("different seeds, same image")
	}
	if a.bytes[kindZero] != 8<<20 || a.bytes[kindCorpus] != (16<<20)/3/blockSize*blockSize {
		t.Errorf("kinds %v", a.bytes)
	}
}

// TestCorpusRepeats checks that a corpus smaller than needed repeats,
// XORed per pass, and that no corpus at all falls back to pseudo-text.
func TestCorpusRepeats(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hello corpus"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCorpus([]string{dir}, 1)
	buf := make([]byte, 36)
	c.fill(buf)
	c.close()
	p0, p1, p2 := buf[:12], buf[12:24], buf[24:]
	if string(p0) != "hello corpus" || bytes.Equal(p0, p1) || bytes.Equal(p1, p2) {
		t.Fatalf("passes %q %q %q", p0, p1, p2)
	}
	if x := p0[0] ^ p1[0]; p0[5]^p1[5] != x {
		t.Error("a pass is not XORed with one constant")
	}
	empty := newCorpus([]string{filepath.Join(dir, "missing")}, 1)
	buf = make([]byte, 4096)
	empty.fill(buf)
	if allZero(buf) {
		t.Error("no fallback data")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "4GiB": 4 << 30, "4G": 4 << 30, "1.5g": 3 << 29,
		"65536": 65536, "8 MiB": 8 << 20, "1TiB": 1 << 40, "64kb": 64 << 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1G", "4QiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	rng.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	p50, p99, mx := percentiles(d)
	if p50 != 100 || p99 != 198 || mx != 200 {
		t.Errorf("p50 %v p99 %v max %v, want 100 198 200", p50, p99, mx)
	}
}

// TestColdThenCachedSettles checks that the second run (repository
// cached) waits Settle after the first, as the first waited after the
// step before it, so that neither starts on a disk the other's writes
// keep busy.
func TestColdThenCachedSettles(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	r := &runner{opts: Options{Settle: 5 * time.Second}, clk: clk}
	var at []time.Duration
	var states []string
	done := make(chan error, 1)
	go func() {
		var cold, cached Restore
		done <- r.coldThenCached(context.Background(), "image", nil, &cold, &cached, func(out *Restore, state, suffix string) error {
			at, states = append(at, clk.Now().Sub(t0)), append(states, state+"|"+suffix)
			return nil
		})
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if want := []time.Duration{5 * time.Second, 10 * time.Second}; !slices.Equal(at, want) {
				t.Errorf("runs started at %v, want %v", at, want)
			}
			if want := []string{"image from disk|", "image cached|-cached"}; !slices.Equal(states, want) {
				t.Errorf("runs %q, want %q", states, want)
			}
			return
		default:
		}
		if clk.Pending() > 0 {
			clk.Advance(time.Second)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBeforeTimedSettles checks that a timed step waits Settle on the
// bench's clock after the sync, and that cancelling ends the wait.
func TestBeforeTimedSettles(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC))
	r := &runner{opts: Options{Settle: 5 * time.Second}, clk: clk}
	done := make(chan error, 1)
	go func() { done <- r.beforeTimed(context.Background()) }()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond) // until the step waits on the clock
	}
	clk.Advance(4 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("returned after 4s of a 5s settle: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- r.beforeTimed(ctx) }()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled settle: got %v, want context.Canceled", err)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers left pending", n)
	}
}

// TestEvictCached checks that evictCached leaves none of a file's pages in
// the page cache (mincore of a mapping, which does not fault pages in), and
// that it skips missing paths.
func TestEvictCached(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is in memory: its pages are the file, nothing to evict", dir)
	}
	const size = 4 << 20
	path := filepath.Join(dir, "sub", "f")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil { // only clean pages can be dropped
		t.Fatal(err)
	}
	if _, err := io.ReadFull(f, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	resident := residentPages(t, f, size)
	if resident(0, size) == 0 {
		t.Skip("a file just read has no page in the page cache here: nothing to evict")
	}
	if err := evictCached(filepath.Join(dir, "missing"), dir); err != nil {
		t.Fatal(err)
	}
	if n := resident(0, size); n != 0 {
		t.Fatalf("%d pages still cached after evictCached", n)
	}
}

// residentPages maps the first size bytes of f and returns a function
// that counts the pages of [from, to) in the page cache (mincore, which
// does not fault pages in). The mapping goes with the test.
func residentPages(t *testing.T, f *os.File, size int64) func(from, to int64) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	page := int64(os.Getpagesize())
	return func(from, to int64) int {
		vec := make([]byte, size/page)
		// x/sys/unix has no wrapper for mincore(2).
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		n := 0
		for _, v := range vec[from/page : to/page] {
			n += int(v & 1)
		}
		return n
	}
}

// TestSettleCached checks that settleCached leaves a sparse file with
// every page of its data in the page cache and none of its holes' (after
// a read of the whole file cached the holes' zero pages and the data was
// dropped), written back first: the state that coffer bench nbd gives
// both servers' files before each timed run.
func TestSettleCached(t *testing.T) {
	f := holeFile(t, 16*mb)
	var fs unix.Statfs_t
	if err := unix.Statfs(f.Name(), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skip("the file is in memory: its pages are the file, nothing to drop")
	}
	data := make([]byte, 3*mb)
	rand.NewChaCha8([32]byte{2}).Read(data)
	for _, off := range []int64{1 * mb, 7 * mb} { // [1,4) and [7,10) MiB
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if d, _, err := nextData(f, 0, 16*mb); err != nil || d != 1*mb {
		t.Skipf("this file system does not report holes (first data at %d, %v)", d, err)
	}
	if _, err := f.ReadAt(make([]byte, 16*mb), 0); err != nil { // the holes' zero pages too
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 7*mb, 3*mb, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	resident := residentPages(t, f, 16*mb)
	holes := func() int { return resident(0, 1*mb) + resident(4*mb, 7*mb) + resident(10*mb, 16*mb) }
	if holes() == 0 {
		t.Skip("reading a hole caches no page here: nothing to drop")
	}
	if _, err := f.WriteAt([]byte("dirty"), 2*mb); err != nil { // written back by the settle
		t.Fatal(err)
	}
	copy(data[1*mb:], "dirty")
	if err := settleCached(context.Background(), f.Name()); err != nil {
		t.Fatal(err)
	}
	pages := 3 * mb / os.Getpagesize()
	if got := resident(1*mb, 4*mb) + resident(7*mb, 10*mb); got != 2*pages {
		t.Errorf("%d of the data's %d pages cached, want all", got, 2*pages)
	}
	if n := holes(); n != 0 {
		t.Errorf("%d pages of the holes still cached", n)
	}
	got := make([]byte, 3*mb)
	if _, err := f.ReadAt(got, 1*mb); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the data changed (%v)", err)
	}
}

// TestDataRuns checks that the floor's writes are the data extents of a
// sparse file, cut at multiples of the cut size.
func TestDataRuns(t *testing.T) {
	f := holeFile(t, 16*mb)
	path := f.Name()
	data := bytes.Repeat([]byte{7}, 3*mb)
	for _, off := range []int64{1 * mb, 7 * mb} { // [1,4) and [7,10) MiB
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if d, _, err := nextData(f, 0, 16*mb); err != nil || d != 1*mb {
		t.Skipf("this file system does not report holes (first data at %d, %v)", d, err)
	}
	got, err := dataRuns(path, 2*mb)
	if err != nil {
		t.Fatal(err)
	}
	want := []extent{{1 * mb, 1 * mb}, {2 * mb, 2 * mb}, {7 * mb, 1 * mb}, {8 * mb, 2 * mb}}
	if !slices.Equal(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
}

const mb = 1 << 20

// holeFile returns a new file of size bytes that are all hole, closed when
// the test ends.
func holeFile(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAllocateExtents: the floor allocates exactly the blocks of its
// writes before it makes them, as RestoreToFile does, adjacent extents
// together, and leaves the rest of its file a hole.
func TestAllocateExtents(t *testing.T) {
	f := holeFile(t, 16*mb)
	writes := []extent{{1 * mb, 1 * mb}, {2 * mb, 2 * mb}, {7 * mb, 4096}, {9 * mb, 2 * mb}}
	if err := allocateExtents(f, writes); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks == 0 {
		t.Skip("this file system does not allocate ahead (no fallocate)")
	}
	if want := int64(5*mb + 4096); st.Blocks*512 != want || st.Size != 16*mb {
		t.Fatalf("after allocating the writes: %d bytes on disk, size %d; want %d bytes, size %d", st.Blocks*512, st.Size, want, 16*mb)
	}
}

// rangeLog is a blobstore.RangeReader that records the ranges read.
type rangeLog struct {
	mu    sync.Mutex
	reads []rangeRead
}

func (l *rangeLog) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads = append(l.reads, rangeRead{name: name, off: off, n: n})
	return buf[:n], nil
}

// TestReplayIO checks that the floor makes every read it is given once and
// writes every run, into a file it removes.
func TestReplayIO(t *testing.T) {
	dir := t.TempDir()
	var reads []rangeRead
	for i := range 50 {
		reads = append(reads, rangeRead{name: fmt.Sprintf("packs/%d", i%7), off: int64(i) * 4096, n: int64(1+i%5) * 65536})
	}
	writes := []extent{{0, 1 << 20}, {2 << 20, 4096}, {3 << 20, 3 << 20}, {7<<20 - 65536, 65536}}
	var log rangeLog
	out := filepath.Join(dir, "out")
	res, err := replayIO(context.Background(), clock.Real{}, &log, reads, writes, out, 7<<20, floorWay{3, 1 << 20}, blockDevice(dir))
	if err != nil {
		t.Fatal(err)
	}
	key := func(a, b rangeRead) int { return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.off, b.off)) }
	slices.SortFunc(log.reads, key)
	slices.SortFunc(reads, key)
	if !slices.Equal(log.reads, reads) {
		t.Errorf("reads made %v, want %v", log.reads, reads)
	}
	var rb int64
	for _, r := range reads {
		rb += r.n
	}
	if res.Reads != len(reads) || res.ReadBytes != rb || res.Writes != len(writes) || res.WriteBytes != 4<<20+4096+65536 || res.Depth != 3 || res.SyncEvery != 1<<20 || res.Seconds <= 0 {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the floor's output is left: %v", err)
	}
}

// TestReplayAtOnce checks that the floor of restores at once makes each
// restore's reads once and writes each restore's runs, and removes every
// file it made; and that the trace tells apart the reads made under each
// restore's slot.
func TestReplayAtOnce(t *testing.T) {
	dir := t.TempDir()
	var tr readTrace
	tr.start()
	const n = 3
	writes := make([][]extent, n)
	var wantWrites int
	var wantBytes int64
	for i := range n {
		ctx := withTraceSlot(context.Background(), i+1)
		for k := range 10 + 5*i {
			tr.record(ctx, fmt.Sprintf("packs/%d", k%4), int64(i)<<20+int64(k)*4096, int64(1+k%3)*65536)
		}
		writes[i] = []extent{{0, 1 << 20}, {int64(2+i) << 20, 65536}}
		wantWrites += len(writes[i])
		wantBytes += 1<<20 + 65536
	}
	tr.record(context.Background(), "packs/x", 0, 4096) // no slot: no restore's
	all := tr.stop()
	reads := bySlot(all, n)
	for i, rs := range reads {
		if len(rs) != 10+5*i {
			t.Fatalf("slot %d: %d reads, want %d", i+1, len(rs), 10+5*i)
		}
		for _, r := range rs {
			if r.slot != i+1 || r.off>>20 != int64(i) {
				t.Fatalf("slot %d holds %+v", i+1, r)
			}
		}
	}
	var log rangeLog
	res, err := replayAtOnce(context.Background(), clock.Real{}, &log, reads, writes, filepath.Join(dir, "floor"), 8<<20, 2, floorWay{4, 0}, blockDevice(dir))
	if err != nil {
		t.Fatal(err)
	}
	key := func(a, b rangeRead) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.off, b.off), cmp.Compare(a.n, b.n))
	}
	var want []rangeRead
	for _, rs := range reads {
		for _, r := range rs {
			want = append(want, rangeRead{name: r.name, off: r.off, n: r.n})
		}
	}
	slices.SortFunc(log.reads, key)
	slices.SortFunc(want, key)
	if !slices.Equal(log.reads, want) {
		t.Errorf("reads made %v, want %v", log.reads, want)
	}
	if res.Reads != len(want) || res.Writes != wantWrites || res.WriteBytes != wantBytes || res.Depth != 4 || res.Seconds <= 0 {
		t.Errorf("result %+v", res)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("the floor's files are left: %v", left)
	}
	if _, err := replayAtOnce(context.Background(), clock.Real{}, &log, reads, writes[:2], filepath.Join(dir, "floor"), 8<<20, 2, floorWay{4, 0}, blockDevice(dir)); err == nil {
		t.Error("replayAtOnce took the reads of 3 restores with the writes of 2")
	}
}

// TestRSSMeter checks that a window's peak counts memory touched in it and
// not the peak of an earlier window, while the overall peak keeps both.
func TestRSSMeter(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5\n"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS here: %v", err)
	}
	var m rssMeter
	m.start()
	base := m.peak()
	const n = 64 << 20
	b, err := directio.Map(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	if p := m.peak(); p < base+n*3/4 {
		t.Errorf("peak %d MiB after touching %d MiB over %d MiB", p>>20, n>>20, base>>20)
	}
	if err := directio.Unmap(b); err != nil {
		t.Fatal(err)
	}
	m.start()
	if p := m.peak(); p > base+n/4 {
		t.Errorf("a new window's peak is %d MiB, the memory before it was %d MiB", p>>20, base>>20)
	}
	if p := m.overallPeak(); p < base+n*3/4 {
		t.Errorf("overall peak %d MiB", p>>20)
	}
}

// TestMachine reads the machine's counters around a spin of this process
// and a synced direct write of 8 MiB into the test's directory: the CPU
// share is within (0, 1], and the disk that holds the directory (when
// there is one: not on tmpfs) shows the bytes written and some busy time.
func TestMachine(t *testing.T) {
	dir := t.TempDir()
	disk := blockDevice(dir)
	a := readMachine(disk)
	t0 := time.Now()
	for time.Since(t0) < 50*time.Millisecond { // busy: some CPU to see
	}
	path := filepath.Join(dir, "w")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := directio.Open(path, os.O_WRONLY)
	if errors.Is(err, errors.ErrUnsupported) {
		f, err = os.OpenFile(path, os.O_WRONLY, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	buf := directio.Buffer(8 << 20)
	buf[0] = 1
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m := machineSince(a, readMachine(disk), time.Since(t0).Seconds(), disk)
	if !a.ok {
		t.Skip("no /proc/stat")
	}
	if m.CPUBusy <= 0 || m.CPUBusy > 1 {
		t.Errorf("CPU busy %.3f, want within (0, 1]", m.CPUBusy)
	}
	if disk == "" {
		t.Logf("%s is on no block device: disk figures not checked", dir)
		return
	}
	if m.Disk != disk || m.DiskWriteBytes < 8<<20 || m.DiskBusy <= 0 {
		t.Errorf("disk %s: %+v; want at least 8 MiB written and some busy time", disk, m)
	}
	t.Log(m)
}

// TestRSSTarget: the peak RSS target is judged for the default run and for
// a 64 GiB disk holding 8 GiB of data (1.3 times as much), and only there.
func TestRSSTarget(t *testing.T) {
	for _, tc := range []struct {
		size, zeros, peak int64
		status            string
		want              string
	}{
		{DefaultSize, DefaultSize / 2, 250 << 20, "PASS", "≤ 256 MiB"},
		{DefaultSize, DefaultSize / 2, 300 << 20, "MISS", "≤ 256 MiB"},
		{64 << 30, 56 << 30, 300 << 20, "PASS", "≤ 332 MiB"},
		{64 << 30, 56 << 30, 340 << 20, "MISS", "≤ 332 MiB"},
		{64 << 30, 32 << 30, 100 << 20, "n/a", "-"},
		{DefaultSize, DefaultSize / 4, 100 << 20, "n/a", "-"},
	} {
		res := &Result{SizeBytes: tc.size, PeakRSSBytes: tc.peak}
		res.Image.ZeroBytes = tc.zeros
		if got := rssTarget(res); got.Status != tc.status || got.Want != tc.want {
			t.Errorf("%d MiB disk, %d MiB zeros, peak %d MiB: %s %s, want %s %s", tc.size>>20, tc.zeros>>20, tc.peak>>20, got.Want, got.Status, tc.want, tc.status)
		}
	}
}
