package resource

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// NameRule is Azure's naming rule for one resource type.
type NameRule struct {
	Type     string // resource type it applies to, for messages
	Min, Max int    // length bounds, in characters
	// Allowed reports whether r may appear in the name; Start and End, when
	// set, constrain the first and last characters.
	Allowed    func(r rune) bool
	Start, End func(r rune) bool
	// Describe is the rule in words, for the error message.
	Describe string
}

func isASCIIAlnum(r rune) bool {
	return r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// Rules for the types Coffer serves (Azure's published naming rules).
var (
	// GroupNameRule: 1-90 characters: letters (Unicode), digits,
	// underscores, hyphens, periods and parentheses; not ending in a period.
	GroupNameRule = NameRule{
		Type: "resource group", Min: 1, Max: 90,
		Allowed: func(r rune) bool {
			return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-.()", r)
		},
		End:      func(r rune) bool { return r != '.' },
		Describe: "1-90 characters: letters, digits, underscores, hyphens, periods and parentheses, not ending in a period",
	}
	// DiskNameRule (disks and snapshots): 1-80 characters: letters, digits,
	// underscores, periods and hyphens; starting with a letter or digit and
	// ending with a letter, digit or underscore.
	DiskNameRule = NameRule{
		Type: "disk", Min: 1, Max: 80,
		Allowed:  func(r rune) bool { return isASCIIAlnum(r) || strings.ContainsRune("_.-", r) },
		Start:    isASCIIAlnum,
		End:      func(r rune) bool { return isASCIIAlnum(r) || r == '_' },
		Describe: "1-80 characters: letters, digits, underscores, periods and hyphens, starting with a letter or digit and ending with a letter, digit or underscore",
	}
	// VaultNameRule: 2-50 characters: letters, digits and hyphens, starting
	// with a letter.
	VaultNameRule = NameRule{
		Type: "backup vault", Min: 2, Max: 50,
		Allowed:  func(r rune) bool { return isASCIIAlnum(r) || r == '-' },
		Start:    func(r rune) bool { return r < utf8.RuneSelf && unicode.IsLetter(r) },
		Describe: "2-50 characters: letters, digits and hyphens, starting with a letter",
	}
	// ChildNameRule (policies, backup instances): 1-150 characters:
	// letters, digits, hyphens, underscores and periods.
	ChildNameRule = NameRule{
		Type: "resource", Min: 1, Max: 150,
		Allowed:  func(r rune) bool { return isASCIIAlnum(r) || strings.ContainsRune("_.-", r) },
		Start:    isASCIIAlnum,
		Describe: "1-150 characters: letters, digits, hyphens, underscores and periods, starting with a letter or digit",
	}
)

// Check returns nil if name satisfies the rule, or a 400 error with code
// code (Azure uses InvalidResourceName or InvalidResourceGroup per type).
func (r NameRule) Check(code, name string) error {
	n := utf8.RuneCountInString(name)
	bad := n < r.Min || n > r.Max || !utf8.ValidString(name)
	if !bad {
		for i, c := range name {
			if !r.Allowed(c) || (i == 0 && r.Start != nil && !r.Start(c)) {
				bad = true
				break
			}
		}
	}
	if !bad && r.End != nil {
		last, _ := utf8.DecodeLastRuneInString(name)
		bad = !r.End(last)
	}
	if bad {
		return Errorf(KindBadRequest, code, "The %s name '%s' is invalid. It must be %s.", r.Type, Printable(name), r.Describe)
	}
	return nil
}
