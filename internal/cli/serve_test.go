package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/lowprio"
)

// TestServeBackgroundNice: `coffer serve --background-nice` (or
// $COFFER_BACKGROUND_NICE) takes a nice value from 0 to 19 for the
// background work's threads; anything else is refused before the server
// opens anything, and a good value is set before it does.
func TestServeBackgroundNice(t *testing.T) {
	t.Cleanup(func() { lowprio.SetNice(lowprio.DefaultNice) })
	for _, c := range []struct{ flag, env string }{
		{flag: "20"}, {flag: "-1"}, {flag: "low"}, {flag: "1.5"}, {env: "25"},
	} {
		t.Setenv(cli.BackgroundNiceEnv, c.env)
		data := filepath.Join(t.TempDir(), "data")
		// (were the value not refused, serve would stop at once anyway,
		// refusing plain HTTP on a non-loopback address)
		args := []string{"serve", "--data", data, "--listen", "0.0.0.0:0"}
		if c.flag != "" {
			args = append(args, "--background-nice", c.flag)
		}
		r := coffer(t, args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "--background-nice") || !strings.Contains(r.stderr, "from 0") {
			t.Errorf("serve with --background-nice %q, $%s %q: exit %d, %s", c.flag, cli.BackgroundNiceEnv, c.env, r.code, r.stderr)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("serve with a bad --background-nice made its data directory (%v)", err)
		}
		if got := lowprio.Nice(); got != lowprio.DefaultNice {
			t.Errorf("after the refused value %q/%q the background nice value is %d, want %d", c.flag, c.env, got, lowprio.DefaultNice)
		}
	}
	// A good value is in force before the server opens (which then
	// refuses plain HTTP on a non-loopback address).
	t.Setenv(cli.BackgroundNiceEnv, "12")
	r := coffer(t, "serve", "--data", t.TempDir(), "--listen", "0.0.0.0:0")
	if r.code == 0 || !strings.Contains(r.stderr, "refusing to serve plain HTTP") {
		t.Fatalf("serve on a non-loopback address without TLS: %+v", r)
	}
	if got := lowprio.Nice(); got != 12 {
		t.Errorf("$%s=12: the background nice value is %d", cli.BackgroundNiceEnv, got)
	}
	r = coffer(t, "serve", "--data", t.TempDir(), "--listen", "0.0.0.0:0", "--background-nice", "5")
	if got := lowprio.Nice(); got != 5 {
		t.Errorf("--background-nice 5 over $%s=12: the background nice value is %d (%+v)", cli.BackgroundNiceEnv, got, r)
	}
}
