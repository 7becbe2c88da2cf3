package odata

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical form; "" with err for a refusal
		err  string // part of the error message
	}{
		{in: "", want: ""},
		{in: "   ", want: ""},
		{in: "status eq 'Failed'", want: "status eq 'Failed'"},
		{in: "Status EQ 'Failed'", want: "Status eq 'Failed'"},
		{in: "principalId eq 8e3af657-a8ff-443c-a75c-2fe8c4bcb635", want: "principalId eq 8e3af657-a8ff-443c-a75c-2fe8c4bcb635"},
		{in: "startTime ge 2026-01-01T00:00:00+05:00", want: "startTime ge 2026-01-01T00:00:00+05:00"},
		{in: "name eq 'it''s'", want: "name eq 'it''s'"},
		{in: "a eq 1 and b ne 2 and c gt 3", want: "a eq 1 and b ne 2 and c gt 3"},
		{in: "a eq 1 or b eq 2 and c eq 3", want: "a eq 1 or b eq 2 and c eq 3"},
		{in: "(a eq 1 or b eq 2) and c eq 3", want: "(a eq 1 or b eq 2) and c eq 3"},
		{in: "a eq 1 and (b eq 2 and c eq 3)", want: "a eq 1 and (b eq 2 and c eq 3)"},
		{in: "((a eq 1))", want: "a eq 1"},
		{in: "not a eq 1", want: "not a eq 1"},
		{in: "NOT (a eq 1 or b eq 2)", want: "not (a eq 1 or b eq 2)"},
		{in: "not not a le 1", want: "not not a le 1"},
		{in: "atScope()", want: "atScope()"},
		{in: " atScope ( ) and assignedTo('x')", want: "atScope() and assignedTo('x')"},
		{in: "f('a', b,'c')", want: "f('a',b,'c')"},
		{in: "notes eq 'x'", want: "notes eq 'x'"},
		{in: "properties/status eq 'x'", want: "properties/status eq 'x'"},
		{in: "a eq and", want: "a eq and"},

		{in: "status", err: "expected an operator"},
		{in: "status eq", err: "expected a value"},
		{in: "status eq 'Failed", err: "unterminated string"},
		{in: "status eq 'a' 'b'", err: "expected 'and', 'or' or the end"},
		{in: "status eq 'a' and", err: "expected a property name"},
		{in: "status eq 'a' xor b eq 1", err: "expected 'and', 'or' or the end"},
		{in: "(status eq 'a'", err: "expected ')'"},
		{in: "status eq 'a')", err: "expected 'and', 'or' or the end"},
		{in: "status like 'a'", err: "expected an operator"},
		{in: "f(", err: "expected a value"},
		{in: "f('a' 'b')", err: "expected ',' or ')'"},
		{in: "= 'a'", err: "expected a property name"},
		{in: "not", err: "expected a property name"},
		{in: strings.Repeat("(", MaxDepth+1) + "a eq 1" + strings.Repeat(")", MaxDepth+1), err: "nested deeper"},
		{in: strings.Repeat("not ", MaxDepth+1) + "a eq 1", err: "nested deeper"},
		{in: "a eq '" + strings.Repeat("x", MaxLength) + "'", err: "longer than"},
	}
	for _, tc := range tests {
		e, err := Parse(tc.in)
		if tc.err != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%.60q) = %v, %v; want an ErrInvalid saying %q", tc.in, e, err, tc.err)
			}
			continue
		}
		got := ""
		if e != nil {
			got = e.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseTree(t *testing.T) {
	e, err := Parse("a eq 1 or b eq 'x' and not c()")
	if err != nil {
		t.Fatal(err)
	}
	or, ok := e.(*Logical)
	if !ok || !or.Or {
		t.Fatalf("top: %#v", e)
	}
	if c, ok := or.L.(*Compare); !ok || c.Name != "a" || c.Op != Eq || c.Value != (Value{Text: "1"}) {
		t.Fatalf("left: %#v", or.L)
	}
	and, ok := or.R.(*Logical)
	if !ok || and.Or {
		t.Fatalf("right: %#v", or.R)
	}
	if c, ok := and.L.(*Compare); !ok || c.Value != (Value{Text: "x", Quoted: true}) {
		t.Fatalf("and left: %#v", and.L)
	}
	if n, ok := and.R.(*Not); !ok {
		t.Fatalf("and right: %#v", and.R)
	} else if c, ok := n.X.(*Call); !ok || c.Name != "c" || len(c.Args) != 0 {
		t.Fatalf("not: %#v", n.X)
	}
}

func TestConjuncts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		fail string
	}{
		{"", 0, ""},
		{"a eq 1", 1, ""},
		{"a eq 1 and (b eq 2 and c())", 3, ""},
		{"a eq 1 or b eq 2", 0, "'or'"},
		{"a eq 1 and (b eq 2 or c eq 3)", 0, "'or'"},
		{"not a eq 1", 0, "'not'"},
	} {
		e, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		terms, err := Conjuncts(e)
		if tc.fail != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.fail) {
				t.Errorf("Conjuncts(%q) = %v, %v; want a refusal naming %s", tc.in, terms, err, tc.fail)
			}
			continue
		}
		if err != nil || len(terms) != tc.n {
			t.Errorf("Conjuncts(%q) = %d terms, %v; want %d", tc.in, len(terms), err, tc.n)
		}
	}
}

// FuzzParse: Parse never panics, fails only with ErrInvalid, and the
// canonical form of what it accepts parses back to the same form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "status eq 'Failed'", "a eq 1 or (b ne 'x''y' and not c(1,'2'))",
		"startTime ge '2026-01-01T00:00:00Z' and startTime le 2026-02-01", "atScope() and assignedTo('x')",
		"((((a eq 1))))", "not not not a eq b", "a eq '", "a eq 1 and", "f(,)", "\x00", "a eq 'é'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if e == nil {
			if strings.Trim(s, " \t") != "" {
				t.Fatalf("Parse(%q) = nil without error", s)
			}
			return
		}
		canon := e.String()
		e2, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, canon, err)
		}
		if e2.String() != canon {
			t.Fatalf("Parse(%q): canonical %q reparses as %q", s, canon, e2.String())
		}
		if _, err := Conjuncts(e); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Conjuncts(%q): %v", s, err)
		}
	})
}
