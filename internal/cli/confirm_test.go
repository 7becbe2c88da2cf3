package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestConfirm(t *testing.T) {
	tests := []struct {
		interactive, yes bool
		input            string
		ok               bool
	}{
		{interactive: true, input: "y\n", ok: true},
		{interactive: true, input: "YES\n", ok: true},
		{interactive: true, input: "n\n", ok: false},
		{interactive: true, input: "\n", ok: false},
		{interactive: true, input: "", ok: false},
		{interactive: true, yes: true, input: "n\n", ok: true}, // --yes does not ask
		{interactive: false, input: "y\n", ok: false},          // a script is not asked: it needs --yes
		{interactive: false, input: "", ok: false},
		{interactive: false, yes: true, input: "", ok: true},
	}
	for _, tt := range tests {
		var errb bytes.Buffer
		e := &Env{Stdin: strings.NewReader(tt.input), Stderr: &errb, Interactive: tt.interactive, Terminal: true}
		err := confirm(e, tt.yes, "Delete x?")
		if (err == nil) != tt.ok {
			t.Errorf("interactive=%v yes=%v input %q: err %v, want ok=%v", tt.interactive, tt.yes, tt.input, err, tt.ok)
		}
		asked := strings.Contains(errb.String(), "Delete x? (y/N)")
		if asked != (tt.interactive && !tt.yes) {
			t.Errorf("interactive=%v yes=%v: asked=%v", tt.interactive, tt.yes, asked)
		}
		var ue usageError
		if !tt.interactive && !tt.yes && (!errors.As(err, &ue) || !strings.Contains(err.Error(), "pass --yes")) {
			t.Errorf("without a terminal: %v, want a usage error saying to pass --yes", err)
		}
	}
}
