package portal

import (
	"net/url"
	"strings"

	"coffer/internal/resource"
)

// PageURL is the portal page of an ARM resource ID ("" when the portal
// has none): vaults, policies, backup instances, jobs, disks and
// snapshots each have a page whose path spells the ID's names.
func PageURL(id string) string {
	x, err := resource.Parse(id)
	if err != nil || x.Subscription == "" || x.ResourceGroup == "" || len(x.Types) == 0 {
		return ""
	}
	seg := func(s ...string) string {
		out := make([]string, len(s))
		for i, v := range s {
			out[i] = url.PathEscape(v)
		}
		return "/" + strings.Join(out, "/")
	}
	sub, rg := x.Subscription, x.ResourceGroup
	switch strings.ToLower(x.Provider) {
	case "microsoft.dataprotection":
		if !strings.EqualFold(x.Types[0], "backupVaults") {
			return ""
		}
		vault := x.Names[0]
		if len(x.Types) == 1 {
			return seg("vaults", sub, rg, vault)
		}
		if len(x.Types) != 2 {
			return ""
		}
		switch strings.ToLower(x.Types[1]) {
		case "backuppolicies":
			return seg("policies", sub, rg, vault, x.Names[1])
		case "backupinstances":
			return seg("instances", sub, rg, vault, x.Names[1])
		case "backupjobs":
			return seg("jobs", sub, rg, vault, x.Names[1])
		}
	case "microsoft.compute":
		if len(x.Types) != 1 {
			return ""
		}
		switch strings.ToLower(x.Types[0]) {
		case "disks":
			return seg("disks", sub, rg, x.Names[0])
		case "snapshots":
			return seg("snapshots", sub, rg, x.Names[0])
		}
	}
	return ""
}
