package resource

import (
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of ARM's resource tags.
const (
	MaxTags           = 50
	MaxTagNameLength  = 512
	MaxTagValueLength = 256
)

// tagNameReserved are the characters ARM refuses in tag names.
const tagNameReserved = `<>%&\?/`

// CheckTags applies ARM's rules to the tags of any resource (groups, disks,
// snapshots, vaults, backup instances): at most 50 tags; names of 1-512
// characters without '<', '>', '%', '&', '\', '?', '/' or control
// characters (InvalidTagNameCharacters, Azure's code and message); values
// of at most 256 characters (InvalidTagValueLength) without control
// characters (InvalidTagValueCharacters). Every provider checks tags here
// and nowhere else.
func CheckTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return Errorf(KindBadRequest, "InvalidTagCount", "The number of tags (%d) exceeds the maximum of %d.", len(tags), MaxTags)
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	sort.Strings(names)
	var bad []string
	for _, k := range names {
		if strings.ContainsAny(k, tagNameReserved) || hasControl(k) {
			bad = append(bad, Printable(k))
		}
	}
	if len(bad) > 0 {
		return Errorf(KindBadRequest, "InvalidTagNameCharacters",
			"The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or control characters.", strings.Join(bad, ","))
	}
	for _, k := range names {
		if n := utf8.RuneCountInString(k); n == 0 || n > MaxTagNameLength {
			return Errorf(KindBadRequest, "InvalidTagNameLength",
				"The tag name '%s' has %d characters; a tag name must have 1-%d characters.", Printable(k), n, MaxTagNameLength)
		}
		v := tags[k]
		if hasControl(v) {
			return Errorf(KindBadRequest, "InvalidTagValueCharacters",
				"The value of tag '%s' has control characters.", Printable(k))
		}
		if utf8.RuneCountInString(v) > MaxTagValueLength {
			return Errorf(KindBadRequest, "InvalidTagValueLength",
				"The value of tag '%s' exceeds the maximum length of %d characters.", Printable(k), MaxTagValueLength)
		}
	}
	return nil
}

// CheckLine checks a one-line free-text property (a display or friendly
// name): control characters and invalid UTF-8 are a 400 InvalidParameter
// naming target.
func CheckLine(target, s string) error {
	if hasControl(s) {
		return Errorf(KindBadRequest, "InvalidParameter",
			"The value '%s' of '%s' is invalid: it must not contain control characters.", Printable(s), target).WithTarget(target)
	}
	return nil
}

// CheckText is CheckLine for multi-line text (descriptions, conditions):
// tabs and line breaks are allowed, other control characters are not.
func CheckText(target, s string) error {
	return CheckLine(target, strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s))
}

// hasControl reports whether s is not valid UTF-8 or holds a control
// character (Unicode category Cc: C0, DEL and C1).
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// Printable returns s with control characters and invalid UTF-8 escaped
// (\x00, \u0085, …), so that an error message echoing user input cannot
// carry terminal escapes or NULs into logs and consoles.
func Printable(s string) string {
	if !hasControl(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
