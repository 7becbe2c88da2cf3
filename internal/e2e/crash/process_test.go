package crash

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"coffer/internal/cli"
	"coffer/internal/client"
	"coffer/internal/server"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cofferBinary builds ./cmd/coffer once per test process.
func cofferBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "coffer-crash-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "coffer")
		goTool, err := exec.LookPath("go")
		if err != nil { // `go test` run by a path, not from PATH
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goTool, "build", "-o", binPath, "coffer/cmd/coffer")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build coffer: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is `coffer serve` on one data directory, at fixed addresses so
// that admin.json, grants and clients stay valid across restarts. Each
// start may shift the server's clock further forward (COFFER_CLOCK_OFFSET),
// as if it had been down for that long.
type process struct {
	t       *testing.T
	bin     string
	dir     string
	logPath string
	http    string
	nbd     string

	// args are more `coffer serve` flags (the nodes of a cluster: --db,
	// --blob, --node-name, …).
	args []string

	offset time.Duration // the running process's clock offset
	cmd    *exec.Cmd
	exited chan error
	starts int
}

func newProcess(t *testing.T, bin, dir string) *process {
	return &process{t: t, bin: bin, dir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "serve.log"),
		http: freeAddr(t), nbd: freeAddr(t)}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// now is the running server's time.
func (p *process) now() time.Time { return time.Now().Add(p.offset) }

// start runs the server with the clock offset and waits until /healthz
// answers.
func (p *process) start(ctx context.Context, offset time.Duration) error {
	if p.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(logf, "\n=== start %d, clock offset %v\n", p.starts, offset)
	cmd := exec.Command(p.bin, append([]string{"serve", "--data", p.dir, "--listen", p.http, "--nbd-listen", p.nbd, "--log-level", "warn"}, p.args...)...)
	cmd.Env = append(os.Environ(), cli.ClockOffsetEnv+"="+offset.String())
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start coffer serve: %w", err)
	}
	logf.Close()
	p.cmd, p.offset = cmd, offset
	p.exited = make(chan error, 1)
	go func() { p.exited <- cmd.Wait() }()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-p.exited:
			p.cmd = nil
			return fmt.Errorf("coffer serve exited at start: %v\n%s", err, p.logTail())
		default:
		}
		resp, err := hc.Get("http://" + p.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("coffer serve did not become healthy (last: %v)\n%s", err, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeze stops the process with SIGSTOP: from then on it commits nothing,
// so what the store says about its work no longer moves.
func (p *process) freeze() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// stop ends the process with SIGTERM (a clean shutdown).
func (p *process) stop() error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.cmd = nil
		return err
	case <-time.After(60 * time.Second):
		p.kill()
		return errors.New("coffer serve did not stop within 60 s of SIGTERM")
	}
}

// alive reports whether the process is still running (it may have died
// on its own).
func (p *process) alive() error {
	if p.cmd == nil {
		return errors.New("not started")
	}
	select {
	case err := <-p.exited:
		p.cmd = nil
		return fmt.Errorf("coffer serve exited by itself: %v\n%s", err, p.logTail())
	default:
		return nil
	}
}

// client is an API client with the admin's token from admin.json.
func (p *process) client() (*client.Client, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, server.AdminFile))
	if err != nil {
		return nil, err
	}
	var a server.Admin
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("read admin.json: %w", err)
	}
	c, err := client.New(client.Config{Endpoint: "http://" + p.http, Token: a.Token, Subscription: a.SubscriptionID})
	if err != nil {
		return nil, err
	}
	c.PollInterval = 25 * time.Millisecond
	c.HTTP.Timeout = time.Minute
	return c, nil
}

// logTail is the end of the server's log, for failure messages.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	const n = 6000
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(b))
}
