//go:build linux

package nbd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"coffer/internal/nbd"
	"coffer/internal/nbd/nbdtest"
)

// exports is a test Resolver: a fixed map of names to backends.
type exports struct {
	mu       sync.Mutex
	m        map[string]exportSpec
	released int
}

type exportSpec struct {
	backend  nbd.Backend
	readOnly bool
}

func (e *exports) add(name string, b nbd.Backend, readOnly bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = make(map[string]exportSpec)
	}
	e.m[name] = exportSpec{b, readOnly}
}

func (e *exports) resolve(_ context.Context, name string) (*nbd.Export, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.m[name]
	if !ok {
		return nil, fmt.Errorf("export lookup: %w", nbd.ErrUnknownExport)
	}
	return &nbd.Export{Backend: s.backend, ReadOnly: s.readOnly, Release: func() {
		e.mu.Lock()
		e.released++
		e.mu.Unlock()
	}}, nil
}

// serveOne serves b as the writable export name on a loopback port until
// the test ends, and returns the server's address and a client connected
// to it with structured replies, closed at the test's end.
func serveOne(t *testing.T, name string, b nbd.Backend) (addr string, c *nbdtest.Client) {
	t.Helper()
	ex := &exports{}
	ex.add(name, b, false)
	addr, _ = startServer(t, ex, nil)
	c, err := nbdtest.Dial(t.Context(), addr, name, nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr, c
}

// startServer serves on a loopback port until the test ends; configure may
// adjust the server before it starts.
func startServer(t testing.TB, ex *exports, configure func(*nbd.Server)) (string, *nbd.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{
		Resolver: ex.resolve,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, nbd.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String(), srv
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// fileBackend creates a sparse file backend of size bytes in a temp dir.
func fileBackend(t testing.TB, size int64) *nbdtest.File {
	t.Helper()
	f, err := nbdtest.CreateFile(filepath.Join(t.TempDir(), "disk.raw"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func nbdURI(addr, name string) string { return "nbd://" + addr + "/" + name }

// run runs a program, failing the test with its output if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

func runErr(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// segment is the layout unit of a test image.
const segment = 1 << 20

// segmentKind says what segment i of a test image holds: 0 zeroes (left
// as a hole), 1 random, 2 text, 3 random then zeroes.
func segmentKind(i int64) int { return int((i * 7 / 3) % 4) }

// makeImage writes a sparse test image of size bytes (a multiple of
// segment) mixing zeroes, random bytes and text, and returns its path.
func makeImage(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	buf := make([]byte, segment)
	for i := int64(0); i < size/segment; i++ {
		switch segmentKind(i) {
		case 0:
			continue
		case 1:
			rng.Read(buf)
		case 2:
			buf = buf[:0]
			for n := 0; len(buf) < segment; n++ {
				buf = fmt.Appendf(buf, "line %d of segment %d: the quick brown fox jumps over the lazy dog\n", n, i)
			}
			buf = buf[:segment]
		case 3:
			rng.Read(buf[:segment/2])
			clear(buf[segment/2:])
		}
		if _, err := f.WriteAt(buf, i*segment); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func hashFile(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return hashReader(t, f)
}

func hashReader(t testing.TB, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashBackend(t testing.TB, b nbd.Backend) string {
	t.Helper()
	return hashReader(t, io.NewSectionReader(b, 0, b.Size()))
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
