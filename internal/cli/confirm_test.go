package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfirm(t *testing.T) {
	tests := []struct {
		terminal, yes bool
		input         string
		ok            bool
	}{
		{terminal: true, input: "y\n", ok: true},
		{terminal: true, input: "YES\n", ok: true},
		{terminal: true, input: "n\n", ok: false},
		{terminal: true, input: "\n", ok: false},
		{terminal: true, input: "", ok: false},
		{terminal: true, yes: true, input: "n\n", ok: true}, // --yes does not ask
		{terminal: false, input: "", ok: true},              // scripts are not asked
	}
	for _, tt := range tests {
		var errb bytes.Buffer
		e := &Env{Stdin: strings.NewReader(tt.input), Stderr: &errb, Terminal: tt.terminal}
		err := confirm(e, tt.yes, "Delete x?")
		if (err == nil) != tt.ok {
			t.Errorf("terminal=%v yes=%v input %q: err %v, want ok=%v", tt.terminal, tt.yes, tt.input, err, tt.ok)
		}
		asked := strings.Contains(errb.String(), "Delete x? (y/N)")
		if asked != (tt.terminal && !tt.yes) {
			t.Errorf("terminal=%v yes=%v: asked=%v", tt.terminal, tt.yes, asked)
		}
	}
}
