package prom

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Point is one parsed sample.
type Point struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Exposition is a parsed scrape: the families' types and every sample.
type Exposition struct {
	Types  map[string]string // family name → counter, gauge, histogram
	Points []Point
}

var (
	nameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Parse reads the text exposition format strictly enough to catch what
// Prometheus would refuse: bad metric or label names, bad escapes, a
// sample before its family's TYPE, a TYPE given twice, a counter whose
// name does not end in _total, an unparsable value. It is what tests use
// to read /metrics.
func Parse(r io.Reader) (*Exposition, error) {
	ex := &Exposition{Types: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if strings.TrimSpace(s) == "" {
			continue
		}
		if strings.HasPrefix(s, "#") {
			f := strings.Fields(s)
			if len(f) >= 4 && f[1] == "TYPE" {
				if _, dup := ex.Types[f[2]]; dup {
					return nil, fmt.Errorf("line %d: TYPE of %s given twice", line, f[2])
				}
				switch f[3] {
				case Counter, Gauge, Histogram, "summary", "untyped":
				default:
					return nil, fmt.Errorf("line %d: unknown type %q", line, f[3])
				}
				if f[3] == Counter && !strings.HasSuffix(f[2], "_total") {
					return nil, fmt.Errorf("line %d: counter %s does not end in _total", line, f[2])
				}
				ex.Types[f[2]] = f[3]
			}
			continue
		}
		p, err := parseSample(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if _, ok := ex.Types[p.family()]; !ok {
			return nil, fmt.Errorf("line %d: sample %s before (or without) its family's TYPE", line, p.Name)
		}
		ex.Points = append(ex.Points, p)
	}
	return ex, sc.Err()
}

// family is the family a sample belongs to (a histogram's _bucket, _sum
// and _count belong to the histogram).
func (p Point) family() string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(p.Name, suf); ok {
			return base
		}
	}
	return p.Name
}

func parseSample(s string) (Point, error) {
	p := Point{Labels: map[string]string{}}
	i := strings.IndexAny(s, "{ ")
	if i < 0 {
		return p, fmt.Errorf("no value in %q", s)
	}
	p.Name = s[:i]
	if !nameRE.MatchString(p.Name) {
		return p, fmt.Errorf("bad metric name %q", p.Name)
	}
	rest := s[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return p, fmt.Errorf("bad labels in %q", s)
			}
			name := rest[:eq]
			if !labelRE.MatchString(name) {
				return p, fmt.Errorf("bad label name %q", name)
			}
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					switch rest[j+1] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						return p, fmt.Errorf("bad escape in label %s", name)
					}
					j++
					continue
				}
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return p, fmt.Errorf("unterminated label %s", name)
			}
			if _, dup := p.Labels[name]; dup {
				return p, fmt.Errorf("label %s given twice", name)
			}
			p.Labels[name] = val.String()
			rest = strings.TrimPrefix(rest, ",")
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return p, fmt.Errorf("bad value in %q", s)
	}
	v, err := strconv.ParseFloat(strings.Replace(f[0], "Inf", "inf", 1), 64)
	if err != nil {
		return p, fmt.Errorf("bad value in %q: %w", s, err)
	}
	p.Value = v
	return p, nil
}

// Get returns the value of the sample with this name whose labels include
// the given pairs, and whether there is one.
func (ex *Exposition) Get(name string, labels ...string) (float64, bool) {
	for _, p := range ex.Points {
		if p.Name == name && p.match(labels) {
			return p.Value, true
		}
	}
	return 0, false
}

// All returns the samples with this name whose labels include the pairs.
func (ex *Exposition) All(name string, labels ...string) []Point {
	var out []Point
	for _, p := range ex.Points {
		if p.Name == name && p.match(labels) {
			out = append(out, p)
		}
	}
	return out
}

func (p Point) match(labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if p.Labels[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}
