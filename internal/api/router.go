package api

import (
	"strings"
)

// pattern is a parsed route path: literal segments, {name} captures and an
// optional leading {name...} that captures a multi-segment scope prefix.
type pattern struct {
	segs      []string
	scopeVar  string // leading {x...}: captures everything before segs
	literals  int
	rawString string
}

func parsePattern(p string) pattern {
	pt := pattern{rawString: p}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) > 0 && strings.HasPrefix(segs[0], "{") && strings.HasSuffix(segs[0], "...}") {
		pt.scopeVar = strings.TrimSuffix(strings.TrimPrefix(segs[0], "{"), "...}")
		segs = segs[1:]
	}
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	pt.segs = segs
	for _, s := range segs {
		if !isVar(s) {
			pt.literals++
		}
	}
	return pt
}

func isVar(s string) bool { return strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") }

// match matches path segments against the pattern, filling vars.
func (pt pattern) match(path []string, vars map[string]string) bool {
	if pt.scopeVar == "" {
		if len(path) != len(pt.segs) {
			return false
		}
		return matchSegs(pt.segs, path, vars)
	}
	if len(path) < len(pt.segs) {
		return false
	}
	cut := len(path) - len(pt.segs)
	if !matchSegs(pt.segs, path[cut:], vars) {
		return false
	}
	vars[pt.scopeVar] = "/" + strings.Join(path[:cut], "/")
	return true
}

func matchSegs(pat, path []string, vars map[string]string) bool {
	for i, s := range pat {
		if isVar(s) {
			if path[i] == "" {
				return false
			}
			vars[s[1:len(s)-1]] = path[i]
			continue
		}
		if !strings.EqualFold(s, path[i]) {
			return false
		}
	}
	return true
}

// splitPath splits a URL path into segments (no empty leading segment).
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
