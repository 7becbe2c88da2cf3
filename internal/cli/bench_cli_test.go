package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"coffer/internal/cli"
)

// TestBenchWarnsFirst: before it starts, coffer bench says what it will do,
// how long it takes and how much space it needs where, and it refuses to
// start (nothing created) when that space is not free.
func TestBenchWarnsFirst(t *testing.T) {
	dir := t.TempDir()
	bench := func(ctx context.Context, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Main(ctx, append([]string{"bench", "--dir", dir, "--no-peers"}, args...), &cli.Env{Stdout: &out, Stderr: &errb})
		return code, errb.String()
	}
	// A run stopped at once (as by Ctrl-C) has said what it would do.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, stderr := bench(ctx, "--size", "8MiB")
	if code != cli.ExitError || !strings.Contains(stderr, "coffer bench: a 8 MiB generated disk image") ||
		!strings.Contains(stderr, "It takes under a minute here, and uses up to 20 MiB in "+dir) || !strings.Contains(stderr, "removed at the end") {
		t.Fatalf("bench stopped at once: exit %d\n%s", code, stderr)
	}
	// More than the free space: refused before anything is made.
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	code, stderr = bench(context.Background(), "--size", fmt.Sprintf("%dMiB", free/2>>20))
	if code != cli.ExitError || !strings.Contains(stderr, "free: give a smaller --size, or --dir on a larger file system") {
		t.Fatalf("bench beyond the free space: exit %d\n%s", code, stderr)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("left in the directory: %v %v", ents, err)
	}
}
