package rbac

// Actions Coffer's own API checks on Microsoft.Authorization.
const (
	ActionRoleAssignmentsRead   = "Microsoft.Authorization/roleAssignments/read"
	ActionRoleAssignmentsWrite  = "Microsoft.Authorization/roleAssignments/write"
	ActionRoleAssignmentsDelete = "Microsoft.Authorization/roleAssignments/delete"
	ActionRoleDefinitionsRead   = "Microsoft.Authorization/roleDefinitions/read"
	ActionRoleDefinitionsWrite  = "Microsoft.Authorization/roleDefinitions/write"
	ActionRoleDefinitionsDelete = "Microsoft.Authorization/roleDefinitions/delete"
)

// MatchAction reports whether action matches pattern, ignoring case. A '*' in
// pattern matches any run of characters, '/' included, so "*/read" matches
// "Microsoft.Compute/disks/read" and "Microsoft.Authorization/*/read" matches
// "Microsoft.Authorization/roleAssignments/read". Every other character
// matches itself. An empty action matches nothing.
func MatchAction(pattern, action string) bool {
	if action == "" || pattern == "" {
		return false
	}
	return globFold(pattern, action)
}

// globFold is an iterative '*' matcher (no backtracking explosion) with ASCII
// case folding; action strings are ASCII in practice and other bytes compare
// exactly.
func globFold(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && foldEq(p[pi], s[si]):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func foldEq(a, b byte) bool {
	if a == b {
		return true
	}
	if 'A' <= a && a <= 'Z' {
		a += 'a' - 'A'
	}
	if 'A' <= b && b <= 'Z' {
		b += 'a' - 'A'
	}
	return a == b
}

// matchAny returns the first pattern in patterns that matches action.
func matchAny(patterns []string, action string) (string, bool) {
	for _, p := range patterns {
		if MatchAction(p, action) {
			return p, true
		}
	}
	return "", false
}
