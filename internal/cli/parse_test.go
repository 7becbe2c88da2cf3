package cli

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		out, name  string
		positional []string
	}{
		{args: []string{"-o", "none", "disk.img"}, out: "none", positional: []string{"disk.img"}},
		{args: []string{"disk.img", "-o", "none"}, out: "none", positional: []string{"disk.img"}},
		{args: []string{"-n", "d", "a.img", "--output", "tsv", "b.img"}, out: "tsv", name: "d", positional: []string{"a.img", "b.img"}},
		{args: []string{"-n", "d", "--", "-o", "x"}, name: "d", positional: []string{"-o", "x"}},
		{args: []string{"a.img", "--", "-n"}, positional: []string{"a.img", "-n"}},
		{args: []string{"-"}, positional: []string{"-"}},
		{args: nil, positional: []string{}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var out, name string
		stringFlag(fs, &out, "output", "o", "", "")
		fs.StringVar(&name, "n", "", "")
		if err := parseInterspersed(fs, tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if out != tc.out || name != tc.name || !reflect.DeepEqual(append([]string{}, fs.Args()...), tc.positional) {
			t.Errorf("%q: output %q name %q positional %q, want %q %q %q", tc.args, out, name, fs.Args(), tc.out, tc.name, tc.positional)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parseInterspersed(fs, []string{"a.img", "--bogus"}); err == nil {
		t.Error("an unknown flag after an argument was accepted")
	}
}
