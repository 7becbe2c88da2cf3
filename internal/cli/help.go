package cli

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// Help layout: lines are wrapped to helpWidth columns, and the description
// column starts after the longest flag synopsis up to maxSynopsis; a
// longer synopsis puts its description on the next line.
const (
	helpWidth   = 100
	maxSynopsis = 34
)

// helpFlag is one flag as help shows it: its names (aliases share a Value)
// and its description.
type helpFlag struct {
	short, long string // "g", "resource-group"; either may be empty
	arg         string // what the flag takes ("" for a switch)
	usage, def  string
}

func (h helpFlag) synopsis() string {
	s := "    "
	if h.short != "" {
		s = "-" + h.short + ", "
	}
	if h.long != "" {
		s += "--" + h.long
	} else {
		s = strings.TrimSuffix(s, ", ")
	}
	if h.arg != "" {
		s += " " + h.arg
	}
	return s
}

// flagKey identifies a flag's Value, so that the names bound to one value
// (a short name, the long name, hidden old spellings) are shown as one.
func flagKey(f *flag.Flag) string {
	v := reflect.ValueOf(f.Value)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map:
		return fmt.Sprintf("%s@%x", v.Type(), v.Pointer())
	}
	return "name:" + f.Name
}

// helpFlags groups the flags of fs that keep says to show into one entry
// per Value: the flag with a usage, and the short form that shortFlag
// binds to it. Aliases (see alias) are not shown.
func helpFlags(fs *flag.FlagSet, keep func(name string) bool) []helpFlag {
	byKey := map[string]*helpFlag{}
	var order []string
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) {
			return
		}
		k := flagKey(f)
		h := byKey[k]
		if h == nil {
			h = &helpFlag{}
			byKey[k] = h
			order = append(order, k)
		}
		switch {
		case f.Usage == hiddenUsage:
		case f.Usage != "":
			arg, usage := flag.UnquoteUsage(f)
			h.long, h.usage, h.arg = f.Name, usage, arg
			if !isZeroDefault(f.DefValue) {
				h.def = f.DefValue
			}
		case len(f.Name) == 1:
			h.short = f.Name
		}
	})
	out := make([]helpFlag, 0, len(order))
	for _, k := range order {
		if h := byKey[k]; h.long != "" {
			out = append(out, *h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].long < out[j].long })
	return out
}

func isZeroDefault(s string) bool {
	switch s {
	case "", "false", "0", "0s", "[]":
		return true
	}
	return false
}

// leftWidth returns the width of the left column for rows: the longest left
// up to maxSynopsis.
func leftWidth(rows [][2]string) int {
	col := 0
	for _, r := range rows {
		if n := len([]rune(r[0])); n > col && n <= maxSynopsis {
			col = n
		}
	}
	return col
}

// writeColumns writes rows of (left, text), text aligned after a left
// column col wide and wrapped to helpWidth; a longer left puts its text on
// the next line.
func writeColumns(w io.Writer, rows [][2]string, col int) {
	indent := 2 + col + 2
	for _, r := range rows {
		lines := wrap(r[1], helpWidth-indent)
		left := "  " + r[0]
		if len([]rune(r[0])) > col {
			fmt.Fprintln(w, left)
			left = ""
		}
		for i, l := range lines {
			if i > 0 || left == "" {
				fmt.Fprintf(w, "%s%s\n", strings.Repeat(" ", indent), l)
				continue
			}
			fmt.Fprintf(w, "%-*s%s\n", indent, left, l)
		}
		if len(lines) == 0 && left != "" {
			fmt.Fprintln(w, left)
		}
	}
}

// wrap breaks s into lines of at most width runes at spaces (a longer word
// gets a line of its own).
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len([]rune(line))+1+len([]rune(word)) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func printHelp(w io.Writer, c *command, path []string) {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s <command> [flags]\n\nCommands:\n", name, c.short, name)
	subs := append([]*command(nil), c.sub...)
	sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
	rows := make([][2]string, len(subs))
	for i, s := range subs {
		rows[i] = [2]string{s.name, s.short}
	}
	writeColumns(w, rows, leftWidth(rows))
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", name)
}

// printCommandHelp prints a command's usage, its own flags, then the
// global flags it takes (named in global).
func printCommandHelp(w io.Writer, c *command, path []string, fs *flag.FlagSet, global map[string]bool) {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s", name, c.short, name)
	if c.usage != "" {
		fmt.Fprintf(w, " %s", c.usage)
	}
	fmt.Fprintln(w, " [flags]")
	type section struct {
		title string
		rows  [][2]string
	}
	var secs []section
	var all [][2]string
	for _, sec := range []struct {
		title  string
		global bool
	}{{"Flags", false}, {"Global flags", true}} {
		hs := helpFlags(fs, func(n string) bool { return global[n] == sec.global })
		if len(hs) == 0 {
			continue
		}
		rows := make([][2]string, len(hs))
		for i, h := range hs {
			text := h.usage
			if h.def != "" {
				text += fmt.Sprintf(" (default %s)", h.def)
			}
			rows[i] = [2]string{h.synopsis(), text}
		}
		secs = append(secs, section{sec.title, rows})
		all = append(all, rows...)
	}
	col := leftWidth(all) // one column for every section
	for _, sec := range secs {
		fmt.Fprintf(w, "\n%s:\n", sec.title)
		writeColumns(w, sec.rows, col)
	}
}

// shortFlag binds the one-letter name short to the flag named long; help
// shows the two together.
func shortFlag(fs *flag.FlagSet, short, long string) {
	fs.Var(fs.Lookup(long).Value, short, "")
}

// hiddenUsage marks an alias.
const hiddenUsage = "\x00alias"

// alias binds old, an earlier spelling of the flag named current, to the
// same value. Help does not show it; scripts that use it keep working.
func alias(fs *flag.FlagSet, old, current string) {
	fs.Var(fs.Lookup(current).Value, old, hiddenUsage)
}
