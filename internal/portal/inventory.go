package portal

import (
	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/resource"
	"coffer/internal/tenant"
)

// The lists every page draws from: what the signed-in principal may read
// across the subscriptions it sees, each item decided at its own scope.

// vaults returns the vaults the principal may read.
func (rq *Request) vaults() ([]dataprotection.VaultResource, error) {
	subs, err := rq.subscriptions()
	if err != nil {
		return nil, err
	}
	var all []dataprotection.VaultResource
	for _, s := range subs {
		vs, err := rq.p.cfg.DataProtection.ListVaults(rq.Context(), resource.SubscriptionID(s.ID))
		if err != nil {
			return nil, err
		}
		all = append(all, vs...)
	}
	return authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, dataprotection.ActionVaultRead, all,
		func(v dataprotection.VaultResource) string { return v.ID })
}

// disks returns the disks the principal may read.
func (rq *Request) disks() ([]compute.Disk, error) {
	subs, err := rq.subscriptions()
	if err != nil {
		return nil, err
	}
	var all []compute.Disk
	for _, s := range subs {
		ds, err := rq.p.cfg.Compute.ListDisks(rq.Context(), resource.SubscriptionID(s.ID))
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
	}
	return authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, compute.ActionDiskRead, all,
		func(d compute.Disk) string { return d.ID })
}

// snapshots returns the snapshots the principal may read.
func (rq *Request) snapshots() ([]compute.Snapshot, error) {
	subs, err := rq.subscriptions()
	if err != nil {
		return nil, err
	}
	var all []compute.Snapshot
	for _, s := range subs {
		ss, err := rq.p.cfg.Compute.ListSnapshots(rq.Context(), resource.SubscriptionID(s.ID))
		if err != nil {
			return nil, err
		}
		all = append(all, ss...)
	}
	return authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, compute.ActionSnapshotRead, all,
		func(s compute.Snapshot) string { return s.ID })
}

// groupChoice is a resource group a form offers.
type groupChoice struct {
	Sub, Name, Location string
	Value               string // sub/name, as the form posts it
}

// groups returns the resource groups in which the principal may perform
// action (at the group's scope): the groups a create form offers.
func (rq *Request) groups(action string) ([]groupChoice, error) {
	subs, err := rq.subscriptions()
	if err != nil {
		return nil, err
	}
	var all []tenant.Group
	for _, s := range subs {
		gs, err := rq.p.cfg.Tenant.Groups(rq.Context(), s.ID, tenant.GroupFilter{})
		if err != nil {
			return nil, err
		}
		all = append(all, gs...)
	}
	ok, err := authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, action, all,
		func(g tenant.Group) string { return g.ID })
	if err != nil {
		return nil, err
	}
	out := make([]groupChoice, 0, len(ok))
	for _, g := range ok {
		id, err := resource.Parse(g.ID)
		if err != nil {
			continue
		}
		out = append(out, groupChoice{Sub: id.Subscription, Name: g.Name, Location: g.Location, Value: id.Subscription + "/" + g.Name})
	}
	return out, nil
}

// firstScope is the scope a "create" control is decided at when the
// principal may create in no group: its first subscription.
func (rq *Request) firstScope() string {
	subs, err := rq.subscriptions()
	if err != nil || len(subs) == 0 {
		return "/subscriptions"
	}
	return resource.SubscriptionID(subs[0].ID).String()
}
