// Package odata parses the OData $filter expressions that ARM list
// operations take (role assignments, role definitions, recovery points,
// backup jobs) into a small syntax tree. The grammar is the part of OData
// v4 those lists use:
//
//	expr       = and-expr { "or" and-expr }
//	and-expr   = unary { "and" unary }
//	unary      = "not" unary | "(" expr ")" | comparison | call
//	comparison = name ("eq" | "ne" | "gt" | "ge" | "lt" | "le") value
//	call       = name "(" [ value { "," value } ] ")"
//	value      = 'string' (a quote doubled inside) | bare token
//
// Keywords and operators are case-insensitive. A bare token is a run of
// letters, digits and "_-.:+" (a GUID, a number, a date-time, true/false);
// names are letters, digits and "_-./". What a name means, which operators
// and values it takes and whether "or" and "not" are allowed is for each
// list to decide: the parser only builds the tree, and every error it
// returns wraps ErrInvalid and says where the filter went wrong.
package odata

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error of Parse and of the helpers that
// check a tree's shape.
var ErrInvalid = errors.New("invalid $filter")

// Limits keep a hostile filter cheap: longer or deeper ones are refused.
const (
	MaxLength = 4096
	MaxDepth  = 32
)

// Expr is a node of a parsed filter: *Logical, *Not, *Compare or *Call.
// String formats it back in canonical form (keywords lower case, values
// quoted as given, parentheses where the tree needs them), which parses to
// the same tree.
type Expr interface {
	String() string
	expr()
}

// Logical is "L and R" or "L or R".
type Logical struct {
	Or   bool // false: and
	L, R Expr
}

// Not is "not X".
type Not struct{ X Expr }

// Op is a comparison operator.
type Op string

// The comparison operators.
const (
	Eq Op = "eq"
	Ne Op = "ne"
	Gt Op = "gt"
	Ge Op = "ge"
	Lt Op = "lt"
	Le Op = "le"
)

// Compare is "Name Op Value".
type Compare struct {
	Name  string
	Op    Op
	Value Value
}

// Call is "Name(Args...)".
type Call struct {
	Name string
	Args []Value
}

// Value is a literal: the text of a quoted string (unescaped) or a bare
// token.
type Value struct {
	Text   string
	Quoted bool
}

func (*Logical) expr() {}
func (*Not) expr()     {}
func (*Compare) expr() {}
func (*Call) expr()    {}

func (e *Logical) String() string {
	op := " and "
	if e.Or {
		op = " or "
	}
	// Chains associate to the left and "and" binds tighter than "or", so
	// an "or" under an "and" needs parentheses, and so does a right-hand
	// operand of the same or a looser operator; the text parses back to
	// the same tree, never deeper than the filter it came from.
	l := e.L.String()
	if x, ok := e.L.(*Logical); ok && x.Or && !e.Or {
		l = "(" + l + ")"
	}
	r := e.R.String()
	if x, ok := e.R.(*Logical); ok && !(e.Or && !x.Or) {
		r = "(" + r + ")"
	}
	return l + op + r
}

func (e *Not) String() string {
	if _, ok := e.X.(*Logical); ok {
		return "not (" + e.X.String() + ")"
	}
	return "not " + e.X.String()
}

func (e *Compare) String() string { return e.Name + " " + string(e.Op) + " " + e.Value.String() }

func (e *Call) String() string {
	args := make([]string, len(e.Args))
	for i, a := range e.Args {
		args[i] = a.String()
	}
	return e.Name + "(" + strings.Join(args, ",") + ")"
}

func (v Value) String() string {
	if v.Quoted {
		return Quote(v.Text)
	}
	return v.Text
}

// timeLayouts are the date-time forms a filter value may take: RFC 3339,
// the same without a zone (UTC), a date, and the "2016-01-01 12:00:00 AM"
// form of Azure Backup's examples.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02 3:04:05 PM", "2006-01-02"}

// Time reads v as a date-time (see timeLayouts), in UTC.
func (v Value) Time() (time.Time, error) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, v.Text); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %s is not a date-time (use RFC 3339, e.g. '2026-01-31T00:00:00Z')", ErrInvalid, v)
}

// Reason returns what err, an error of this package, says is wrong,
// without the "invalid $filter" prefix (for messages that name the filter
// themselves).
func Reason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

// Quote formats s as an OData string literal.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Parse parses a $filter. An empty (or all-space) filter is a nil Expr and
// no error.
func Parse(filter string) (Expr, error) {
	if len(filter) > MaxLength {
		return nil, fmt.Errorf("%w: longer than %d characters", ErrInvalid, MaxLength)
	}
	p := parser{src: filter}
	if p.end() {
		return nil, nil
	}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if !p.end() {
		return nil, p.errorf("expected 'and', 'or' or the end of the filter")
	}
	return e, nil
}

// Conjuncts returns the terms of a filter that is a conjunction ("a and b
// and …", parentheses allowed), for lists that take nothing else; "or" and
// "not" are refused by name. A nil filter has no terms.
func Conjuncts(e Expr) ([]Expr, error) {
	switch x := e.(type) {
	case nil:
		return nil, nil
	case *Logical:
		if x.Or {
			return nil, fmt.Errorf("%w: the operator 'or' is not supported here; join conditions with 'and'", ErrInvalid)
		}
		l, err := Conjuncts(x.L)
		if err != nil {
			return nil, err
		}
		r, err := Conjuncts(x.R)
		if err != nil {
			return nil, err
		}
		return append(l, r...), nil
	case *Not:
		return nil, fmt.Errorf("%w: the operator 'not' is not supported here", ErrInvalid)
	}
	return []Expr{e}, nil
}

type parser struct {
	src string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalid, fmt.Sprintf(format, args...), p.pos)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

func (p *parser) end() bool {
	p.skipSpace()
	return p.pos == len(p.src)
}

func (p *parser) or(depth int) (Expr, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &Logical{Or: true, L: l, R: r}
	}
	return l, nil
}

func (p *parser) and(depth int) (Expr, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &Logical{L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (Expr, error) {
	if depth >= MaxDepth {
		return nil, p.errorf("nested deeper than %d levels", MaxDepth)
	}
	if p.punct('(') {
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.punct(')') {
			return nil, p.errorf("expected ')'")
		}
		return e, nil
	}
	if p.keyword("not") {
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	}
	name, ok := p.name()
	if !ok {
		return nil, p.errorf("expected a property name, a function call, 'not' or '('")
	}
	if p.punct('(') {
		c := &Call{Name: name}
		if p.punct(')') {
			return c, nil
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, v)
			if p.punct(')') {
				return c, nil
			}
			if !p.punct(',') {
				return nil, p.errorf("expected ',' or ')'")
			}
		}
	}
	for _, op := range []Op{Eq, Ne, Gt, Ge, Lt, Le} {
		if p.keyword(string(op)) {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			return &Compare{Name: name, Op: op, Value: v}, nil
		}
	}
	return nil, p.errorf("expected an operator (eq, ne, gt, ge, lt, le) or '(' after %q", name)
}

func (p *parser) punct(c byte) bool {
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func isLetterDigit(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isNameByte(c byte) bool  { return isLetterDigit(c) || strings.IndexByte("_-./", c) >= 0 }
func isTokenByte(c byte) bool { return isLetterDigit(c) || strings.IndexByte("_-.:+", c) >= 0 }

// keyword consumes kw (case-insensitive) when it is a whole word.
func (p *parser) keyword(kw string) bool {
	p.skipSpace()
	end := p.pos + len(kw)
	if end > len(p.src) || !strings.EqualFold(p.src[p.pos:end], kw) {
		return false
	}
	if end < len(p.src) && isNameByte(p.src[end]) {
		return false
	}
	p.pos = end
	return true
}

func (p *parser) run(ok func(byte) bool) string {
	p.skipSpace()
	start := p.pos
	for p.pos < len(p.src) && ok(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *parser) name() (string, bool) {
	n := p.run(isNameByte)
	return n, n != ""
}

// value reads a quoted string or a bare token.
func (p *parser) value() (Value, error) {
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '\'' {
		var b strings.Builder
		for i := p.pos + 1; i < len(p.src); i++ {
			if p.src[i] != '\'' {
				b.WriteByte(p.src[i])
				continue
			}
			if i+1 < len(p.src) && p.src[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			p.pos = i + 1
			return Value{Text: b.String(), Quoted: true}, nil
		}
		return Value{}, p.errorf("unterminated string")
	}
	if t := p.run(isTokenByte); t != "" {
		return Value{Text: t}, nil
	}
	return Value{}, p.errorf("expected a value")
}
