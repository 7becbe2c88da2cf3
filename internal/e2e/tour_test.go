package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/client"
	"coffer/internal/testenv"
)

// TestReadmeTour runs the README's tour ("A short tour": every ```sh block
// of that section) line by line, as written, in a new directory next to a
// server whose data directory is ./coffer-data there, as in the README. A
// `./coffer` line runs the CLI in-process (the `go build` line that makes
// ./coffer is taken as done); any other line runs with sh. Every line must
// succeed. A placeholder <field> or <command field> stands for that field
// (JSON key or table column, any case) of the latest output that has it,
// of a line of that command when one is named. Then it checks what the
// tour shows: who the CLI acts as before, during and after login, that
// logout revoked the profile's token, and (the tour's cmp line) that the
// restored disk is the uploaded image byte for byte.
func TestReadmeTour(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := tourLines(string(b), "A short tour")
	if err != nil {
		t.Fatal(err)
	}
	testenv.NeedProgram(t, "sh")
	for _, l := range lines {
		if w := shellWords(stripComment(l))[0]; w != "./coffer" && w != "go" {
			testenv.NeedProgram(t, w)
		}
	}
	dir := t.TempDir()
	env := Start(t, Options{DataDir: filepath.Join(dir, "coffer-data")})
	t.Chdir(dir)
	profile := filepath.Join(t.TempDir(), "profile.json")
	t.Setenv(client.EnvProfile, profile)
	for _, v := range []string{client.EnvEndpoint, client.EnvToken, client.EnvSubscription, client.EnvData} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}

	var outputs []tourOutput
	for i, raw := range lines {
		line, err := fillPlaceholders(stripComment(raw), outputs)
		if err != nil {
			t.Fatalf("line %d %q: %v", i+1, raw, err)
		}
		args := shellWords(line)
		var stdout, stderr string
		switch args[0] {
		case "go":
			if line != "go build -o coffer ./cmd/coffer" {
				t.Fatalf("line %d: %q: the test knows only the go build line that makes ./coffer", i+1, line)
			}
			continue // ./coffer runs in-process
		case "./coffer":
			var out, errb bytes.Buffer
			code := cli.Main(context.Background(), args[1:], &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
			stdout, stderr = out.String(), errb.String()
			if code != 0 {
				t.Fatalf("line %d: %s\nexit %d\n%s%s", i+1, line, code, stdout, stderr)
			}
		default:
			cmd := exec.Command("sh", "-c", line)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("line %d: %s\n%v\n%s%s", i+1, line, err, out.String(), errb.String())
			}
			stdout, stderr = out.String(), errb.String()
		}
		t.Logf("$ %s\n%s%s", line, stdout, stderr)
		outputs = append(outputs, tourOutput{args: args, stdout: stdout, stderr: stderr})
	}

	// Who the CLI acted as: the admin (admin.json), ci-bot (the profile),
	// the admin again after logout.
	var shows []tourOutput
	for _, o := range outputs {
		if len(o.args) > 2 && o.args[1] == "account" && o.args[2] == "show" {
			shows = append(shows, o)
		}
	}
	if len(shows) != 2 || !strings.Contains(shows[0].stdout, "coffer-admin") || !strings.Contains(shows[0].stdout, "admin.json") ||
		!strings.Contains(shows[1].stdout, "ci-bot") || !strings.Contains(shows[1].stdout, "profile "+profile) {
		t.Fatalf("account show before and after login: %+v", shows)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Fatalf("the profile is still there after logout (%v)", err)
	}
	toks, err := env.Client("").ListAllTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tok := range toks {
		if tok.Description == "coffer login" {
			found = true
			if !tok.Revoked {
				t.Fatalf("the profile's token %s was not revoked by logout", tok.ID)
			}
		}
	}
	if !found {
		t.Fatal("no token made by coffer login")
	}
	if last := outputs[len(outputs)-1]; !strings.Contains(last.stdout, "true") { // admin verify's ok
		t.Fatalf("admin verify: %s", last.stdout)
	}
	var cmpOut string
	for _, o := range outputs {
		if o.args[0] == "cmp" {
			cmpOut = o.stdout
		}
	}
	if !strings.Contains(cmpOut, "restored byte for byte") {
		t.Fatalf("the tour's cmp line: %q", cmpOut)
	}
}

// tourOutput is what one line of the tour printed.
type tourOutput struct {
	args           []string
	stdout, stderr string
}

// tourLines returns the command lines of the ```sh blocks of the README
// section titled title, in order, with continued lines joined.
func tourLines(readme, title string) ([]string, error) {
	sec, err := readmeSection(readme, title)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, block := range fencedBlocks(sec, "sh") {
		cont := ""
		for _, l := range strings.Split(block, "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			if c, ok := strings.CutSuffix(l, `\`); ok {
				cont += c
				continue
			}
			lines = append(lines, cont+l)
			cont = ""
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("the section %q has no ```sh block", title)
	}
	return lines, nil
}

// readmeSection returns the README section titled title ("## title"), up
// to the next section.
func readmeSection(readme, title string) (string, error) {
	_, sec, ok := strings.Cut(readme, "\n## "+title+"\n")
	if !ok {
		return "", fmt.Errorf("README.md has no section %q", title)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	return sec, nil
}

// fencedBlocks returns the contents of text's ```lang blocks, in order.
func fencedBlocks(text, lang string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, l)
		}
	}
	return blocks
}

var placeholder = regexp.MustCompile(`<([A-Za-z][A-Za-z ]*)>`)

// fillPlaceholders replaces each <field> or <command field> of line with
// that field of the latest output that has it (of a line whose first
// argument after ./coffer is command, when given).
func fillPlaceholders(line string, outputs []tourOutput) (string, error) {
	var err error
	filled := placeholder.ReplaceAllStringFunc(line, func(m string) string {
		words := strings.Fields(m[1 : len(m)-1])
		field, command := words[len(words)-1], ""
		if len(words) > 1 {
			command = words[0]
		}
		for i := len(outputs) - 1; i >= 0; i-- {
			o := outputs[i]
			if command != "" && (len(o.args) < 2 || o.args[0] != "./coffer" || o.args[1] != command) {
				continue
			}
			if v, ok := outputField(o.stdout, field); ok {
				return v
			}
		}
		if err == nil {
			err = fmt.Errorf("no earlier output has the field of %s", m)
		}
		return m
	})
	return filled, err
}

// outputField finds field (any case) in a JSON output (the shallowest key
// of that name; the first item of a list) or in a table (the column of
// that name in the first row).
func outputField(out, field string) (string, bool) {
	var v any
	if json.Unmarshal([]byte(out), &v) == nil {
		return jsonField(v, field)
	}
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(rows) < 3 || !strings.HasPrefix(rows[1], "--") {
		return "", false
	}
	head := rows[0]
	for _, m := range regexp.MustCompile(`\S+`).FindAllStringIndex(head, -1) {
		if !strings.EqualFold(head[m[0]:m[1]], field) {
			continue
		}
		end := len(rows[2])
		if next := regexp.MustCompile(`\S`).FindStringIndex(head[m[1]:]); next != nil {
			end = m[1] + next[0]
		}
		if m[0] >= len(rows[2]) {
			return "", false
		}
		return strings.TrimSpace(rows[2][m[0]:min(end, len(rows[2]))]), true
	}
	return "", false
}

// jsonField searches v breadth-first for a key named field (any case)
// with a string value.
func jsonField(v any, field string) (string, bool) {
	level := []any{v}
	for len(level) > 0 {
		var next []any
		for _, x := range level {
			switch x := x.(type) {
			case map[string]any:
				for k, val := range x {
					if s, ok := val.(string); ok && strings.EqualFold(k, field) {
						return s, true
					}
					next = append(next, val)
				}
			case []any:
				if len(x) > 0 {
					next = append(next, x[0])
				}
			}
		}
		level = next
	}
	return "", false
}

// stripComment removes a comment (from an unquoted # that starts a word)
// and the blanks before it.
func stripComment(line string) string {
	inWord := false
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			inWord = false
		case r == '#' && !inWord:
			return strings.TrimRight(line[:i], " \t")
		default:
			inWord = true
		}
	}
	return line
}

// shellWords splits a command line (without a comment) as sh splits a
// simple command: words at blanks, quotes grouping.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
