package blockdev

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"coffer/internal/chunk"
	"coffer/internal/store/memstore"
)

type write struct {
	off  int64
	data []byte
}

// genWrites returns a deterministic list of writes for a volume of size.
func genWrites(seed uint64, n int, size, bs int64) []write {
	rng := rand.New(rand.NewPCG(seed, seed))
	out := make([]write, n)
	for i := range out {
		l := 1 + rng.Int64N(3*bs)
		off := rng.Int64N(size)
		l = min(l, size-off)
		p := make([]byte, l)
		fillRandom(rng, p)
		out[i] = write{off, p}
	}
	return out
}

func applyWrites(t testing.TB, v *Volume, ws []write, model []byte) {
	t.Helper()
	for _, w := range ws {
		if v != nil {
			if _, err := v.WriteAt(w.data, w.off); err != nil {
				t.Fatalf("WriteAt: %v", err)
			}
		}
		if model != nil {
			copy(model[w.off:], w.data)
		}
	}
}

func TestUncleanShutdown(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 4 << 20
	v, _ := env.e.CreateVolume(ctx, "vol", size)
	model := make([]byte, size)
	applyWrites(t, v, genWrites(1, 300, size, 4096), model)
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	img1 := slices.Clone(model)
	applyWrites(t, v, genWrites(2, 50, size, 4096), model)
	// Trim data blocks: they become holes, which crash recovery cannot
	// see from the file; the write-ahead bitmap must cover them.
	if err := v.Trim(ctx, 0, 512<<10); err != nil {
		t.Fatal(err)
	}
	clear(model[:512<<10])
	v.crash() // no sync of state, no clean marker

	v, err := env.e.OpenVolume(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("reopened volume differs at %d", firstDiff(got, model))
	}
	for b := int64(0); b < 128; b++ {
		if !v.dirty.has(b) {
			t.Fatalf("trimmed block %d not dirty after unclean stop", b)
		}
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s1", img1)
	checkSnapshot(t, env, "s2", model)
	// A clean close/reopen keeps the (empty) dirty set instead of rescanning.
	applyWrites(t, v, genWrites(3, 5, size, 4096), model)
	n := v.DirtyBlocks()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, _ = env.e.OpenVolume(ctx, "vol")
	if got := v.DirtyBlocks(); got != n {
		t.Fatalf("clean reopen: %d dirty blocks, want %d", got, n)
	}
}

// TestZeroHolesWithoutSave: zeroing blocks that have been holes since the
// volume's base (nbdcopy zeroes every hole of its source on a new disk)
// writes no state file; zeroing a range with a block of data does, before
// the punch. After a crash the volume holds every change, the punched data
// block among the dirty blocks, and the next snapshot equals the volume.
func TestZeroHolesWithoutSave(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1 << 20 // 256 blocks
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	data := bytes.Repeat([]byte{0xA5}, 8*bs)
	if _, err := v.WriteAt(data, 16*bs); err != nil { // blocks 16-23
		t.Fatal(err)
	}
	copy(model[16*bs:], data)
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	img1 := slices.Clone(model)
	if _, err := v.WriteAt(data[:2*bs], 100*bs); err != nil { // blocks 100-101, dirty in memory only
		t.Fatal(err)
	}
	copy(model[100*bs:], data[:2*bs])
	statePath := filepath.Join(env.e.volDir("vol"), "state")
	stateFile := func() []byte { // a save writes the dirty bits set since
		t.Helper()
		b, err := os.ReadFile(statePath)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := stateFile()
	// Holes since the base, whole and partial blocks: no save.
	if err := v.WriteZeroes(ctx, 32*bs, 64*bs); err != nil {
		t.Fatal(err)
	}
	if err := v.Trim(ctx, 200*bs+100, 10*bs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, stateFile()) {
		t.Error("zeroing holes wrote the state file")
	}
	// Blocks of data among holes (20-21, written before s1; 100-101
	// since): in the state file before the punch.
	isData := func(b int64) bool { return b >= 16 && b < 24 || b >= 100 && b < 102 }
	punched := 0
	env.e.hooks.punch = func(_ string, off, n int64) {
		sb, err := os.ReadFile(statePath)
		st, derr := decodeState(sb)
		if err != nil || derr != nil {
			t.Fatal(err, derr)
		}
		for b := off / bs; b < (off+n+bs-1)/bs; b++ {
			if isData(b) && !st.Dirty.has(b) {
				t.Errorf("punch [%d, %d): the state file did not hold data block %d as dirty", off, off+n, b)
			}
		}
		punched++
	}
	if err := v.WriteZeroes(ctx, 20*bs, 2*bs); err != nil {
		t.Fatal(err)
	}
	if err := v.Trim(ctx, 96*bs, 6*bs); err != nil {
		t.Fatal(err)
	}
	env.e.hooks.punch = nil
	clear(model[20*bs : 22*bs])
	clear(model[96*bs : 102*bs])
	if punched != 2 {
		t.Errorf("%d punches, want 2", punched)
	}
	if bytes.Equal(before, stateFile()) {
		t.Error("zeroing data did not write the state file")
	}
	v.crash()

	v, err = env.e.OpenVolume(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after the crash")
	for _, b := range []int64{20, 21, 100, 101} {
		if !v.dirty.has(b) {
			t.Errorf("zeroed data block %d not dirty after the crash", b)
		}
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s1", img1)
	checkSnapshot(t, env, "s2", model)
}

// TestCrashDuringSnapshot kills a child process (SIGKILL) in the middle of
// a snapshot while writes are being copied aside, then reopens its engine:
// the committed snapshot is intact, the killed one is absent, the volume
// holds every write, and the next snapshot is correct.
func TestCrashDuringSnapshot(t *testing.T) {
	const size = 4 << 20
	if dir := os.Getenv("BLOCKDEV_CRASH_CHILD"); dir != "" {
		crashChild(t, dir, size)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDuringSnapshot$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BLOCKDEV_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "SNAPSHOTTING" {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(lines) == 0 || lines[len(lines)-1] != "SNAPSHOTTING" {
		t.Fatalf("child did not reach the snapshot: %q", lines)
	}

	ctx := context.Background()
	env := &testEnv{dir: filepath.Join(dir, "engine")}
	e, err := Open(ctx, env.dir, newDirChunks(filepath.Join(dir, "chunks")), newDirBlobs(filepath.Join(dir, "blobs")), Options{Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	env.e = e
	defer e.Close()
	list, err := e.ListSnapshots(ctx, "vol")
	if err != nil || len(list) != 1 || list[0].ID != "s1" {
		t.Fatalf("after crash: snapshots %+v, %v; want only s1", list, err)
	}
	modelA := make([]byte, size)
	applyWrites(t, nil, genWrites(10, 300, size, 4096), modelA)
	model := slices.Clone(modelA)
	applyWrites(t, nil, genWrites(11, 100, size, 4096), model)
	clear(model[:256<<10])
	applyWrites(t, nil, genWrites(12, 100, size, 4096), model)

	checkSnapshot(t, env, "s1", modelA)
	v, err := e.OpenVolume(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume after crash differs at %d", firstDiff(got, model))
	}
	si, err := e.Snapshot(ctx, "vol", "s3")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovery snapshot read %d blocks (%d allocated or dirty)", si.Stats.BlocksRead, si.Stats.BlocksRead)
	checkSnapshot(t, env, "s3", model)
	if d, err := e.Diff(ctx, "s1", "s3"); err != nil || len(d) == 0 {
		t.Fatalf("Diff(s1, s3) = %v, %v", d, err)
	}
}

func crashChild(t *testing.T, dir string, size int64) {
	ctx := context.Background()
	e, err := Open(ctx, filepath.Join(dir, "engine"), newDirChunks(filepath.Join(dir, "chunks")), newDirBlobs(filepath.Join(dir, "blobs")), Options{BlockSize: 4 << 10, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	applyWrites(t, v, genWrites(10, 300, size, 4096), nil)
	if _, err := e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	applyWrites(t, v, genWrites(11, 100, size, 4096), nil)
	if err := v.Trim(ctx, 0, 256<<10); err != nil {
		t.Fatal(err)
	}
	// During the next snapshot: more writes right after the swap (copied
	// aside), then the snapshot stalls after 20 blocks and is killed.
	e.hooks.afterSwap = func(string) { applyWrites(t, v, genWrites(12, 100, size, 4096), nil) }
	var once sync.Once
	e.hooks.blockStored = func(_ string, n int64) {
		if n >= 20 {
			once.Do(func() { fmt.Println("SNAPSHOTTING") })
			select {}
		}
	}
	_, err = e.Snapshot(ctx, "vol", "s2")
	t.Fatalf("snapshot returned %v; the parent should have killed this process", err)
}

// TestInstantRestore restores a snapshot into a new volume and uses it while
// the hydrator is held: reads are served from the chunk store, partial
// writes and trims are merged; the volume survives a close, a crash and a
// reopen mid-hydration; after hydration the file equals the snapshot plus
// the writes, and the restored volume's first snapshot is incremental.
func TestInstantRestore(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 8 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	applyWrites(t, src, genWrites(20, 400, size, 4096), model)
	if _, err := env.e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	snapImg := slices.Clone(model)

	release := make(chan struct{})
	env.e.hooks.hydrator = func(ctx context.Context, vol string) {
		if vol != "dst" {
			return
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	v, err := env.e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	st := v.Hydration()
	if !st.Hydrating || st.TotalBytes != size || st.DoneBytes >= size {
		t.Fatalf("hydration status at start: %+v", st)
	}
	// Read only the first half, so the second half stays unhydrated.
	half := func(what string, want []byte) {
		t.Helper()
		got := make([]byte, size/2)
		if _, err := v.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[:size/2]) {
			t.Fatalf("%s: differs at %d", what, firstDiff(got, want[:size/2]))
		}
	}
	half("reads before hydration", snapImg)
	applyWrites(t, v, genWrites(21, 100, size, 4096), model)
	if err := v.Trim(ctx, 1<<20+100, 300<<10); err != nil {
		t.Fatal(err)
	}
	clear(model[1<<20+100 : 1<<20+100+300<<10])
	half("reads after writes during hydration", model)
	// Close mid-hydration and reopen: hydration resumes.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, err = env.e.OpenVolume(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	if !v.Hydration().Hydrating {
		t.Fatal("reopened volume is not hydrating")
	}
	applyWrites(t, v, genWrites(22, 50, size, 4096), model)
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// An unflushed whole-block write to an unhydrated block, then a crash:
	// the block's hydration was not recorded, so it reverts to the source
	// (a lost unflushed write) although it is allocated, hence dirty.
	lost := int64(-1)
	for b := int64(size/4096) - 1; b > size/4096/2; b-- {
		if !v.isHydrated(b) {
			lost = b
			break
		}
	}
	if lost < 0 {
		t.Fatal("no unhydrated block left")
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte{0x5A}, 4096), lost*4096); err != nil {
		t.Fatal(err)
	}
	v.crash()
	v, err = env.e.OpenVolume(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	if !v.dirty.has(lost) || v.isHydrated(lost) {
		t.Fatalf("block %d after crash: dirty %v hydrated %v; want dirty, not hydrated", lost, v.dirty.has(lost), v.isHydrated(lost))
	}
	// A snapshot mid-hydration reads such blocks from the source.
	if _, err := env.e.Snapshot(ctx, "dst", "mid"); err != nil {
		t.Fatal(err)
	}
	if st := v.Hydration(); !st.Hydrating {
		t.Fatal("hydration ended while the hydrator was held")
	}
	checkSnapshot(t, env, "mid", model)
	wantImage(t, v, model, "after crash mid-hydration")
	// MarkLive must keep the hydration source even with its snapshot gone.
	if err := env.e.DeleteSnapshot(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	live := map[chunk.ID]bool{}
	if err := env.e.MarkLive(ctx, func(id chunk.ID) { live[id] = true }); err != nil {
		t.Fatal(err)
	}
	env.chunks.mu.Lock()
	for id := range env.chunks.m {
		if !live[id] {
			delete(env.chunks.m, id)
		}
	}
	env.chunks.mu.Unlock()

	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if st := v.Hydration(); st.Hydrating || st.DoneBytes != size {
		t.Fatalf("hydration status at end: %+v", st)
	}
	fb, _ := os.ReadFile(filepath.Join(env.e.volDir("dst"), "data"))
	if !bytes.Equal(fb, model) {
		t.Fatalf("hydrated file differs at %d", firstDiff(fb, model))
	}
	b, _ := env.blobs.Get(ctx, "volumes/dst")
	var vr volumeRecord
	if err := json.Unmarshal(b, &vr); err != nil || !vr.HydrateFrom.IsZero() || vr.Base.IsZero() {
		t.Fatalf("volume record after hydration: %+v, %v", vr, err)
	}
	dirty := v.DirtyBlocks()
	si, err := env.e.Snapshot(ctx, "dst", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if si.Stats.BlocksRead != dirty || si.Parent != "mid" {
		t.Errorf("snapshot of restored volume read %d blocks (dirty %d), parent %q; want incremental to mid", si.Stats.BlocksRead, dirty, si.Parent)
	}
	checkSnapshot(t, env, "d1", model)
	if _, err := env.e.RestoreVolume(ctx, "nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("restore of missing snapshot: %v", err)
	}
}

// powerCut simulates a power loss for the volumes of an engine: it keeps
// the image of each volume's data file as of its last syncData, and cut
// stops the volume without a sync (crash) and puts that image back in
// place of the file. Writes after the last sync are lost, holes included;
// the state file, written durably (writeFileAtomic), stays as it is.
type powerCut struct {
	env    *testEnv
	mu     sync.Mutex
	synced map[string][]byte
}

func newPowerCut(env *testEnv) *powerCut {
	pc := &powerCut{env: env, synced: map[string][]byte{}}
	env.e.hooks.dataSynced = func(vol string) {
		b, err := os.ReadFile(filepath.Join(env.e.volDir(vol), "data"))
		if err != nil {
			panic(err)
		}
		pc.mu.Lock()
		pc.synced[vol] = b
		pc.mu.Unlock()
	}
	return pc
}

// cut crashes v and replaces its data file with the last synced image (a
// file of v's size reading as zeros if it was never synced after its
// creation), written sparsely so that its holes stay holes.
func (pc *powerCut) cut(t *testing.T, v *Volume) {
	t.Helper()
	size := v.Size()
	v.crash()
	pc.mu.Lock()
	img, ok := pc.synced[v.id]
	pc.mu.Unlock()
	if !ok {
		img = make([]byte, size)
	}
	path := filepath.Join(pc.env.e.volDir(v.id), "data")
	f, err := os.OpenFile(path+".cut", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(img))); err != nil {
		t.Fatal(err)
	}
	const page = 4 << 10
	for off := 0; off < len(img); off += page {
		if p := img[off:min(off+page, len(img))]; !isZero(p) {
			if _, err := f.WriteAt(p, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Rename(path+".cut", path); err != nil {
		t.Fatal(err)
	}
}

// restoredForPowerCut restores a snapshot of a 4 MiB volume of random
// data (64 KiB blocks) into "dst", whose hydrator copies nothing, under a
// powerCut; it returns the snapshot's image.
func restoredForPowerCut(t *testing.T) (*testEnv, *powerCut, *Volume, []byte) {
	t.Helper()
	ctx := context.Background()
	const bs, size = 64 << 10, 4 << 20
	env := newTestEnv(t, Options{BlockSize: bs})
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	old := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(old)
	if _, err := src.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	env.e.hooks.hydrator = func(ctx context.Context, vol string) {
		if vol == "dst" {
			<-ctx.Done() // the hydrator copies nothing: every block waits
		}
	}
	pc := newPowerCut(env)
	v, err := env.e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	return env, pc, v, old
}

// checkOldOrNew fails for each block of got that is none of the images
// in want (block by block).
func checkOldOrNew(t *testing.T, got []byte, bs int, want ...[]byte) {
	t.Helper()
	for b := 0; b < len(got)/bs; b++ {
		g, ok := got[b*bs:(b+1)*bs], false
		for _, w := range want {
			ok = ok || bytes.Equal(g, w[b*bs:(b+1)*bs])
		}
		if !ok {
			t.Errorf("block %d after the power loss is neither its old nor its new contents (differs from the newest at %d)", b, firstDiff(g, want[len(want)-1][b*bs:(b+1)*bs]))
		}
	}
}

// TestPowerLossDuringHydration: what the state file says of a hydrating
// volume's file — the units written into a block not hydrated yet, the
// blocks filled in — is true of the data file after a power loss, even
// when the state file is saved by something other than a Flush (here a
// trim, which saves the dirty bits of its blocks before punching them).
// Every block then reads as its old contents (the snapshot) or its new
// ones, never as zeros the file had before the data it was promised.
func TestPowerLossDuringHydration(t *testing.T) {
	ctx := context.Background()
	const bs = 64 << 10
	env, pc, v, old := restoredForPowerCut(t)
	cur := slices.Clone(old)
	// Block 3: 1 KiB into one of its units (its written-unit mask).
	unit := bytes.Repeat([]byte{0x5A}, bs/writeUnits)
	if _, err := v.WriteAt(unit, 3*bs+2*int64(len(unit))); err != nil {
		t.Fatal(err)
	}
	copy(cur[3*bs+2*len(unit):], unit)
	// Block 5: read, hence filled in from the snapshot.
	if _, err := v.ReadAt(make([]byte, 512), 5*bs); err != nil {
		t.Fatal(err)
	}
	if !v.isHydrated(5) || v.writtenUnits(3) == 0 {
		t.Fatalf("block 5 hydrated %v, block 3 written units %#x; want both", v.isHydrated(5), v.writtenUnits(3))
	}
	// Block 9 trimmed: the state file is saved.
	if err := v.Trim(ctx, 9*bs, bs); err != nil {
		t.Fatal(err)
	}
	trimmed := slices.Clone(cur)
	clear(trimmed[9*bs : 10*bs])

	pc.cut(t, v)
	v, err := env.e.OpenVolume(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	checkOldOrNew(t, image(t, v), bs, old, trimmed, cur)
}

// TestPowerLossFlushRace: a Flush records the units and blocks written
// before its sync, not those that land between its sync and its state
// save (here a unit written from the sync hook), which are not durable.
// The code before took the state after the sync.
func TestPowerLossFlushRace(t *testing.T) {
	ctx := context.Background()
	const bs = 64 << 10
	env, pc, v, old := restoredForPowerCut(t)
	cur := slices.Clone(old)
	unit := bytes.Repeat([]byte{0x5A}, bs/writeUnits)
	if _, err := v.WriteAt(unit, 3*bs); err != nil { // hydDirty: Flush saves the state
		t.Fatal(err)
	}
	copy(cur[3*bs:], unit)
	synced := env.e.hooks.dataSynced
	once := false
	env.e.hooks.dataSynced = func(vol string) {
		synced(vol)
		if !once {
			once = true
			if _, err := v.WriteAt(unit, 7*bs+int64(len(unit))); err != nil {
				t.Error(err)
			}
		}
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !once || v.writtenUnits(7) == 0 {
		t.Fatalf("no unit written into block 7 during the Flush")
	}
	late := slices.Clone(cur)
	copy(late[7*bs+len(unit):], unit)

	pc.cut(t, v)
	v, err := env.e.OpenVolume(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	got := image(t, v)
	if !bytes.Equal(got[3*bs:4*bs], cur[3*bs:4*bs]) {
		t.Errorf("block 3, written and flushed, lost after the power loss")
	}
	checkOldOrNew(t, got, bs, cur, late)
}
