package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// fioJob is one run of fio's nbd engine against one export.
type fioJob struct {
	URI     string
	RW      string // randread, randwrite, read, write
	BS      int64  // bytes per request
	IODepth int    // requests in flight per connection
	Conns   int    // fio jobs, one NBD connection each
	Size    int64  // export size: random jobs cover all of it, sequential jobs a 1/Conns share each
	Runtime time.Duration
	Ramp    time.Duration
	Seed    uint64
	// LatLog, when set, logs every request's latency to files with this
	// prefix (fio's write_lat_log), for windows cut after the run.
	LatLog string
	// Stop, when set, ends the run early: fio is interrupted (SIGINT) when
	// Stop closes, and reports what it did until then.
	Stop <-chan struct{}
}

// FioFigures are one fio run's figures, summed over its connections.
type FioFigures struct {
	IOPS      float64 `json:"iops"`
	MiBps     float64 `json:"mibPerSecond"`
	LatMeanUs float64 `json:"latencyMeanUs"` // submission to completion, as the client sees it
	LatP50Us  float64 `json:"latencyP50Us"`
	LatP99Us  float64 `json:"latencyP99Us"`
	Requests  int64   `json:"requests"`
	Errors    int     `json:"errors,omitempty"`
	// ServerCPUUs is the CPU time the serving process used per request
	// (user and system, from /proc; the Coffer figure includes the bench
	// in the same process, idle meanwhile).
	ServerCPUUs float64 `json:"serverCpuUsPerRequest,omitempty"`
}

func (j fioJob) args(out string) []string {
	a := []string{
		"--name=nbd", "--ioengine=nbd", "--uri=" + j.URI,
		"--rw=" + j.RW, "--bs=" + strconv.FormatInt(j.BS, 10),
		"--iodepth=" + strconv.Itoa(j.IODepth), "--numjobs=" + strconv.Itoa(j.Conns), "--group_reporting",
		"--time_based", "--runtime=" + strconv.FormatFloat(j.Runtime.Seconds(), 'f', 3, 64) + "s",
		"--randseed=" + strconv.FormatUint(j.Seed, 10), "--norandommap",
		"--lat_percentiles=1", "--output-format=json", "--output=" + out,
	}
	if j.Ramp > 0 {
		a = append(a, "--ramp_time="+strconv.FormatFloat(j.Ramp.Seconds(), 'f', 3, 64)+"s")
	}
	if strings.HasPrefix(j.RW, "rand") {
		a = append(a, "--size="+strconv.FormatInt(j.Size, 10))
	} else {
		share := j.Size / int64(j.Conns) / j.BS * j.BS
		a = append(a, "--size="+strconv.FormatInt(share, 10), "--offset_increment="+strconv.FormatInt(share, 10))
	}
	if j.LatLog != "" {
		a = append(a, "--write_lat_log="+j.LatLog, "--log_avg_msec=0")
	}
	return a
}

// runFio runs j and returns its figures. out is the path of its JSON report.
func runFio(ctx context.Context, fio, out string, j fioJob) (FioFigures, error) {
	cmd := exec.CommandContext(ctx, fio, j.args(out)...)
	cmd.Dir = filepath.Dir(out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return FioFigures{}, fmt.Errorf("fio: %w", err)
	}
	done := make(chan struct{})
	var interrupted atomic.Bool
	if j.Stop != nil {
		go func() {
			select {
			case <-j.Stop:
				interrupted.Store(true)
				_ = cmd.Process.Signal(syscall.SIGINT)
			case <-done:
			}
		}()
	}
	err := cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if interrupted.Load() && errors.As(err, &ee) && ctx.Err() == nil {
		// Interrupted on purpose: fio exits non-zero but reports.
		err = nil
	}
	if err != nil {
		return FioFigures{}, fmt.Errorf("fio %s: %w: %s", strings.Join(j.args(out), " "), err, tail(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return FioFigures{}, fmt.Errorf("fio report: %w", err)
	}
	return parseFio(b)
}

// parseFio reads the figures of a group-reported fio JSON report. fio may
// print notices before the JSON object.
func parseFio(b []byte) (FioFigures, error) {
	if i := strings.IndexByte(string(b), '{'); i > 0 {
		b = b[i:]
	}
	type dir struct {
		IOBytes  int64   `json:"io_bytes"`
		IOPS     float64 `json:"iops"`
		BWBytes  float64 `json:"bw_bytes"`
		TotalIOs int64   `json:"total_ios"`
		Lat      struct {
			Mean       float64            `json:"mean"`
			Percentile map[string]float64 `json:"percentile"`
		} `json:"lat_ns"`
	}
	var rep struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  dir `json:"read"`
			Write dir `json:"write"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return FioFigures{}, fmt.Errorf("fio report: %w", err)
	}
	if len(rep.Jobs) != 1 {
		return FioFigures{}, fmt.Errorf("fio report: %d job groups, want 1", len(rep.Jobs))
	}
	jb := rep.Jobs[0]
	d := jb.Read
	if jb.Write.TotalIOs > d.TotalIOs {
		d = jb.Write
	}
	f := FioFigures{IOPS: d.IOPS, MiBps: d.BWBytes / (1 << 20), LatMeanUs: d.Lat.Mean / 1e3,
		LatP50Us: d.Lat.Percentile["50.000000"] / 1e3, LatP99Us: d.Lat.Percentile["99.000000"] / 1e3,
		Requests: d.TotalIOs, Errors: jb.Error}
	if f.Errors != 0 {
		return f, fmt.Errorf("fio: a job failed with error %d", f.Errors)
	}
	return f, nil
}

// latSample is one request of a fio latency log: when it completed and how
// long it took, both from the start of its fio job.
type latSample struct {
	done, lat time.Duration
}

// readLatLogs reads fio's per-request latency logs (prefix_lat.N.log, one
// per job) into one list ordered by completion time.
func readLatLogs(prefix string) ([]latSample, error) {
	files, err := filepath.Glob(prefix + "_lat.*.log")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("fio latency logs %s_lat.*.log: none found", prefix)
	}
	var out []latSample
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// time (ms), latency (ns), direction, block size[, ...]
			fields := strings.Split(sc.Text(), ",")
			if len(fields) < 2 {
				continue
			}
			ms, err1 := strconv.ParseInt(strings.TrimSpace(fields[0]), 10, 64)
			ns, err2 := strconv.ParseInt(strings.TrimSpace(fields[1]), 10, 64)
			if err1 != nil || err2 != nil {
				f.Close()
				return nil, fmt.Errorf("fio latency log %s: bad line %q", name, sc.Text())
			}
			out = append(out, latSample{done: time.Duration(ms) * time.Millisecond, lat: time.Duration(ns)})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b latSample) int { return int(a.done - b.done) })
	return out, nil
}

// windowFigures are the requests completed within a window of a run.
type windowFigures struct {
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	IOPS     float64 `json:"iops"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
	MaxMs    float64 `json:"maxMs"`
	// CPUUsPerRequest is the serving process's CPU time in the window
	// (the background work's included) per request, where measured: the
	// figure that other tenants of the machine do not change.
	CPUUsPerRequest float64 `json:"cpuUsPerRequest,omitempty"`
}

// window returns the figures of the requests completed in [from, to)
// (times from the start of the fio job).
func window(s []latSample, from, to time.Duration) windowFigures {
	var lat []time.Duration
	for _, x := range s {
		if x.done >= from && x.done < to {
			lat = append(lat, x.lat)
		}
	}
	w := windowFigures{Seconds: (to - from).Seconds(), Requests: len(lat)}
	if w.Seconds > 0 {
		w.IOPS = float64(len(lat)) / w.Seconds
	}
	w.P50Ms, w.P99Ms, w.MaxMs = percentiles(lat)
	return w
}
