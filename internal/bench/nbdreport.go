package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Targets of issue 14 for the NBD data path.
const (
	targetNBDRatio    = 0.9 // every figure ≥ 0.9× nbdkit's
	targetNBDLatency  = 1.2 // QD1 mean latency ≤ 1.2× nbdkit's
	targetNBDScaling  = 0.9 // 1→4 connections: Coffer's gain ≥ 0.9× nbdkit's
	targetNBDLoadIOPS = 0.7 // during a snapshot or hydration ≥ 0.7× idle IOPS
)

// evaluate fills Targets.
func (res *NBDResult) evaluate() {
	res.Targets = nil
	add := func(id, what, want string, v float64, ok bool) {
		t := Target{ID: id, What: what, Want: want, Value: v, Unit: "×", Status: "n/a"}
		if v > 0 {
			t.Status = passMiss(ok)
		}
		res.Targets = append(res.Targets, t)
	}
	atLeast := fmt.Sprintf("≥ %g×", targetNBDRatio)
	for _, c := range res.Copies {
		add("nbdcopy-"+c.Direction, fmt.Sprintf("nbdcopy %s, speed vs nbdkit (nbdkit s ÷ Coffer s)", c.Direction), atLeast, c.Ratio, c.Ratio >= targetNBDRatio)
	}
	for _, row := range res.Matrix {
		id := fmt.Sprintf("%s-%dc", row.Workload, row.Conns)
		add(id, fmt.Sprintf("%s on %d connection(s), IOPS vs nbdkit", row.Workload, row.Conns), atLeast, row.Ratio, row.Ratio >= targetNBDRatio)
		if w, _ := workload(row.Workload); w.IODepth == 1 {
			add(id+"-latency", fmt.Sprintf("%s on %d connection(s), mean latency vs nbdkit", row.Workload, row.Conns),
				fmt.Sprintf("≤ %g×", targetNBDLatency), row.LatencyRatio, row.LatencyRatio <= targetNBDLatency)
		}
	}
	for _, s := range res.Scaling {
		add(s.Workload+"-scaling", s.Workload+": gain from 1 to 4 connections vs nbdkit's gain", fmt.Sprintf("≥ %g×", targetNBDScaling), s.Ratio, s.Ratio >= targetNBDScaling)
	}
	for _, l := range res.UnderLoad {
		add(l.Workload+"-during-"+l.During, fmt.Sprintf("%s, first %gs with a %s, IOPS vs without (median of runs)", l.Workload, res.RuntimeSeconds, l.During),
			fmt.Sprintf("≥ %g×", targetNBDLoadIOPS), l.MedianWindowRatio, l.MedianWindowRatio >= targetNBDLoadIOPS)
	}
	for _, l := range res.UnderLoad {
		add(l.Workload+"-during-"+l.During+"-old", fmt.Sprintf("old measure: %s during %s, IOPS vs idle (median of runs)", l.Workload, l.During),
			fmt.Sprintf("≥ %g×", targetNBDLoadIOPS), l.MedianRatio, l.MedianRatio >= targetNBDLoadIOPS)
	}
}

// WriteNBDTable prints an NBDResult as tables.
func WriteNBDTable(w io.Writer, res NBDResult) error {
	fmt.Fprintf(w, "Coffer bench nbd: %s disk (%s of data), sha256 %.16s…; %s; %d cores, %d engine workers; seed %d\n",
		sizeStr(res.SizeBytes), sizeStr(res.DataBytes), res.ImageSHA256, res.Transport, res.Cores, res.Workers, res.Seed)
	var tools []string
	for _, k := range []string{"fio", "nbdkit", "nbdcopy"} {
		if v := res.Tools[k]; v != "" {
			tools = append(tools, v)
		}
	}
	fmt.Fprintf(w, "%s; fio runs of %.0fs after %.0fs ramp, each figure %d times per server, interleaved; load average %s at start, %s at end; total %.0fs\n\n",
		strings.Join(tools, ", "), res.RuntimeSeconds, res.RampSeconds, res.Repeat, res.LoadStart, res.LoadEnd, res.TotalSeconds)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(res.Copies) > 0 {
		fmt.Fprintln(tw, "nbdcopy, whole disk\tCoffer s (runs)\tnbdkit s (runs)\tspeed Coffer÷nbdkit")
		for _, c := range res.Copies {
			fmt.Fprintf(tw, "%s: %s\t%.2f (%s)\t%.2f (%s)\t%.2f×\n", c.Direction, c.Command, c.CofferMedian, floats(c.CofferSeconds, "%.2f"),
				c.NbdkitMedian, floats(c.NbdkitSeconds, "%.2f"), c.Ratio)
		}
		fmt.Fprintln(tw)
	}
	if len(res.Matrix) > 0 {
		fmt.Fprintln(tw, "fio nbd engine\tconns\tCoffer IOPS (runs)\tnbdkit IOPS (runs)\tIOPS ratio\tCoffer MiB/s\tnbdkit MiB/s\tmean lat µs Coffer / nbdkit\tratio\tp99 µs Coffer / nbdkit\tCPU µs/req Coffer / nbdkit\tratio")
		for _, row := range res.Matrix {
			iops := func(r []FioFigures) string {
				v := make([]float64, len(r))
				for i, f := range r {
					v[i] = f.IOPS
				}
				return floats(v, "%.0f")
			}
			c, k := row.CofferMedian, row.NbdkitMedian
			fmt.Fprintf(tw, "%s\t%d\t%.0f (%s)\t%.0f (%s)\t%.2f×\t%.0f\t%.0f\t%.1f / %.1f\t%.2f×\t%.0f / %.0f\t%.1f / %.1f\t%.2f×\n",
				row.Workload, row.Conns, c.IOPS, iops(row.Coffer), k.IOPS, iops(row.Nbdkit), row.Ratio, c.MiBps, k.MiBps,
				c.LatMeanUs, k.LatMeanUs, row.LatencyRatio, c.LatP99Us, k.LatP99Us, c.ServerCPUUs, k.ServerCPUUs, row.CPURatio)
		}
		fmt.Fprintln(tw)
	}
	if len(res.Scaling) > 0 {
		fmt.Fprintln(tw, "1 → 4 connections\tCoffer gain\tnbdkit gain\tratio")
		for _, s := range res.Scaling {
			fmt.Fprintf(tw, "%s\t%.2f×\t%.2f×\t%.2f×\n", s.Workload, s.Coffer, s.Nbdkit, s.Ratio)
		}
		fmt.Fprintln(tw)
	}
	if len(res.UnderLoad) > 0 {
		fmt.Fprintf(tw, "Coffer under load (1 conn), first %gs\twith a\tIOPS (p99 ms)\twithout: IOPS (p99 ms)\tbefore / after (spread)\tratio\tCPU-µs/request with / without (ratio)\tthe work in the window\n", res.RuntimeSeconds)
		for _, l := range res.UnderLoad {
			for i, x := range l.Runs {
				label := l.Workload
				if i > 0 {
					label = ""
				}
				f := x.Window
				fmt.Fprintf(tw, "%s\t%s\t%.0f (%.2f)\t%.0f (%.2f)\t%s\t%.2f×\t%.1f / %.1f (%.2f×)\t%s\n", label, l.During, f.Busy.IOPS, f.Busy.P99Ms, f.Ref.IOPS, f.Ref.P99Ms, f.refsText(), f.Ratio,
					f.Busy.CPUUsPerRequest, f.Ref.CPUUsPerRequest, f.CPURatio, f.progressText(l.During))
			}
			fmt.Fprintf(tw, "\t%s, median\t\t\t\t%.2f×\t\t\n", l.During, l.MedianWindowRatio)
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "old measure (one session more)\tduring\tbusy IOPS (p99 ms)\tidle IOPS (p99 ms)\tratio\tCPU-µs/request busy / idle\tdetail\n")
		for _, l := range res.UnderLoad {
			for i, x := range l.Runs {
				label := l.Workload
				if i > 0 {
					label = ""
				}
				fmt.Fprintf(tw, "%s\t%s\t%.0f (%.2f)\t%.0f (%.2f)\t%.2f×\t%.1f / %.1f\t%s\n", label, l.During, x.Busy.IOPS, x.Busy.P99Ms, x.Idle.IOPS, x.Idle.P99Ms, x.Ratio,
					x.Busy.CPUUsPerRequest, x.Idle.CPUUsPerRequest, x.Detail)
			}
			fmt.Fprintf(tw, "\t%s, median\t\t\t%.2f×\t\t\n", l.During, l.MedianRatio)
		}
		fmt.Fprintf(tw, "alone (no client)\tsnapshot %.2fs, hydration %.2fs\t\t\t\t\t\n", res.SnapshotAloneSeconds, res.HydrationAloneSeconds)
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range res.Checks {
		fmt.Fprintf(w, "check: %s: %s\n", c.What, matchWord(c.OK))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w, "\nTargets (issue 14; information only):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tmeasured\tresult")
	for _, t := range res.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%.2f×\t%s\n", t.What, t.Want, t.Value, t.Status)
	}
	return tw.Flush()
}

func floats(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}
