package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the machine as a whole did during a step, beside what Coffer did:
// on a shared machine a step can be slow because other processes hold the
// cores or the disk, and these figures tell which resource was saturated
// (docs/design.md, "Whole-system benchmark").

// Machine is the machine's use of its resources during a step.
type Machine struct {
	// CPUBusy is the share of all cores' time spent running any process
	// or the kernel (/proc/stat), this one included.
	CPUBusy float64 `json:"cpuBusy"`
	// DiskBusy is the share of the wall time during which the disk that
	// holds the bench directory had requests in flight (/proc/diskstats
	// io_ticks), and DiskInFlight the average number of requests in
	// flight (weighted time ÷ wall time). DiskReadBytes and
	// DiskWriteBytes are what it moved for every process.
	DiskBusy       float64 `json:"diskBusy"`
	DiskInFlight   float64 `json:"diskInFlight"`
	DiskReadBytes  int64   `json:"diskReadBytes"`
	DiskWriteBytes int64   `json:"diskWriteBytes"`
	// DiskDiscardBytes is what the disk was told to discard meanwhile: a
	// file system mounted with online discard trims a deleted file's
	// blocks when its deletion commits, which the disk then works on
	// beside the step's own I/O.
	DiskDiscardBytes int64  `json:"diskDiscardBytes,omitempty"`
	Disk             string `json:"disk,omitempty"` // its name in /proc/diskstats
}

// machineCounters are the raw counters a Machine is the difference of.
type machineCounters struct {
	cpuBusy, cpuAll                        int64 // jiffies
	rdSectors, wrSectors, ioMs, weightedMs int64
	discardSectors                         int64
	ok                                     bool
}

// blockDevice returns the name in /proc/diskstats of the block device
// holding path, or "" when it cannot tell (no /sys, a network or FUSE
// file system).
func blockDevice(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ""
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return ""
	}
	return filepath.Base(link)
}

// readMachine reads the counters; disk "" reads the CPU only.
func readMachine(disk string) machineCounters {
	var c machineCounters
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		f := strings.Fields(string(line))
		if len(f) > 8 && f[0] == "cpu" {
			for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
				v, _ := strconv.ParseInt(s, 10, 64)
				c.cpuAll += v
				if i != 3 && i != 4 {
					c.cpuBusy += v
				}
			}
			c.ok = true
		}
	}
	if disk == "" {
		return c
	}
	f, err := os.Open("/proc/diskstats")
	if err != nil {
		return c
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 14 || fs[2] != disk {
			continue
		}
		p := func(i int) int64 { v, _ := strconv.ParseInt(fs[i], 10, 64); return v }
		c.rdSectors, c.wrSectors, c.ioMs, c.weightedMs = p(5), p(9), p(12), p(13)
		if len(fs) >= 18 { // discards since Linux 4.18
			c.discardSectors = p(16)
		}
		break
	}
	return c
}

// machineSince returns what happened between a and b over wall seconds.
func machineSince(a, b machineCounters, wall float64, disk string) Machine {
	var m Machine
	if !a.ok || !b.ok || wall <= 0 {
		return m
	}
	if all := b.cpuAll - a.cpuAll; all > 0 {
		m.CPUBusy = float64(b.cpuBusy-a.cpuBusy) / float64(all)
	}
	if disk != "" {
		m.Disk = disk
		m.DiskBusy = float64(b.ioMs-a.ioMs) / 1000 / wall
		m.DiskInFlight = float64(b.weightedMs-a.weightedMs) / 1000 / wall
		m.DiskReadBytes = (b.rdSectors - a.rdSectors) * 512
		m.DiskWriteBytes = (b.wrSectors - a.wrSectors) * 512
		m.DiskDiscardBytes = (b.discardSectors - a.discardSectors) * 512
	}
	return m
}

// String is the figures for the report.
func (m Machine) String() string {
	s := fmt.Sprintf("machine: all cores %.0f%% busy", 100*m.CPUBusy)
	if m.Disk != "" {
		s += fmt.Sprintf(", disk %s busy %.0f%% (%.1f in flight; %s read, %s written", m.Disk, 100*m.DiskBusy, m.DiskInFlight,
			sizeStr(m.DiskReadBytes), sizeStr(m.DiskWriteBytes))
		if m.DiskDiscardBytes > 0 {
			s += ", " + sizeStr(m.DiskDiscardBytes) + " discarded"
		}
		s += " by every process)"
	}
	return s
}
