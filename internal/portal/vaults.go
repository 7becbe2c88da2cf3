package portal

import (
	"net/http"
	"net/url"
	"strings"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
)

func (p *Portal) vaultRoutes() {
	p.page("GET /vaults", p.vaultList)
	p.page("GET /vaults/new", p.vaultNew)
	p.page("POST /vaults", p.vaultCreate)
	p.page("GET /vaults/{sub}/{rg}/{name}", p.vaultShow)
}

type vaultRow struct {
	dataprotection.VaultResource
	URL      string
	Group    string
	Security securityLevel
}

type vaultListPage struct {
	Vaults []vaultRow
	Create Control
}

func (p *Portal) vaultList(rq *Request) error {
	vs, err := rq.vaults()
	if err != nil {
		return err
	}
	page := vaultListPage{Create: rq.createControl(dataprotection.ActionVaultWrite)}
	for _, v := range vs {
		page.Vaults = append(page.Vaults, vaultRow{VaultResource: v, URL: PageURL(v.ID), Group: groupOf(v.ID), Security: vaultSecurity(v)})
	}
	return rq.Render("vaults", page)
}

// createControl decides a "create" command: allowed when the principal
// may perform action in at least one resource group, else refused with
// the decision at its first subscription.
func (rq *Request) createControl(action string) Control {
	gs, err := rq.groups(action)
	if err != nil {
		rq.decideEr = err
		return Control{}
	}
	if len(gs) > 0 {
		return Allow
	}
	return rq.canAtFirstScope(action)
}

type vaultForm struct {
	placeForm
	Name string
	CLI  *CLI
}

func (rq *Request) vaultForm(f vaultForm) (vaultForm, error) {
	if err := rq.place(&f.placeForm, dataprotection.ActionVaultWrite); err != nil {
		return f, err
	}
	f.CLI = Command("vault", "create").Field("resource-group", "group", f.groupName()).Field("name", "name", f.Name).
		Field("location", "location", f.Location)
	return f, nil
}

func (p *Portal) vaultNew(rq *Request) error {
	f, err := rq.vaultForm(vaultForm{placeForm: placeForm{Group: rq.R.URL.Query().Get("group")}})
	if err != nil {
		return err
	}
	return rq.Render("vault-new", f)
}

// vaultCreate creates a vault with a system-assigned identity, as `coffer
// vault create` does.
func (p *Portal) vaultCreate(rq *Request) error {
	f := vaultForm{Name: strings.TrimSpace(rq.R.PostFormValue("name")),
		placeForm: placeForm{Group: rq.R.PostFormValue("group"), Location: rq.R.PostFormValue("location")}}
	refuse := func(msg string) error {
		f, err := rq.vaultForm(f)
		if err != nil {
			return err
		}
		return rq.formError("vault-new", &f.placeForm, f, msg)
	}
	sub, rg, ok := f.groupID()
	if !ok {
		return refuse("Choose a resource group.")
	}
	id := dataprotection.VaultID(sub, rg, f.Name)
	if err := rq.Require(Need(dataprotection.ActionVaultWrite, id.String())); err != nil {
		return err
	}
	in := dataprotection.VaultInput{Location: f.Location, IdentityType: "SystemAssigned",
		StorageSettings: []dataprotection.StorageSetting{{DatastoreType: "VaultStore", Type: "LocallyRedundant"}}}
	v, _, err := p.cfg.DataProtection.PutVault(rq.Context(), rq.Caller(), id, in)
	if msg := userError(err); msg != "" {
		return refuse(msg)
	}
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(v.ID), "Backup vault "+v.Name+" created.")
}

// formError re-renders a form (page, whose place part is f) with the
// reason its input was refused.
func (rq *Request) formError(view string, f *placeForm, page any, msg string) error {
	f.Error = msg
	rq.Status(http.StatusBadRequest)
	return rq.Render(view, page)
}

type vaultPage struct {
	Vault        dataprotection.VaultResource
	Subscription string
	Group        string
	Security     securityLevel
	Instances    []instanceRow
	Policies     []dataprotection.BaseBackupPolicyResource
	Jobs         []jobRow
	JSON         string
	NewPolicy    Control
	Protect      Control
	PolicyURL    string
	ProtectURL   string
}

type instanceRow struct {
	dataprotection.InstanceResource
	URL string
}

func (p *Portal) vaultShow(rq *Request) error {
	id := dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("name"))
	if err := rq.Require(Need(dataprotection.ActionVaultRead, id.String())); err != nil {
		return err
	}
	ctx := rq.Context()
	dp := p.cfg.DataProtection
	v, err := dp.GetVault(ctx, id)
	if err != nil {
		return err
	}
	page := vaultPage{Vault: v, Subscription: id.Subscription, Group: id.ResourceGroup, Security: vaultSecurity(v),
		NewPolicy: rq.Can(dataprotection.ActionPolicyWrite, id.String()),
		Protect:   rq.Can(dataprotection.ActionInstanceWrite, id.String()),
		PolicyURL: "/policies/new?vault=" + url.QueryEscape(id.String()), ProtectURL: "/protect?vault=" + url.QueryEscape(id.String())}
	if rq.Can(dataprotection.ActionInstanceRead, id.String()).Allowed {
		bis, err := dp.ListInstances(ctx, id)
		if err != nil {
			return err
		}
		for _, b := range bis {
			page.Instances = append(page.Instances, instanceRow{InstanceResource: b, URL: PageURL(b.ID)})
		}
	}
	if rq.Can(dataprotection.ActionPolicyRead, id.String()).Allowed {
		if page.Policies, err = dp.ListPolicies(ctx, id); err != nil {
			return err
		}
	}
	js, err := dp.ListJobs(ctx, id, job.Filter{})
	if err != nil {
		return err
	}
	for i, j := range js {
		if i == 10 {
			break
		}
		page.Jobs = append(page.Jobs, newJobRow(j, p.cfg.Clock.Now()))
	}
	if page.JSON, err = jsonView(v); err != nil {
		return err
	}
	return rq.Render("vault", page)
}

func groupOf(id string) string {
	x, err := resource.Parse(id)
	if err != nil {
		return ""
	}
	return x.ResourceGroup
}

// securityLevel is a vault's security level by Azure's rules (Business
// Continuity Center's security posture): Excellent with immutability or
// always-on soft delete and multi-user authorization; Good with one of
// the first two; Fair with multi-user authorization alone; else Poor.
// Only what Coffer enforces counts, and it enforces none of the three
// yet, so the badge says so rather than trust a setting kept as sent.
type securityLevel struct {
	Level    string // Excellent, Good, Fair, Poor
	Class    string
	Features []securityFeature
}

type securityFeature struct {
	Name string
	On   bool
	Note string
}

func vaultSecurity(v dataprotection.VaultResource) securityLevel {
	feats := []securityFeature{
		{Name: "Soft delete", Note: "not enforced by Coffer: deleted recovery points are gone at once"},
		{Name: "Immutability", Note: "not enforced by Coffer"},
		{Name: "Multi-user authorization", Note: "not supported (no Resource Guard)"},
	}
	softOrImmutable := feats[0].On || feats[1].On
	mua := feats[2].On
	lvl := securityLevel{Features: feats}
	switch {
	case softOrImmutable && mua:
		lvl.Level = "Excellent"
	case softOrImmutable:
		lvl.Level = "Good"
	case mua:
		lvl.Level = "Fair"
	default:
		lvl.Level = "Poor"
	}
	lvl.Class = "level-" + strings.ToLower(lvl.Level)
	return lvl
}
