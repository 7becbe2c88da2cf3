package portal

import (
	"context"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/resource"
	"coffer/internal/tenant"
)

// The lists every page draws from: what the signed-in principal may read
// across the subscriptions it sees, each item decided at its own scope.

// inSubscriptions lists with list in every subscription the principal
// sees and keeps the items it may perform action on (at their IDs).
func inSubscriptions[T any](rq *Request, action string, list func(context.Context, resource.ID) ([]T, error), id func(T) string) ([]T, error) {
	subs, err := rq.subscriptions()
	if err != nil {
		return nil, err
	}
	var all []T
	for _, s := range subs {
		items, err := list(rq.Context(), resource.SubscriptionID(s.ID))
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
	}
	return authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, action, all, id)
}

// inVaults lists with list in every vault on which the principal may
// perform action (the children's read action, decided at the vault).
func inVaults[T any](rq *Request, action string, list func(context.Context, resource.ID) ([]T, error)) ([]T, error) {
	vs, err := rq.vaults()
	if err != nil {
		return nil, err
	}
	vs, err = authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, action, vs,
		func(v dataprotection.VaultResource) string { return v.ID })
	if err != nil {
		return nil, err
	}
	var out []T
	for _, v := range vs {
		id, err := resource.Parse(v.ID)
		if err != nil {
			return nil, err
		}
		items, err := list(rq.Context(), id)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

// vaults returns the vaults the principal may read.
func (rq *Request) vaults() ([]dataprotection.VaultResource, error) {
	return inSubscriptions(rq, dataprotection.ActionVaultRead, rq.p.cfg.DataProtection.ListVaults,
		func(v dataprotection.VaultResource) string { return v.ID })
}

// disks returns the disks the principal may read.
func (rq *Request) disks() ([]compute.Disk, error) {
	return inSubscriptions(rq, compute.ActionDiskRead, rq.p.cfg.Compute.ListDisks, func(d compute.Disk) string { return d.ID })
}

// snapshots returns the snapshots the principal may read.
func (rq *Request) snapshots() ([]compute.Snapshot, error) {
	return inSubscriptions(rq, compute.ActionSnapshotRead, rq.p.cfg.Compute.ListSnapshots, func(s compute.Snapshot) string { return s.ID })
}

// groupChoice is a resource group a form offers.
type groupChoice struct {
	Sub, Name, Location string
	Value               string // sub/name, as the form posts it
}

// groups returns the resource groups in which the principal may perform
// action (at the group's scope): the groups a create form offers.
func (rq *Request) groups(action string) ([]groupChoice, error) {
	list := func(ctx context.Context, sub resource.ID) ([]tenant.Group, error) {
		return rq.p.cfg.Tenant.Groups(ctx, sub.Subscription, tenant.GroupFilter{})
	}
	gs, err := inSubscriptions(rq, action, list, func(g tenant.Group) string { return g.ID })
	if err != nil {
		return nil, err
	}
	out := make([]groupChoice, 0, len(gs))
	for _, g := range gs {
		id, err := resource.Parse(g.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, groupChoice{Sub: id.Subscription, Name: g.Name, Location: g.Location, Value: id.Subscription + "/" + g.Name})
	}
	return out, nil
}

// canAtFirstScope decides action at the first subscription the principal
// sees: the reason a create command is refused when no group allows it.
// A principal that sees no subscription is refused without a decision
// (there is no scope to decide at).
func (rq *Request) canAtFirstScope(action string) Control {
	subs, err := rq.subscriptions()
	if err != nil {
		if rq.decideEr == nil {
			rq.decideEr = err
		}
		return Control{Reason: "could not be decided"}
	}
	if len(subs) == 0 {
		return Control{Reason: "You hold no role in any subscription."}
	}
	return rq.Can(action, resource.SubscriptionID(subs[0].ID).String())
}

// placeForm is the part every create form shares: where the new resource
// goes (a resource group the principal may create it in, a region) and
// whether it may create one at all.
type placeForm struct {
	Group, Location string
	Groups          []groupChoice
	Regions         []string
	Create          Control
	Error           string
}

// place fills f for a resource whose creation needs action.
func (rq *Request) place(f *placeForm, action string) error {
	gs, err := rq.groups(action)
	if err != nil {
		return err
	}
	f.Groups, f.Regions = gs, rq.p.cfg.Tenant.Regions
	f.Create = Allow
	if len(gs) == 0 {
		f.Create = rq.canAtFirstScope(action)
	}
	if f.Group == "" && len(gs) > 0 {
		f.Group = gs[0].Value
	}
	if f.Location == "" && len(f.Regions) > 0 {
		f.Location = f.Regions[0]
	}
	return nil
}

// groupName is the name of the form's group ("" when none was chosen).
func (f placeForm) groupName() string {
	_, rg, _ := strings.Cut(f.Group, "/")
	return rg
}

// groupID is the form's group (sub/name), and whether one was chosen.
func (f placeForm) groupID() (sub, rg string, ok bool) {
	sub, rg, _ = strings.Cut(f.Group, "/")
	return sub, rg, sub != "" && rg != ""
}
