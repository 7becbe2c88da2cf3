package tenant

import (
	"fmt"
	"strings"

	"coffer/internal/odata"
	"coffer/internal/resource"
)

// GroupFilter is a parsed resource group list $filter: ARM's
// "tagName eq 'k'" (groups with tag k) or "tagName eq 'k' and tagValue eq
// 'v'" (with k = v). The zero value keeps every group.
type GroupFilter struct {
	TagName, TagValue string
	hasValue          bool
}

// ParseGroupFilter parses a resource group list $filter; anything but the
// tag forms above is a 400 InvalidFilter saying what, as ARM does not
// combine the tag filter with others.
func ParseGroupFilter(s string) (GroupFilter, error) {
	var f GroupFilter
	e, err := odata.Parse(s)
	var terms []odata.Expr
	if err == nil {
		terms, err = odata.Conjuncts(e)
	}
	if err != nil {
		return f, resource.InvalidFilter(s, odata.Reason(err))
	}
	hasName := false
	for _, t := range terms {
		c, ok := t.(*odata.Compare)
		if !ok || c.Op != odata.Eq {
			return f, resource.InvalidFilter(s, fmt.Sprintf("%s is not supported: a resource group list takes tagName eq '<name>', optionally with tagValue eq '<value>'", t))
		}
		switch {
		case strings.EqualFold(c.Name, "tagName") && !hasName:
			f.TagName, hasName = c.Value.Text, true
		case strings.EqualFold(c.Name, "tagValue") && !f.hasValue:
			f.TagValue, f.hasValue = c.Value.Text, true
		default:
			return f, resource.InvalidFilter(s, fmt.Sprintf("%s is not supported: a resource group list takes tagName eq '<name>', optionally with tagValue eq '<value>', each once", c.Name))
		}
	}
	if f.hasValue && !hasName {
		return f, resource.InvalidFilter(s, "tagValue needs tagName")
	}
	return f, nil
}

// Match reports whether g passes the filter: tag names compare
// case-insensitively, values exactly.
func (f GroupFilter) Match(g Group) bool {
	if f.TagName == "" {
		return true
	}
	for k, v := range g.Tags {
		if strings.EqualFold(k, f.TagName) && (!f.hasValue || v == f.TagValue) {
			return true
		}
	}
	return false
}
