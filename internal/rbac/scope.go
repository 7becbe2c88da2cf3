package rbac

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Level says how deep in the ARM hierarchy a scope is.
type Level int

// The scope levels, from the root down.
const (
	LevelRoot          Level = iota // "/"
	LevelSubscription               // /subscriptions/{id}
	LevelResourceGroup              // /subscriptions/{id}/resourceGroups/{rg}
	LevelResource                   // any resource ID (…/providers/{namespace}/{type}/{name}…)
)

func (l Level) String() string {
	switch l {
	case LevelRoot:
		return "root"
	case LevelSubscription:
		return "subscription"
	case LevelResourceGroup:
		return "resourceGroup"
	case LevelResource:
		return "resource"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Scope is a parsed scope. Path keeps the caller's casing (normalised: one
// leading slash, no trailing slash); comparisons ignore case.
type Scope struct {
	Path           string
	Level          Level
	SubscriptionID string // empty at LevelRoot
	ResourceGroup  string // empty above LevelResourceGroup
	segments       []string
}

// RootScope is the tenant root, which contains every scope.
const RootScope = "/"

// ParseScope parses and validates a scope string as ARM accepts it: "/",
// /subscriptions/{id}, /subscriptions/{id}/resourceGroups/{rg}, or a resource
// ID under either (…/providers/{namespace}/{type}/{name}[/{type}/{name}…],
// extension resources with a further /providers/… part included). A missing
// leading slash and a trailing slash are tolerated. Keywords
// ("subscriptions", "resourceGroups", "providers") match case-insensitively.
// Management-group and other tenant-level provider scopes are rejected with
// ErrUnsupportedScope.
func ParseScope(s string) (Scope, error) {
	segs, err := splitScope(s)
	if err != nil {
		return Scope{}, err
	}
	sc := Scope{Path: joinScope(segs), segments: segs}
	if len(segs) == 0 {
		sc.Level = LevelRoot
		return sc, nil
	}
	switch {
	case strings.EqualFold(segs[0], "providers"):
		if len(segs) >= 2 && strings.EqualFold(segs[1], "Microsoft.Management") {
			return Scope{}, fmt.Errorf("%w: management group scope %q", ErrUnsupportedScope, s)
		}
		return Scope{}, fmt.Errorf("%w: tenant-level provider scope %q", ErrUnsupportedScope, s)
	case !strings.EqualFold(segs[0], "subscriptions"):
		return Scope{}, fmt.Errorf("%w: %q: expected /subscriptions/{id}", ErrInvalidScope, s)
	}
	if len(segs) < 2 {
		return Scope{}, fmt.Errorf("%w: %q: missing subscription ID", ErrInvalidScope, s)
	}
	if !validSubscriptionID(segs[1]) {
		return Scope{}, fmt.Errorf("%w: %q: bad subscription ID %q", ErrInvalidScope, s, segs[1])
	}
	sc.SubscriptionID = segs[1]
	sc.Level = LevelSubscription
	rest := segs[2:]
	if len(rest) == 0 {
		return sc, nil
	}
	if strings.EqualFold(rest[0], "resourceGroups") {
		if len(rest) < 2 {
			return Scope{}, fmt.Errorf("%w: %q: missing resource group name", ErrInvalidScope, s)
		}
		if !validResourceGroupName(rest[1]) {
			return Scope{}, fmt.Errorf("%w: %q: bad resource group name %q", ErrInvalidScope, s, rest[1])
		}
		sc.ResourceGroup = rest[1]
		sc.Level = LevelResourceGroup
		rest = rest[2:]
		if len(rest) == 0 {
			return sc, nil
		}
	}
	if err := checkProviderPath(rest); err != nil {
		return Scope{}, fmt.Errorf("%w: %q: %v", ErrInvalidScope, s, err)
	}
	sc.Level = LevelResource
	return sc, nil
}

// checkProviderPath checks providers/{namespace}/{type}/{name}[/{type}/{name}…]
// optionally followed by another providers/… section (extension resources).
func checkProviderPath(rest []string) error {
	for len(rest) > 0 {
		if !strings.EqualFold(rest[0], "providers") {
			return fmt.Errorf("unexpected segment %q", rest[0])
		}
		if len(rest) < 2 || !validNamespace(rest[1]) {
			return fmt.Errorf("missing or bad resource provider namespace")
		}
		rest = rest[2:]
		pairs := 0
		for len(rest) > 0 && !(pairs > 0 && strings.EqualFold(rest[0], "providers")) {
			if len(rest) < 2 {
				return fmt.Errorf("resource type %q has no name", rest[0])
			}
			if strings.EqualFold(rest[0], "providers") {
				return fmt.Errorf("resource type missing after namespace")
			}
			rest = rest[2:]
			pairs++
		}
		if pairs == 0 {
			return fmt.Errorf("resource type and name missing after namespace")
		}
	}
	return nil
}

// splitScope returns the path segments of s; nil for the root. Segments must
// be non-empty valid UTF-8 without control characters.
func splitScope(s string) ([]string, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty scope", ErrInvalidScope)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrInvalidScope)
	}
	if s == RootScope {
		return nil, nil
	}
	p := strings.TrimPrefix(s, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, fmt.Errorf("%w: %q", ErrInvalidScope, s)
	}
	segs := strings.Split(p, "/")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("%w: %q: empty path segment", ErrInvalidScope, s)
		}
		for _, r := range seg {
			if unicode.IsControl(r) || r == '\\' || r == '?' || r == '#' {
				return nil, fmt.Errorf("%w: %q: bad character %q", ErrInvalidScope, s, r)
			}
		}
	}
	return segs, nil
}

func joinScope(segs []string) string {
	if len(segs) == 0 {
		return RootScope
	}
	return "/" + strings.Join(segs, "/")
}

// validSubscriptionID accepts GUIDs and other plain identifiers (letters,
// digits, '-', '_', '.'), up to 64 characters.
func validSubscriptionID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isASCIIAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// validResourceGroupName applies ARM's rule: 1–90 characters, letters and
// digits (Unicode), '_', '-', '.', '(' and ')', not ending in '.'.
func validResourceGroupName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > 90 || strings.HasSuffix(s, ".") {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_-.()", r) {
			return false
		}
	}
	return true
}

// validNamespace accepts resource provider namespaces such as
// Microsoft.Compute: dot-separated identifiers.
func validNamespace(s string) bool {
	if s == "" || !strings.Contains(s, ".") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isASCIIAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidateScope reports whether s is a scope ARM accepts; see ParseScope.
func ValidateScope(s string) error {
	_, err := ParseScope(s)
	return err
}

// NormalizeScope returns s with one leading slash and no trailing slash,
// keeping its casing, after validating it.
func NormalizeScope(s string) (string, error) {
	sc, err := ParseScope(s)
	if err != nil {
		return "", err
	}
	return sc.Path, nil
}

// ScopeKey returns a lower-cased normalised form of s for use as a map key or
// in equality tests, or "" when s is not a valid scope.
func ScopeKey(s string) string {
	sc, err := ParseScope(s)
	if err != nil {
		return ""
	}
	return foldCase(sc.Path)
}

// foldCase is the case-insensitive form of scopes and their segments: lower
// case of upper case, so that letters whose lower and upper cases are not
// one pair (the dotless ı, upper case I, lower case i) fold as their upper
// case does; ScopeKey and Contains agree on it.
func foldCase(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// segmentsEqual reports whether two path segments are equal ignoring case,
// in foldCase's sense.
func segmentsEqual(a, b string) bool {
	if isASCII(a) && isASCII(b) {
		return strings.EqualFold(a, b)
	}
	return foldCase(a) == foldCase(b)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// ScopeEqual reports whether a and b are the same valid scope, ignoring case
// and a trailing slash.
func ScopeEqual(a, b string) bool {
	ka := ScopeKey(a)
	return ka != "" && ka == ScopeKey(b)
}

// ScopeContains reports whether inner is outer or lies below it, comparing
// whole path segments case-insensitively. Both must be valid scopes; "/"
// contains every valid scope.
func ScopeContains(outer, inner string) bool {
	o, err := ParseScope(outer)
	if err != nil {
		return false
	}
	i, err := ParseScope(inner)
	if err != nil {
		return false
	}
	return o.Contains(i)
}

// Contains reports whether inner is sc or lies below it.
func (sc Scope) Contains(inner Scope) bool {
	if len(sc.segments) > len(inner.segments) {
		return false
	}
	for k, seg := range sc.segments {
		if !segmentsEqual(seg, inner.segments[k]) {
			return false
		}
	}
	return true
}

// Ancestor returns the scope at level that contains sc (the tenant root,
// its subscription or its resource group), in sc's casing; sc itself when
// level is not above sc's own, or when sc is not in a resource group and
// level is LevelResourceGroup. Assigning a role at an ancestor grants it
// on everything below: "Add missing roles" at resource group or
// subscription scope.
func (sc Scope) Ancestor(level Level) string {
	switch {
	case level >= sc.Level, level == LevelResourceGroup && sc.ResourceGroup == "":
		return sc.Path
	}
	return joinScope(sc.segments[:2*int(level)])
}

// SubscriptionScope returns "/subscriptions/{id}".
func SubscriptionScope(subscriptionID string) string {
	return "/subscriptions/" + subscriptionID
}

// ResourceGroupScope returns "/subscriptions/{id}/resourceGroups/{rg}".
func ResourceGroupScope(subscriptionID, resourceGroup string) string {
	return "/subscriptions/" + subscriptionID + "/resourceGroups/" + resourceGroup
}
