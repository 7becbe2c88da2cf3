package resource

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckTags(t *testing.T) {
	many := map[string]string{}
	for i := 0; i <= MaxTags; i++ {
		many[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		tags map[string]string
		code string
	}{
		{nil, ""},
		{map[string]string{"env": "prod", "ünïcode": "välue", "empty": ""}, ""},
		{map[string]string{strings.Repeat("é", MaxTagNameLength): strings.Repeat("é", MaxTagValueLength)}, ""},
		{many, "InvalidTagCount"},
		{map[string]string{"a/b": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"a?b": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"a\x00b": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"\x1b[31m": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"a\u0085": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"a\x7f": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"\xff": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"": "v"}, "InvalidTagNameLength"},
		{map[string]string{strings.Repeat("a", MaxTagNameLength+1): "v"}, "InvalidTagNameLength"},
		{map[string]string{"k": "v\x00"}, "InvalidTagValueCharacters"},
		{map[string]string{"k": "line\nbreak"}, "InvalidTagValueCharacters"},
		{map[string]string{"k": "\xc3"}, "InvalidTagValueCharacters"},
		{map[string]string{"k": strings.Repeat("a", MaxTagValueLength+1)}, "InvalidTagValueLength"},
	}
	for _, tc := range tests {
		err := CheckTags(tc.tags)
		got := ""
		if e := AsError(err); e != nil {
			got = e.Code
			if e.Kind != KindBadRequest {
				t.Errorf("CheckTags(%q): kind %v, want bad request", tc.tags, e.Kind)
			}
			if strings.ContainsAny(e.Message, "\x00\x1b\x7f\u0085") {
				t.Errorf("CheckTags(%q): message echoes control characters: %q", tc.tags, e.Message)
			}
		} else if err != nil {
			got = "non-ARM error " + err.Error()
		}
		if got != tc.code {
			t.Errorf("CheckTags(%q) = %q, want %q", tc.tags, got, tc.code)
		}
	}
}

func TestCheckLineAndText(t *testing.T) {
	for _, s := range []string{"", "plain", "ünïcode name", "a-b_c.d (e)"} {
		if err := CheckLine("x", s); err != nil {
			t.Errorf("CheckLine(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"a\x00", "\x1b]0;t\x07", "a\nb", "a\tb", "\u009b", "\xff"} {
		e := AsError(CheckLine("props.name", s))
		if e == nil || e.Code != "InvalidParameter" || e.Target != "props.name" {
			t.Errorf("CheckLine(%q) = %v, want InvalidParameter on props.name", s, e)
		}
	}
	for _, s := range []string{"line 1\r\n\tline 2", "plain"} {
		if err := CheckText("d", s); err != nil {
			t.Errorf("CheckText(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"a\x00", "a\x1bb", "\u0085"} {
		if CheckText("d", s) == nil {
			t.Errorf("CheckText(%q) accepted", s)
		}
	}
}

func TestPrintable(t *testing.T) {
	tests := map[string]string{"plain": "plain", "a\x00b": `a\x00b`, "\x1b[31m": `\x1b[31m`, "é": "é", "\xff": `\xff`}
	for in, want := range tests {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
