package resource

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidID is wrapped by Parse for malformed resource IDs.
var ErrInvalidID = errors.New("invalid resource ID")

// ID is a parsed Azure Resource Manager resource ID or scope, such as
//
//	/subscriptions/{sub}
//	/subscriptions/{sub}/resourceGroups/{rg}
//	/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{name}
//	/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{v}/backupInstances/{bi}
//	/subscriptions/{sub}/providers/Microsoft.DataProtection/locations/{loc}/operationStatus/{op}
//
// IDs compare case-insensitively (Key, Equal) but String returns the casing
// the caller used, as ARM echoes it.
type ID struct {
	Subscription  string
	ResourceGroup string
	// Provider is the resource provider namespace, e.g. "Microsoft.Compute";
	// empty for subscriptions and resource groups.
	Provider string
	// Types and Names are the type/name pairs after the provider, outermost
	// first: ["backupVaults","backupInstances"], ["v","bi"].
	Types []string
	Names []string
}

// Parse parses a resource ID or scope. A leading slash is optional (the
// Azure SDK sends role-assignment scopes without one); a trailing slash is
// ignored.
func Parse(s string) (ID, error) {
	var id ID
	orig := s
	s = strings.TrimSuffix(strings.TrimPrefix(s, "/"), "/")
	if s == "" {
		return id, fmt.Errorf("parse %q: empty: %w", orig, ErrInvalidID)
	}
	seg := strings.Split(s, "/")
	for _, p := range seg {
		if p == "" {
			return id, fmt.Errorf("parse %q: empty segment: %w", orig, ErrInvalidID)
		}
	}
	i := 0
	if !strings.EqualFold(seg[0], "subscriptions") {
		if strings.EqualFold(seg[0], "providers") {
			// Tenant-level provider scope: /providers/NS/type/name...
			return parseProvider(orig, id, seg[1:])
		}
		return id, fmt.Errorf("parse %q: must start with /subscriptions/: %w", orig, ErrInvalidID)
	}
	if len(seg) < 2 {
		return id, fmt.Errorf("parse %q: missing subscription ID: %w", orig, ErrInvalidID)
	}
	id.Subscription = seg[1]
	i = 2
	if i < len(seg) && strings.EqualFold(seg[i], "resourceGroups") {
		if i+1 >= len(seg) {
			return id, fmt.Errorf("parse %q: missing resource group name: %w", orig, ErrInvalidID)
		}
		id.ResourceGroup = seg[i+1]
		i += 2
	}
	if i == len(seg) {
		return id, nil
	}
	if !strings.EqualFold(seg[i], "providers") {
		return id, fmt.Errorf("parse %q: unexpected segment %q: %w", orig, seg[i], ErrInvalidID)
	}
	return parseProvider(orig, id, seg[i+1:])
}

func parseProvider(orig string, id ID, rest []string) (ID, error) {
	if len(rest) < 1 {
		return id, fmt.Errorf("parse %q: missing provider namespace: %w", orig, ErrInvalidID)
	}
	id.Provider = rest[0]
	rest = rest[1:]
	if len(rest) == 0 || len(rest)%2 != 0 {
		return id, fmt.Errorf("parse %q: resource type and name must come in pairs: %w", orig, ErrInvalidID)
	}
	for j := 0; j < len(rest); j += 2 {
		id.Types = append(id.Types, rest[j])
		id.Names = append(id.Names, rest[j+1])
	}
	return id, nil
}

// MustParse is Parse for constants in tests; it panics on error.
func MustParse(s string) ID {
	id, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return id
}

// String formats the ID with the casing it was built with.
func (id ID) String() string {
	var b strings.Builder
	if id.Subscription != "" {
		b.WriteString("/subscriptions/")
		b.WriteString(id.Subscription)
		if id.ResourceGroup != "" {
			b.WriteString("/resourceGroups/")
			b.WriteString(id.ResourceGroup)
		}
	}
	if id.Provider != "" {
		b.WriteString("/providers/")
		b.WriteString(id.Provider)
		for i := range id.Types {
			b.WriteString("/")
			b.WriteString(id.Types[i])
			b.WriteString("/")
			b.WriteString(id.Names[i])
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// Key is the lower-cased canonical form, used to store and compare IDs.
func (id ID) Key() string { return strings.ToLower(id.String()) }

// Equal reports whether two IDs name the same resource (case-insensitive).
func (id ID) Equal(o ID) bool { return id.Key() == o.Key() }

// Type is the full resource type, e.g. "Microsoft.Compute/disks",
// "Microsoft.DataProtection/backupVaults/backupInstances",
// "Microsoft.Resources/resourceGroups" or "Microsoft.Resources/subscriptions".
func (id ID) Type() string {
	switch {
	case id.Provider != "":
		return id.Provider + "/" + strings.Join(id.Types, "/")
	case id.ResourceGroup != "":
		return "Microsoft.Resources/resourceGroups"
	case id.Subscription != "":
		return "Microsoft.Resources/subscriptions"
	}
	return ""
}

// IsType reports whether the ID's type equals t, case-insensitively.
func (id ID) IsType(t string) bool { return strings.EqualFold(id.Type(), t) }

// Name is the last name segment (the resource group name for a group, the
// subscription ID for a subscription).
func (id ID) Name() string {
	switch {
	case len(id.Names) > 0:
		return id.Names[len(id.Names)-1]
	case id.ResourceGroup != "":
		return id.ResourceGroup
	}
	return id.Subscription
}

// Parent returns the enclosing resource or scope: a child resource's parent
// resource, a top-level resource's resource group (or subscription), a
// group's subscription. The parent of a subscription is the zero ID.
func (id ID) Parent() ID {
	p := id
	p.Types = append([]string(nil), id.Types...)
	p.Names = append([]string(nil), id.Names...)
	switch {
	case len(p.Types) > 1:
		p.Types, p.Names = p.Types[:len(p.Types)-1], p.Names[:len(p.Names)-1]
	case len(p.Types) == 1:
		p.Provider, p.Types, p.Names = "", nil, nil
	case p.ResourceGroup != "":
		p.ResourceGroup = ""
	default:
		return ID{}
	}
	return p
}

// Child returns the ID of a child resource of id with the given type and
// name. On a subscription or group it starts the provider section: pass
// "Namespace/type" as typ.
func (id ID) Child(typ, name string) ID {
	c := id
	c.Types = append(append([]string(nil), id.Types...), "")
	c.Names = append(append([]string(nil), id.Names...), name)
	if c.Provider == "" {
		ns, t, _ := strings.Cut(typ, "/")
		c.Provider = ns
		c.Types[len(c.Types)-1] = t
		return c
	}
	c.Types[len(c.Types)-1] = typ
	return c
}

// SubscriptionScope returns /subscriptions/{sub} of id.
func (id ID) SubscriptionScope() ID { return ID{Subscription: id.Subscription} }

// GroupScope returns /subscriptions/{sub}/resourceGroups/{rg} of id; the
// zero ID if id is not inside a group.
func (id ID) GroupScope() ID {
	if id.ResourceGroup == "" {
		return ID{}
	}
	return ID{Subscription: id.Subscription, ResourceGroup: id.ResourceGroup}
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.Subscription == "" && id.Provider == "" }

// SubscriptionID returns the ID of a subscription.
func SubscriptionID(sub string) ID { return ID{Subscription: sub} }

// GroupID returns the ID of a resource group.
func GroupID(sub, rg string) ID { return ID{Subscription: sub, ResourceGroup: rg} }

// Within reports whether id is scope itself or lies inside it.
func (id ID) Within(scope ID) bool {
	k, s := id.Key(), scope.Key()
	if s == "/" {
		return true
	}
	return k == s || strings.HasPrefix(k, s+"/")
}
