package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"coffer/internal/clock"
)

// tool runs one outside program with a fixed environment, logging its
// output to a file, and times it.
type tool struct {
	r    *runner
	name string
	path string
	env  []string
	log  string
}

// lookTool finds name on PATH.
func (r *runner) lookTool(name string, env ...string) *tool {
	p, err := exec.LookPath(name)
	if err != nil {
		return nil
	}
	return &tool{r: r, name: name, path: p, env: append(os.Environ(), env...), log: filepath.Join(r.dir, name+".log")}
}

// output runs the tool untimed and returns its stdout.
func (t *tool) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Env = t.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", t.name, strings.Join(args, " "), err, tail(errb.String()))
	}
	return out.String(), nil
}

// timed runs the tool in dir (if not "") with output appended to its log,
// and returns the wall-clock seconds and the child's peak RSS.
func (t *tool) timed(ctx context.Context, dir string, args ...string) (float64, int64, error) {
	logf, err := os.OpenFile(t.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", t.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s %s\n", t.name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Env = t.env
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stdout = logf
	cmd.Stderr = &teeWriter{logf, &errb}
	if err := t.r.beforeTimed(ctx); err != nil {
		return 0, 0, err
	}
	t0 := t.r.clk.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", t.name, err)
	}
	// The child's rusage maxrss includes the RSS of this process at the
	// fork, so its peak comes from polling VmHWM instead.
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() { peak <- pollHWM(t.r.clk, cmd.Process.Pid, stop) }()
	err = cmd.Wait()
	secs := t.r.clk.Now().Sub(t0).Seconds()
	close(stop)
	rss := <-peak
	if err != nil {
		return secs, 0, fmt.Errorf("%s %s: %w: %s", t.name, strings.Join(args, " "), err, tail(errb.String()))
	}
	return secs, rss, nil
}

// pollHWM samples the peak RSS (VmHWM) of process pid every 20 ms until
// stop closes and returns the largest value seen, in bytes.
func pollHWM(clk clock.Clock, pid int, stop <-chan struct{}) int64 {
	var peak int64
	path := fmt.Sprintf("/proc/%d/status", pid)
	for {
		if v, ok := statusHWM(path); ok {
			peak = max(peak, v)
		}
		t := clk.NewTimer(20 * time.Millisecond)
		select {
		case <-stop:
			t.Stop()
			return peak
		case <-t.C():
		}
	}
}

type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.a.Write(p)
	return w.b.Write(p)
}

// tail returns the last few hundred bytes of s, trimmed.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}

// peer is a backup tool compared with Coffer.
type peer interface {
	name() string
	// setup creates an empty repository (untimed) and describes the tool.
	setup(ctx context.Context, p *Peer) error
	backup(ctx context.Context, label string) (float64, int64, error)
	// restore restores the latest backup under target and returns the
	// restored image's path.
	restore(ctx context.Context, target string) (float64, string, error)
	// repoDir is the repository, whose growth is the bytes stored.
	repoDir() string
	// repoFiles are what a restore reads: the repository and the tool's
	// local cache.
	repoFiles() []string
}

// restic drives restic with its defaults (repository format and
// compression as `restic init` chooses them).
type restic struct {
	t     *tool
	repo  string
	cache string
	image string
}

func (r *runner) newRestic() *restic {
	repo, cache := filepath.Join(r.dir, "restic-repo"), filepath.Join(r.dir, "restic-cache")
	t := r.lookTool("restic", "RESTIC_REPOSITORY="+repo, "RESTIC_PASSWORD=coffer-bench", "RESTIC_CACHE_DIR="+cache)
	if t == nil {
		return nil
	}
	return &restic{t: t, repo: repo, cache: cache, image: r.image}
}

func (p *restic) name() string        { return "restic" }
func (p *restic) repoDir() string     { return p.repo }
func (p *restic) repoFiles() []string { return []string{p.repo, p.cache} }

func (p *restic) setup(ctx context.Context, out *Peer) error {
	v, err := p.t.output(ctx, "version")
	if err != nil {
		return err
	}
	out.Version = strings.TrimSpace(v)
	if _, err := p.t.output(ctx, "init"); err != nil {
		return err
	}
	cfg, err := p.t.output(ctx, "cat", "config")
	if err != nil {
		return err
	}
	var c struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		return fmt.Errorf("restic cat config: %w", err)
	}
	comp := "compression auto (zstd), the default for v2 repositories"
	if c.Version < 2 {
		comp = "no compression (v1 repository)"
	}
	out.Settings = fmt.Sprintf("defaults: repository format v%d, %s, content-defined chunks (~1 MiB), AES-256 + Poly1305", c.Version, comp)
	return nil
}

func (p *restic) backup(ctx context.Context, label string) (float64, int64, error) {
	return p.t.timed(ctx, "", "backup", "--host", "coffer-bench", p.image)
}

func (p *restic) restore(ctx context.Context, target string) (float64, string, error) {
	secs, _, err := p.t.timed(ctx, "", "restore", "latest", "--target", target)
	return secs, filepath.Join(target, p.image), err
}

// borg drives borg with its defaults except encryption (-e none; lz4
// compression, buzhash chunker).
type borg struct {
	t     *tool
	repo  string
	home  string // BORG_BASE_DIR: its cache and security directories
	image string
	last  string
}

func (r *runner) newBorg() *borg {
	repo, home := filepath.Join(r.dir, "borg-repo"), filepath.Join(r.dir, "borg-home")
	t := r.lookTool("borg", "BORG_BASE_DIR="+home,
		"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes")
	if t == nil {
		return nil
	}
	return &borg{t: t, repo: repo, home: home, image: r.image}
}

func (p *borg) name() string        { return "borg" }
func (p *borg) repoDir() string     { return p.repo }
func (p *borg) repoFiles() []string { return []string{p.repo, p.home} }

func (p *borg) setup(ctx context.Context, out *Peer) error {
	v, err := p.t.output(ctx, "--version")
	if err != nil {
		return err
	}
	out.Version = strings.TrimSpace(v)
	if _, err := p.t.output(ctx, "init", "-e", "none", p.repo); err != nil {
		return err
	}
	out.Settings = "defaults with -e none: lz4 compression, buzhash chunker (~2 MiB chunks), no encryption"
	return nil
}

func (p *borg) backup(ctx context.Context, label string) (float64, int64, error) {
	p.last = label
	return p.t.timed(ctx, "", "create", p.repo+"::"+label, p.image)
}

func (p *borg) restore(ctx context.Context, target string) (float64, string, error) {
	secs, _, err := p.t.timed(ctx, target, "extract", p.repo+"::"+p.last)
	return secs, filepath.Join(target, strings.TrimPrefix(p.image, "/")), err
}
