package portal

import (
	"strings"
)

// CLI is the coffer command a form runs, shown as its "CLI equivalent":
// Command("vault", "create").Flag("resource-group", rg)… renders as
// `coffer vault create --resource-group rg …`, each value quoted for a
// POSIX shell. Flag names are those of internal/cli.
type CLI struct {
	words []cliWord
}

type cliWord struct {
	flag  string // "" for a positional word
	value string
	// field is the form field whose value the flag takes, so that the
	// page's script can keep the command in step with the form.
	field string
	bool  bool
}

// Command starts a CLI equivalent: coffer followed by the command's words.
func Command(words ...string) *CLI {
	c := &CLI{}
	for _, w := range words {
		c.words = append(c.words, cliWord{value: w})
	}
	return c
}

// Arg adds a positional word (after the flags: the CLI's flag parsing
// stops at the first one).
func (c *CLI) Arg(word string) *CLI {
	c.words = append(c.words, cliWord{value: word})
	return c
}

// Flag adds --name value (nothing when value is empty).
func (c *CLI) Flag(name, value string) *CLI {
	c.words = append(c.words, cliWord{flag: name, value: value})
	return c
}

// Field adds --name with the value of the form field field (its current
// value, and the value the user types with JavaScript).
func (c *CLI) Field(name, field, value string) *CLI {
	c.words = append(c.words, cliWord{flag: name, value: value, field: field})
	return c
}

// Bool adds --name when on.
func (c *CLI) Bool(name string, on bool) *CLI {
	if on {
		c.words = append(c.words, cliWord{flag: name, bool: true})
	}
	return c
}

// CLIPart is a piece of the command line as a page shows it: text, or
// the value of a form field (which the page's script updates as the user
// types; Placeholder stands for an empty value).
type CLIPart struct {
	Text        string
	Field       string
	Placeholder string
}

// Parts is the command line in pieces.
func (c *CLI) Parts() []CLIPart {
	parts := []CLIPart{{Text: "coffer"}}
	text := func(s string) {
		last := &parts[len(parts)-1]
		if last.Field == "" {
			last.Text += s
			return
		}
		parts = append(parts, CLIPart{Text: s})
	}
	for _, w := range c.words {
		switch {
		case w.bool:
			text(" --" + w.flag)
		case w.flag == "":
			text(" " + shellQuote(w.value))
		case w.value == "" && w.field == "":
		default:
			text(" --" + w.flag + " ")
			ph := "<" + strings.ToUpper(strings.ReplaceAll(w.flag, "-", "_")) + ">"
			v := ph
			if w.value != "" {
				v = shellQuote(w.value)
			}
			if w.field == "" {
				text(v)
				continue
			}
			parts = append(parts, CLIPart{Text: v, Field: w.field, Placeholder: ph})
		}
	}
	return parts
}

// String is the command line.
func (c *CLI) String() string {
	var b strings.Builder
	for _, p := range c.Parts() {
		b.WriteString(p.Text)
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
