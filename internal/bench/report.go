package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Target is one of the performance targets of issues 3 and 14, evaluated
// on a Result. They are information: a miss does not make Run fail.
type Target struct {
	ID     string  `json:"id"`
	What   string  `json:"what"`
	Want   string  `json:"want"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Status string  `json:"status"` // PASS, MISS, or n/a when not measured
}

// peakRSSWant is the peak RSS target of the default run (a 4 GiB disk
// holding 2 GiB of data); a 64 GiB disk holding 8 GiB may take 1.3 times
// as much (issue 14).
const peakRSSWant = 256 << 20

// rssTarget evaluates the peak RSS target of the two runs it is set for;
// other sizes are not judged.
func rssTarget(res *Result) Target {
	t := Target{ID: "peakRSS", Unit: "MiB", Status: "n/a"}
	var want int64
	switch data := res.SizeBytes - res.Image.ZeroBytes; {
	case res.SizeBytes == DefaultSize && data == DefaultSize/2:
		t.What, want = "peak RSS of the whole run (4 GiB disk, 2 GiB of data)", peakRSSWant
	case res.SizeBytes == 64<<30 && data == 8<<30:
		t.What, want = "peak RSS of the whole run (64 GiB sparse disk, 8 GiB of data: 1.3 × the 4 GiB run's)", peakRSSWant*13/10
	default:
		t.What, t.Want = "peak RSS of the whole run (judged for 4 GiB with 2 GiB of data, 64 GiB with 8 GiB)", "-"
		return t
	}
	t.Want = fmt.Sprintf("≤ %d MiB", want>>20)
	if res.PeakRSSBytes > 0 {
		t.Value, t.Status = mib(res.PeakRSSBytes), passMiss(res.PeakRSSBytes <= want)
	}
	return t
}

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// evaluate fills Ratios, Targets and AllRestoresMatch.
func (res *Result) evaluate() {
	c := &res.Coffer
	peers := []struct {
		name string
		p    *Peer
	}{{"Restic", res.Restic}, {"Borg", res.Borg}}
	set := func(k string, v float64) {
		if v > 0 {
			res.Ratios[k] = v
		}
	}
	for _, pp := range peers {
		p := pp.p
		if p == nil {
			continue
		}
		if p.Backup.Error == "" && p.Backup.Seconds > 0 {
			set("fullSnapshotSpeedupVs"+pp.name, ratio(p.Backup.Seconds, c.Full.Seconds))
			set("fullStoredVs"+pp.name, ratio(float64(c.Full.StoredBytes), float64(p.Backup.StoredBytes)))
		}
		if p.Backup2.Error == "" && p.Backup2.Seconds > 0 {
			set("incrementalSnapshotSpeedupVs"+pp.name, ratio(p.Backup2.Seconds, c.Incremental.Seconds))
			set("incrementalStoredVs"+pp.name, ratio(float64(c.Incremental.StoredBytes), float64(p.Backup2.StoredBytes)))
		}
		for _, x := range []struct {
			key    string
			p, cof Restore
		}{{"restore", p.Restore, c.Restore}, {"restoreCached", p.RestoreCached, c.RestoreCached}} {
			if x.p.Error != "" || x.p.Seconds <= 0 {
				continue
			}
			set(x.key+"SpeedupVs"+pp.name, ratio(x.p.Seconds, x.cof.Seconds))
			if x.p.FsyncSeconds > 0 {
				// Like for like: RestoreToFile fsyncs, the peers do not.
				set(x.key+"WithFsyncSpeedupVs"+pp.name, ratio(x.p.Seconds+x.p.FsyncSeconds, x.cof.Seconds))
			}
		}
	}
	if f := res.Floor; f != nil && f.Restore.Error == "" {
		// Like for like: the image read from the disk as the restore
		// reads its packs, and fsynced as RestoreToFile's output is.
		set("restoreVsFloor", ratio(c.Restore.Seconds, f.Restore.Seconds))
		if f.SyncedSeconds > 0 {
			set("restoreVsFloorWithFsync", ratio(c.Restore.Seconds, f.SyncedSeconds))
		}
		if q := f.Cached; q.Error == "" && q.Seconds > 0 {
			set("restoreVsFloorSourceCachedWithFsync", ratio(c.Restore.Seconds, q.Seconds+q.FsyncSeconds))
		}
	}

	if l := c.FullComputeLimit; l != nil {
		set("fullSnapshotVsComputeLimit", ratio(c.Full.Seconds, l.Seconds))
	}
	if f := c.RestoreIOFloor; f != nil {
		set("restoreVsIOFloor", ratio(c.Restore.Seconds, f.Seconds))
	}
	if m := c.Many; m != nil {
		set("manyDisksBackupVsOne", ratio(m.Backup.Seconds, c.Full.Seconds))
		// Against the one disk's restore of the same rounds when there
		// were rounds, else the full restores' figure.
		one := c.Restore
		if m.One != nil && m.One.Seconds > 0 {
			one = *m.One
		}
		set("manyDisksRestoreThroughputVsOne", ratio(m.Restore.MiBps, one.MiBps))
		if f := m.RestoreIOFloor; f != nil {
			set("manyDisksRestoreVsIOFloor", ratio(m.Restore.Seconds, f.Seconds))
			if one := c.RestoreIOFloor; one != nil {
				// What the many-disk repository's layout costs the disk.
				set("manyDisksRestoreIOFloorVsOne", ratio(f.Seconds, one.Seconds))
			}
		}
		if f := m.RestoreIOFloorAtOnce; f != nil {
			set("manyDisksRestoreVsIOFloorAtOnce", ratio(m.Restore.Seconds, f.Seconds))
			if one := c.RestoreIOFloor; one != nil {
				// The disk's throughput for the restores' I/O shaped as
				// they ran it, against the one disk's floor: the
				// ceiling of manyDisksRestoreThroughputVsOne.
				set("manyDisksIOFloorAtOnceThroughputVsOne", ratio(one.Seconds, f.Seconds))
			}
		}
	}

	atLeast := func(id, what, ratioKey string, want float64) Target {
		t := Target{ID: id, What: what, Want: fmt.Sprintf("≥ %g×", want), Unit: "×", Status: "n/a"}
		if v, ok := res.Ratios[ratioKey]; ok {
			t.Value, t.Status = v, passMiss(v >= want)
		}
		return t
	}
	atMost := func(id, what, ratioKey string, want float64) Target {
		t := Target{ID: id, What: what, Want: fmt.Sprintf("≤ %g×", want), Unit: "×", Status: "n/a"}
		if v, ok := res.Ratios[ratioKey]; ok {
			t.Value, t.Status = v, passMiss(v <= want)
		}
		return t
	}
	below := func(id, what string, v, want float64, measured bool) Target {
		t := Target{ID: id, What: what, Want: fmt.Sprintf("< %g ms", want), Unit: "ms", Status: "n/a"}
		if measured {
			t.Value, t.Status = v, passMiss(v < want)
		}
		return t
	}
	rss := rssTarget(res)
	res.Targets = []Target{
		atLeast("fullSnapshot", "full snapshot vs restic backup (restic s ÷ Coffer s)", "fullSnapshotSpeedupVsRestic", 4),
		atMost("fullSnapshotVsComputeLimit", "full snapshot vs its compute limit (Coffer s ÷ hash+compress s on all cores)", "fullSnapshotVsComputeLimit", 1.3),
		atLeast("incrementalSnapshot", "1%-change snapshot vs restic's 2nd backup", "incrementalSnapshotSpeedupVsRestic", 50),
		atMost("restoreVsIOFloor", "full restore vs its I/O floor (Coffer s ÷ the same reads and writes alone)", "restoreVsIOFloor", 1.25),
		atLeast("restoreVsRestic", "full restore vs restic restore + fsync (repositories read from disk)", "restoreWithFsyncSpeedupVsRestic", 3),
		atMost("restoreVsFloor", "full restore vs qemu-img convert + fsync, image read from disk (Coffer s ÷ qemu-img s)", "restoreVsFloorWithFsync", 1.1),
		atMost("manyDisksBackup", fmt.Sprintf("%d disks backed up at once vs the same data as one disk (s ÷ s)", manyDisks), "manyDisksBackupVsOne", 1.2),
		atLeast("manyDisksRestore", fmt.Sprintf("%d restores at once vs one: throughput together ÷ one's", manyRestores), "manyDisksRestoreThroughputVsOne", 1),
		below("instantFirstRead", "instant restore: first read after the restore starts", c.Instant.FirstReadMs, 50, c.Instant.FirstReadMs > 0),
		atMost("fullStored", "bytes stored, full (Coffer ÷ restic repository growth)", "fullStoredVsRestic", 1.10),
		atMost("incrementalStored", "bytes stored, 1% change (Coffer ÷ restic)", "incrementalStoredVsRestic", 1.10),
		below("writeP99", "p99 write latency during a snapshot", c.Latency.P99Ms, 5, c.Latency.Writes > 0),
		rss,
	}

	// With the backup steps only, no restore ran to differ.
	ok := res.BackupOnly || c.Restore.Match && c.Instant.Match && c.Instant.ReadsMatch && (c.RestoreCached.SHA256 == "" || c.RestoreCached.Match) &&
		(c.Many == nil || c.Many.Restore.SHA256 == "" || c.Many.Restore.Match)
	for _, pp := range peers {
		if p := pp.p; p != nil {
			for _, r := range []Restore{p.Restore, p.RestoreCached} {
				if r.SHA256 != "" && !r.Match {
					ok = false
				}
			}
		}
	}
	if f := res.Floor; f != nil && f.Restore.SHA256 != "" && !f.Restore.Match {
		ok = false
	}
	res.AllRestoresMatch = ok
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// WriteTable prints the result as a human-readable side-by-side table.
func WriteTable(w io.Writer, res Result) error {
	im := res.Image
	fmt.Fprintf(w, "Coffer bench: %s disk image: %s zeros (holes), %s system files (%d files, %d pass(es)), %s random; %d segments\n",
		sizeStr(res.SizeBytes), sizeStr(im.ZeroBytes), sizeStr(im.CompressibleBytes), im.CorpusFiles, im.CorpusPasses, sizeStr(im.RandomBytes), im.Segments)
	fmt.Fprintf(w, "change: %d scattered 64 KiB writes (%s); seed %d; %d cores, %d workers; block size %d KiB\n",
		im.ChangedBlocks, sizeStr(im.ChangedBytes), res.Seed, res.Cores, res.Workers, res.BlockSize>>10)
	fmt.Fprintf(w, "caches: %s\nload average: %s at start, %s at end; total %.0fs; dir %s\n\n", res.CacheState, res.LoadStart, res.LoadEnd, res.TotalSeconds, res.Dir)

	c := res.Coffer
	peer := func(p *Peer, f func(*Peer) string) string {
		if p == nil {
			return "-"
		}
		return f(p)
	}
	type row struct {
		metric string
		coffer string
		restic string
		borg   string
		qemu   string
		rr, br string // peer ÷ Coffer
	}
	secs := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	adv := func(peerV, cofferV float64) string {
		if r := ratio(peerV, cofferV); r > 0 {
			return fmt.Sprintf("%.1f×", r)
		}
		return "-"
	}
	mibs := func(n int64) string { return fmt.Sprintf("%.1f", mib(n)) }
	failed := func(b Backup, s string) string {
		if b.Error != "" {
			return "failed"
		}
		return s
	}
	var rows []row
	none := func(*Peer) string { return "" }
	add := func(metric, cv string, rv, bv func(*Peer) string, qv string, rr, br string) {
		rows = append(rows, row{metric, cv, peer(res.Restic, rv), peer(res.Borg, bv), qv, rr, br})
	}
	bsecs := func(sel func(*Peer) Backup) func(*Peer) string {
		return func(p *Peer) string { b := sel(p); return failed(b, secs(b.Seconds)) }
	}
	bmibps := func(sel func(*Peer) Backup) func(*Peer) string {
		return func(p *Peer) string { b := sel(p); return failed(b, fmt.Sprintf("%.0f", b.MiBps)) }
	}
	bstored := func(sel func(*Peer) Backup) func(*Peer) string {
		return func(p *Peer) string { b := sel(p); return failed(b, mibs(b.StoredBytes)) }
	}
	brss := func(sel func(*Peer) Backup) func(*Peer) string {
		return func(p *Peer) string { b := sel(p); return failed(b, fmt.Sprintf("%.0f", mib(b.RSSBytes))) }
	}
	advPeer := func(p *Peer, sel func(*Peer) float64, cv float64) string {
		if p == nil {
			return "-"
		}
		return adv(sel(p), cv)
	}
	b1 := func(p *Peer) Backup { return p.Backup }
	b2 := func(p *Peer) Backup { return p.Backup2 }
	sec1 := func(p *Peer) float64 { return p.Backup.Seconds }
	sec2 := func(p *Peer) float64 { return p.Backup2.Seconds }
	st1 := func(p *Peer) float64 { return float64(p.Backup.StoredBytes) }
	st2 := func(p *Peer) float64 { return float64(p.Backup2.StoredBytes) }

	add("full backup: seconds", secs(c.Full.Seconds), bsecs(b1), bsecs(b1), "",
		advPeer(res.Restic, sec1, c.Full.Seconds), advPeer(res.Borg, sec1, c.Full.Seconds))
	if l := c.FullComputeLimit; l != nil {
		add(fmt.Sprintf("  its compute limit (hash+compress, %d cores): seconds", l.Workers), secs(l.Seconds), none, none, "", "", "")
	}
	add("full backup: MiB/s of disk", fmt.Sprintf("%.0f", c.Full.MiBps), bmibps(b1), bmibps(b1), "", "", "")
	add("full backup: repository growth MiB", mibs(c.Full.StoredBytes), bstored(b1), bstored(b1), "",
		advPeer(res.Restic, st1, float64(c.Full.StoredBytes)), advPeer(res.Borg, st1, float64(c.Full.StoredBytes)))
	add("1% change backup: seconds", secs(c.Incremental.Seconds), bsecs(b2), bsecs(b2), "",
		advPeer(res.Restic, sec2, c.Incremental.Seconds), advPeer(res.Borg, sec2, c.Incremental.Seconds))
	add("1% change backup: repository growth MiB", mibs(c.Incremental.StoredBytes), bstored(b2), bstored(b2), "",
		advPeer(res.Restic, st2, float64(c.Incremental.StoredBytes)), advPeer(res.Borg, st2, float64(c.Incremental.StoredBytes)))
	add("peak RSS MiB (Coffer: whole run; peers: 1st backup)", fmt.Sprintf("%.0f", mib(res.PeakRSSBytes)), brss(b1), brss(b1), "", "", "")
	restoreCell := func(r Restore) string {
		if r.Error != "" {
			return "failed"
		}
		if r.Seconds <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.Seconds)
	}
	matchCell := func(r Restore) string {
		switch {
		case r.SHA256 == "":
			return "-"
		case r.Match:
			return "match"
		default:
			return "MISMATCH"
		}
	}
	// qemu-img's two runs, image from disk and cached, sit in the rows
	// of the restores from disk and cached; the ratios are Coffer's
	// restore from disk against each.
	var qcold, qcached Restore
	qadv := "-"
	if f := res.Floor; f != nil {
		qcold, qcached = f.Restore, f.Cached
		qcold.FsyncSeconds = f.FsyncSeconds
		for _, x := range []struct {
			what string
			q    Restore
		}{{"image from disk", qcold}, {"image cached", qcached}} {
			if r := ratio(c.Restore.Seconds, x.q.Seconds+x.q.FsyncSeconds); x.q.Seconds > 0 && x.q.FsyncSeconds > 0 && r > 0 {
				if qadv == "-" {
					qadv = "Coffer ÷ qemu+fsync:"
				}
				qadv += fmt.Sprintf(" %s %.2fs: %.2f×;", x.what, x.q.Seconds+x.q.FsyncSeconds, r)
			}
		}
		qadv = strings.TrimSuffix(qadv, ";")
	}
	qcell := func(q Restore, cell func(Restore) string) string {
		if res.Floor == nil {
			return "-"
		}
		return cell(q)
	}
	// Coffer's restore returns once the image is durable: its seconds are
	// already "+ fsync".
	fsynced := func(r Restore) string {
		if r.Error != "" || r.FsyncSeconds <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.Seconds+r.FsyncSeconds)
	}
	for _, x := range []struct {
		state string
		sel   func(*Peer) Restore
		cof   Restore
		q     Restore // qemu-img's run with its source in the same state
	}{
		{"repository from disk", func(p *Peer) Restore { return p.Restore }, c.Restore, qcold},
		{"repository in page cache", func(p *Peer) Restore { return p.RestoreCached }, c.RestoreCached, qcached},
	} {
		sel, cof := x.sel, x.cof
		rsec := func(p *Peer) float64 { return sel(p).Seconds }
		rsecSynced := func(p *Peer) float64 { r := sel(p); return r.Seconds + r.FsyncSeconds }
		add("full restore, "+x.state+": seconds", restoreCell(cof), func(p *Peer) string { return restoreCell(sel(p)) },
			func(p *Peer) string { return restoreCell(sel(p)) }, qcell(x.q, restoreCell),
			advPeer(res.Restic, rsec, cof.Seconds), advPeer(res.Borg, rsec, cof.Seconds))
		add("  MiB/s of disk", fmt.Sprintf("%.0f", cof.MiBps), func(p *Peer) string { return fmt.Sprintf("%.0f", sel(p).MiBps) },
			func(p *Peer) string { return fmt.Sprintf("%.0f", sel(p).MiBps) }, qcell(x.q, func(q Restore) string { return fmt.Sprintf("%.0f", q.MiBps) }), "", "")
		add("  sha256 vs image", matchCell(cof), func(p *Peer) string { return matchCell(sel(p)) },
			func(p *Peer) string { return matchCell(sel(p)) }, qcell(x.q, matchCell), "", "")
		add("  + fsync of the image: seconds", restoreCell(cof), func(p *Peer) string { return fsynced(sel(p)) },
			func(p *Peer) string { return fsynced(sel(p)) }, qcell(x.q, fsynced),
			advPeer(res.Restic, rsecSynced, cof.Seconds), advPeer(res.Borg, rsecSynced, cof.Seconds))
	}
	rows = append(rows, row{metric: "full restore vs floor", qemu: qadv})
	if f := c.RestoreIOFloor; f != nil {
		add("full restore's I/O alone (its reads and writes, no computation): seconds", secs(f.Seconds), none, none, "", "", "")
	}
	if m := c.Many; m != nil {
		add(fmt.Sprintf("%d disks of %s backed up at once: seconds", m.Disks, sizeStr(m.DiskBytes)), secs(m.Backup.Seconds), none, none, "", "", "")
		add(fmt.Sprintf("  restored %d at a time, repository from disk: seconds", m.AtOnce), restoreCell(m.Restore), none, none, "", "", "")
		if o := m.One; o != nil {
			add("  the one disk's restore in the same rounds: seconds", restoreCell(*o), none, none, "", "", "")
		}
		add("  MiB/s of disk, all restores together", fmt.Sprintf("%.0f", m.Restore.MiBps), none, none, "", "", "")
		if f := m.RestoreIOFloor; f != nil {
			add("  their I/O alone (reads and writes, no computation): seconds", secs(f.Seconds), none, none, "", "", "")
		}
		if f := m.RestoreIOFloorAtOnce; f != nil {
			add(fmt.Sprintf("  their I/O alone as they ran it (%d at a time, each file synced): seconds", m.AtOnce), secs(f.Seconds), none, none, "", "", "")
		}
		add("  sha256 vs image", matchCell(m.Restore), none, none, "", "", "")
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tCoffer\trestic\tborg\tqemu-img\trestic÷Coffer\tborg÷Coffer")
	fmt.Fprintln(tw, "------\t------\t------\t----\t--------\t-------------\t-----------")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.metric, r.coffer, r.restic, r.borg, dash(r.qemu), dash(r.rr), dash(r.br))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	in, l := c.Instant, c.Latency
	if res.BackupOnly {
		fmt.Fprintln(w) // no instant restore, no write-latency step
	} else {
		writeInstant(w, in, l)
	}
	type step struct {
		n  string
		in *Internals
	}
	steps := []step{{"full snapshot", c.Full.Internals}, {"1% snapshot", c.Incremental.Internals}, {"full restore (repository from disk)", c.Restore.Internals}, {"full restore (repository cached)", c.RestoreCached.Internals}, {"instant restore until hydrated", in.Internals}}
	if m := c.Many; m != nil {
		steps = append(steps, step{fmt.Sprintf("%d disks' backups", m.Disks), m.Backup.Internals},
			step{fmt.Sprintf("%d disks' restores", m.Disks), m.Restore.Internals})
	}
	for _, x := range steps {
		if i := x.in; i != nil {
			fmt.Fprintf(w, "Coffer %s, where the time went: CPU %.2fs (%.0f%% of %d cores; %d context switches, %d of them preemptions); pack writes %d (%s, %.2fs summed), pack reads %d (%s, %.2fs); chunk lookups %d for %d chunks (%.2fs), chunk records added %d (%.2fs); peak memory %s; %s\n",
				x.n, i.CPUSeconds, 100*i.CPUUtilization, res.Cores, i.ContextSwitches, i.InvoluntaryContextSwitches, i.BlobPuts, sizeStr(i.BlobPutBytes), i.BlobPutSeconds, i.BlobGets, sizeStr(i.BlobGetBytes), i.BlobGetSeconds,
				i.IndexLookups, i.IndexLookupIDs, i.IndexLookupSeconds, i.IndexAdds, i.IndexAddSeconds, sizeStr(i.PeakRSSBytes), i.Machine)
		}
	}
	if l := c.FullComputeLimit; l != nil {
		fmt.Fprintf(w, "Coffer full snapshot's compute limit: %.2fs on %d cores (%.2f CPU-s) to hash and compress %d non-zero blocks into %s; %s\n",
			l.Seconds, l.Workers, l.CPUSeconds, l.Blocks, sizeStr(l.StoredBytes), l.Machine)
	}
	type namedFloor struct {
		n string
		f *IOFloor
	}
	floors := []namedFloor{{"full restore's", c.RestoreIOFloor}}
	if m := c.Many; m != nil {
		floors = append(floors, namedFloor{fmt.Sprintf("%d disks' restores'", m.Disks), m.RestoreIOFloor},
			namedFloor{fmt.Sprintf("%d disks' restores' (%d at a time, each into its own file)", m.Disks, m.AtOnce), m.RestoreIOFloorAtOnce})
	}
	for _, x := range floors {
		if f := x.f; f != nil {
			fmt.Fprintf(w, "Coffer %s I/O floor: %.2fs for %d reads (%s) and %d direct writes (%s) with %d in flight%s, then fsync; CPU %.2fs; %s%s\n",
				x.n, f.Seconds, f.Reads, sizeStr(f.ReadBytes), f.Writes, sizeStr(f.WriteBytes), f.Depth, syncedText(f.SyncEvery), f.CPUSeconds, f.Machine, f.runsString())
		}
	}
	if m := res.restoreMedians(); strings.Contains(m, ", ") {
		fmt.Fprintf(w, "full restores from disk (+ fsync), their median and every run, interleaved round by round: %s\n", m)
	}
	fmt.Fprintf(w, "Coffer repository: %s (%d chunks in %d packs); live volume %s on disk; peak RSS of this process %s\n",
		sizeStr(c.RepoBytes), c.Chunks, c.Packs, sizeStr(c.VolumeBytes), sizeStr(res.PeakRSSBytes))
	for _, p := range []struct {
		n string
		p *Peer
	}{{"restic", res.Restic}, {"borg", res.Borg}} {
		if p.p != nil {
			fmt.Fprintf(w, "%s: %s; %s", p.n, p.p.Version, p.p.Settings)
			if p.p.Error != "" {
				fmt.Fprintf(w, "; ERROR: %s", p.p.Error)
			}
			fmt.Fprintln(w)
		}
	}
	if res.Floor != nil {
		fmt.Fprintf(w, "floor: %s, convert -f raw -O raw (sparse-aware), + fsync; the image read from disk (evicted from the page cache, the target's run), then cached\n", res.Floor.Version)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}

	fmt.Fprintln(w, "\nPerformance targets (for information; the run does not fail on them):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tmeasured\tresult")
	fmt.Fprintln(tw, "------\t----\t--------\t------")
	for _, t := range res.Targets {
		v := "-"
		if t.Status != "n/a" {
			switch t.Unit {
			case "ms":
				v = fmt.Sprintf("%.2f ms", t.Value)
			case "MiB":
				v = fmt.Sprintf("%.0f MiB", t.Value)
			default:
				v = fmt.Sprintf("%.2f×", t.Value)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.What, t.Want, v, t.Status)
	}
	fmt.Fprintf(tw, "every restore reproduced the image\t\t\t%s\n", map[bool]string{true: "yes", false: "NO"}[res.AllRestoresMatch])
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func matchWord(ok bool) string {
	if ok {
		return "match"
	}
	return "MISMATCH"
}

// sizeStr formats a byte count with a binary unit.
func sizeStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ParseSize parses a size such as 512MiB, 4GiB, 4G, 1T or 65536. Every
// suffix (K, M, G, T, with or without "iB" or "B") is binary: 1 GB = 1 GiB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	l := strings.ToLower(t)
	shift := 0
	for _, u := range []struct {
		suf   string
		shift int
	}{{"kib", 10}, {"mib", 20}, {"gib", 30}, {"tib", 40}, {"kb", 10}, {"mb", 20}, {"gb", 30}, {"tb", 40},
		{"k", 10}, {"m", 20}, {"g", 30}, {"t", 40}, {"b", 0}} {
		if strings.HasSuffix(l, u.suf) {
			l, shift = strings.TrimSpace(strings.TrimSuffix(l, u.suf)), u.shift
			break
		}
	}
	v, err := strconv.ParseFloat(l, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit such as 512MiB or 4GiB", s)
	}
	n := v * float64(int64(1)<<shift)
	if n > 1<<50 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(n), nil
}

// writeInstant prints the instant restore's and the write-latency step's
// lines of WriteTable.
func writeInstant(w io.Writer, in Instant, l WriteLatency) {
	fmt.Fprintf(w, "\nCoffer instant restore: open %.1f ms, first read %.1f ms (from the call), random-block read %.1f ms, hydrated after %.2fs (%.0f MiB/s), sha256 %s\n",
		in.OpenMs, in.FirstReadMs, in.RandomReadMs, in.HydratedSeconds, in.HydrationMiBps, matchWord(in.Match && in.ReadsMatch))
	fmt.Fprintf(w, "Coffer reads every %.0f ms while hydrating: %d reads, p50 %.3f ms, p99 %.3f ms, max %.3f ms, %d differed from the image\n",
		l.IntervalMs, in.HydrationReads, in.HydrationReadP50Ms, in.HydrationReadP99Ms, in.HydrationReadMaxMs, in.HydrationReadsBad)
	fmt.Fprintf(w, "Coffer writes every %.0f ms during a snapshot of %s dirty (%.2fs, %d blocks copied before write): %d writes, p50 %.3f ms, p99 %.3f ms, max %.3f ms; alone: p50 %.3f, p99 %.3f, max %.3f ms\n",
		l.IntervalMs, sizeStr(l.DirtyBytes), l.SnapshotSeconds, l.CBWBlocks, l.Writes, l.P50Ms, l.P99Ms, l.MaxMs, l.BaselineP50Ms, l.BaselineP99Ms, l.BaselineMaxMs)
}
