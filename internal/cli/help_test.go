package cli

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestHelpAligned runs --help on every command of the tree and checks the
// layout: no line wider than 100 columns (but for a single word), every
// description of a help page in one column, wrapped lines starting in that
// column, and a command's flags apart from the global flags.
func TestHelpAligned(t *testing.T) {
	var walk func(c *command, path []string)
	walk = func(c *command, path []string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append(append([]string(nil), path...), "--help"), &Env{Stdout: &out, Stderr: &errb})
		name := "coffer " + strings.Join(path, " ")
		if code != 0 || errb.Len() > 0 {
			t.Errorf("%s --help: exit %d, %s", name, code, errb.String())
		}
		checkHelpLayout(t, name, out.String())
		if c.run != nil && c.name != "serve" && c.name != "version" && !strings.Contains(out.String(), "\nGlobal flags:\n  -o, --output string") {
			t.Errorf("%s --help has no global flags section:\n%s", name, out.String())
		}
		for _, s := range c.sub {
			walk(s, append(append([]string(nil), path...), s.name))
		}
	}
	walk(root(), nil)
}

// synopsis matches the start of an entry of a list: a flag (its short and
// long names, and what it takes) or a command name.
var synopsis = regexp.MustCompile(`^(-[A-Za-z], --[a-z][a-z0-9-]*|--?[a-z][a-z0-9-]*)( [^ ]+)?|^[a-z][a-z-]*`)

func checkHelpLayout(t *testing.T, name, help string) {
	t.Helper()
	col := -1
	inList := false
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s --help: %s\n%s", name, fmt.Sprintf(format, args...), help)
	}
	for _, l := range strings.Split(help, "\n") {
		if n := len([]rune(l)); n > 100 && strings.Contains(strings.TrimSpace(l), " ") && !strings.HasPrefix(l, "coffer ") {
			fail("line of %d columns: %q", n, l)
			return
		}
		switch {
		case l == "Flags:" || l == "Global flags:" || l == "Commands:":
			inList = true
			continue
		case l == "":
			inList = false
			continue
		case !inList:
			continue
		}
		text := strings.TrimLeft(l, " ")
		indent := len(l) - len(text)
		if indent == 2 || indent == 6 && strings.HasPrefix(text, "--") { // an entry; else a wrapped line
			syn := synopsis.FindString(text)
			rest := text[len(syn):]
			if syn == "" {
				fail("not an entry: %q", l)
				return
			}
			if rest == "" {
				continue // a long synopsis: its text is on the next line
			}
			desc := strings.TrimLeft(rest, " ")
			at := indent + len(syn) + len(rest) - len(desc)
			if len(rest)-len(desc) < 2 {
				fail("no room between the name and its text: %q", l)
				return
			}
			if col == -1 {
				col = at
			}
			if at != col {
				fail("text at column %d, not %d: %q", at, col, l)
				return
			}
			continue
		}
		if indent != col { // a wrapped line
			fail("wrapped line at column %d, not %d: %q", indent, col, l)
			return
		}
	}
}

// TestHelpFlagNames: a backup instance is --instance wherever a command
// refers to one, restore's new disk is --target-disk, and the old
// spellings work but are not shown.
func TestHelpFlagNames(t *testing.T) {
	help := func(args ...string) string {
		var out bytes.Buffer
		Main(context.Background(), append(args, "--help"), &Env{Stdout: &out, Stderr: &out})
		return out.String()
	}
	for _, args := range [][]string{{"protect"}, {"backup", "now"}, {"rp", "list"}, {"restore"}} {
		h := help(args...)
		if !strings.Contains(h, "\n      --instance string") || strings.Contains(h, "--name") || strings.Contains(h, "-n,") {
			t.Errorf("coffer %s --help:\n%s", strings.Join(args, " "), h)
		}
	}
	if h := help("restore"); !strings.Contains(h, "--target-disk string") {
		t.Errorf("restore --help:\n%s", h)
	}
	if h := help("instance", "show"); !strings.Contains(h, "-n, --name string") {
		t.Errorf("instance show --help:\n%s", h)
	}
	if h := help("backup", "now"); !strings.Contains(h, "--retention-tag string") || strings.Contains(h, "--rule") {
		t.Errorf("backup now --help:\n%s", h)
	}
	if h := help("serve"); strings.Contains(h, "--output") || strings.Contains(h, "--subscription") {
		t.Errorf("serve --help offers client flags:\n%s", h)
	}
	// The old spellings still parse (they fail later, on the missing vault).
	for _, args := range [][]string{
		{"backup", "now", "-g", "rg", "-n", "bi", "--rule", "Default"},
		{"protect", "-g", "rg", "--name", "bi"},
		{"restore", "-g", "rg", "--instance", "bi", "--name", "disk"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &Env{Stdout: &out, Stderr: &errb}); code != ExitUsage || !strings.Contains(errb.String(), "--vault-name is required") {
			t.Errorf("coffer %s: exit %d %s", strings.Join(args, " "), code, errb.String())
		}
	}
}
