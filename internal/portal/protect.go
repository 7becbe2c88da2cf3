package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/resource"
)

// Configure protection: a vault, a policy, one or more disks (each
// becomes its own backup instance) and the snapshot resource group.
// Validate fills a Backup readiness column per disk; rows whose vault
// identity lacks roles can be selected and fixed with "Add missing roles"
// at a chosen scope, after which validation runs again; a principal that
// may not assign roles downloads the role assignment template instead.
// "Review and configure" creates the backup instances. Like the policy
// wizard, the page keeps its state in the form: every button posts every
// field.

func init() { extraRoutes = append(extraRoutes, (*Portal).protectRoutes) }

func (p *Portal) protectRoutes() {
	p.page("GET /protect", p.protectPage)
	p.page("POST /protect", p.protectPost)
}

// protectForm is the page's state.
type protectForm struct {
	Vault         string   // vault ID
	Policy        string   // policy ID
	Disks         []string // disk IDs
	SnapshotGroup string   // resource group ID
	Fix           []string // disk IDs whose missing roles to assign
	Level         string   // Resource, ResourceGroup or Subscription

	// What the page shows.
	Vaults         []vaultChoice
	VaultName      string
	VaultGroup     string
	Principal      string // the vault's identity
	Policies       []protectPolicy
	Candidates     []protectDisk
	Groups         []groupChoice
	Levels         []struct{ Value, Name string }
	Validated      bool
	AllReady       bool
	NeedRoles      bool // some row lacks roles
	AddRoles       Control
	Template       []string // the commands "Add missing roles" would run
	Configure      Control
	ConfigureHint  string
	Error          string
	Allowed        Control // may configure protection at all
	CLI            []*CLI
	ValidateAction Control
}

type protectPolicy struct {
	ID, Name string
	Summary  policySummary
}

// protectDisk is a disk the page offers, with its readiness once
// validated.
type protectDisk struct {
	ID, Name, Group, Location string
	Size                      int64
	Selected                  bool
	Readiness                 string // "", Success, Role assignment not done, Failed
	Message                   string
	Missing                   []string // "Disk Backup Reader on …"
	Fixable                   bool
	Fix                       bool
}

func readProtectForm(values url.Values) protectForm {
	f := protectForm{Vault: values.Get("vault"), Policy: values.Get("policy"), SnapshotGroup: values.Get("snapshot-group"),
		Level: values.Get("level")}
	for _, d := range values["disk"] {
		if d != "" && !slices.Contains(f.Disks, d) {
			f.Disks = append(f.Disks, d)
		}
	}
	f.Fix = values["fix"]
	f.Level, _ = roleLevel(f.Level)
	return f
}

func (p *Portal) protectPage(rq *Request) error {
	f := readProtectForm(rq.R.URL.Query())
	return p.renderProtect(rq, f, nil, http.StatusOK)
}

// protectPost runs the page's buttons: select (re-read the vault's
// policies and disks), validate, assign (Add missing roles, then
// validate), template (download the role assignment template) and
// configure.
func (p *Portal) protectPost(rq *Request) error {
	if err := rq.R.ParseForm(); err != nil {
		return resource.Errorf(resource.KindBadRequest, "InvalidForm", "The form could not be read: %v.", err)
	}
	f := readProtectForm(rq.R.PostForm)
	switch rq.R.PostFormValue("op") {
	case "validate":
		res, err := p.protectValidate(rq, &f)
		if err != nil {
			return err
		}
		return p.renderProtect(rq, f, res, http.StatusOK)
	case "assign":
		return p.protectAssign(rq, f)
	case "template":
		return p.protectTemplate(rq, f)
	case "configure":
		return p.protectConfigure(rq, f)
	}
	return p.renderProtect(rq, f, nil, http.StatusOK)
}

// readiness is the outcome of validating one disk.
type readiness struct {
	err     error
	missing *dataprotection.MissingRolesError
}

// protectTarget is what the form names, resolved: the vault, the policy
// and the snapshot group, or the reason the form is not complete.
type protectTarget struct {
	vault  dataprotection.VaultResource
	policy resource.ID
	snapRG resource.ID
}

func (p *Portal) protectResolve(rq *Request, f *protectForm) (protectTarget, string, error) {
	var t protectTarget
	vid, err := resource.Parse(f.Vault)
	if err != nil || !vid.IsType(dataprotection.VaultResourceType) {
		return t, "Choose a backup vault.", nil
	}
	if err := rq.Require(Need(dataprotection.ActionVaultRead, vid.String())); err != nil {
		return t, "", err
	}
	if t.vault, err = p.cfg.DataProtection.GetVault(rq.Context(), vid); err != nil {
		return t, "", err
	}
	t.policy, err = resource.Parse(f.Policy)
	if err != nil || !t.policy.IsType(dataprotection.PolicyResourceType) || !t.policy.Parent().Equal(vid) {
		return t, "Choose a backup policy of the vault.", nil
	}
	if len(f.Disks) == 0 {
		return t, "Select at least one disk.", nil
	}
	t.snapRG, err = resource.Parse(f.SnapshotGroup)
	if err != nil || t.snapRG.ResourceGroup == "" || t.snapRG.Provider != "" {
		return t, "Choose the snapshot resource group.", nil
	}
	return t, "", nil
}

// diskInstance is the backup instance that protects a disk, as `coffer
// protect` (and Azure's portal) builds it.
func diskInstance(diskID, location string, policy, snapRG resource.ID) dataprotection.Instance {
	id := resource.MustParse(diskID)
	return dataprotection.Instance{
		ObjectType:   dataprotection.ObjectTypeInstance,
		FriendlyName: id.Name(),
		DataSourceInfo: dataprotection.Datasource{ObjectType: dataprotection.ObjectTypeDatasource, DatasourceType: dataprotection.DatasourceTypeDisk,
			ResourceID: diskID, ResourceLocation: location, ResourceName: id.Name(), ResourceType: dataprotection.DatasourceTypeDisk, ResourceURI: diskID},
		PolicyInfo: dataprotection.PolicyInfo{PolicyID: policy.String(), PolicyParameters: &dataprotection.PolicyParameters{
			DataStoreParametersList: []dataprotection.DataStoreParameters{{ObjectType: dataprotection.ObjectTypeOpStoreParams,
				DataStoreType: dataprotection.DataStoreOperational, ResourceGroupID: snapRG.String()}}}},
	}
}

// protectValidate validates every selected disk (validateForBackup, as
// the API's route decides it) and returns each one's readiness.
func (p *Portal) protectValidate(rq *Request, f *protectForm) (map[string]readiness, error) {
	t, msg, err := p.protectResolve(rq, f)
	if err != nil || msg != "" {
		f.Error = msg
		return nil, err
	}
	if err := rq.Require(Need(dataprotection.ActionValidateForBackup, t.vault.ID)); err != nil {
		return nil, err
	}
	out := map[string]readiness{}
	for _, d := range f.Disks {
		if _, err := resource.Parse(d); err != nil {
			out[strings.ToLower(d)] = readiness{err: resource.Errorf(resource.KindBadRequest, "InvalidDisk", "%q is not a disk ID.", d)}
			continue
		}
		_, verr := p.cfg.DataProtection.ValidateForBackup(rq.Context(), resource.MustParse(t.vault.ID),
			diskInstance(d, t.vault.Location, t.policy, t.snapRG))
		if verr != nil && resource.AsError(verr) == nil {
			return nil, verr
		}
		r := readiness{err: verr}
		r.missing, _ = dataprotection.MissingRoles(verr)
		out[strings.ToLower(d)] = r
	}
	return out, nil
}

// protectGrants validates and collects the missing roles of the rows
// selected for fixing, widened to the chosen level.
func (p *Portal) protectGrants(rq *Request, f *protectForm) ([]roleGrant, map[string]readiness, error) {
	res, err := p.protectValidate(rq, f)
	if err != nil || res == nil {
		return nil, res, err
	}
	_, level := roleLevel(f.Level)
	var gs []roleGrant
	for _, d := range f.Disks {
		r := res[strings.ToLower(d)]
		if r.missing == nil || !slices.ContainsFunc(f.Fix, func(x string) bool { return strings.EqualFold(x, d) }) {
			continue
		}
		for _, g := range grantsFor(r.missing.PrincipalID, r.missing.Missing, level) {
			if !slices.ContainsFunc(gs, func(o roleGrant) bool { return o.RoleID == g.RoleID && strings.EqualFold(o.AssignAt, g.AssignAt) }) {
				gs = append(gs, g)
			}
		}
	}
	return gs, res, nil
}

// protectAssign is "Add missing roles": it assigns the roles the selected
// rows lack at the chosen scope, then validates again.
func (p *Portal) protectAssign(rq *Request, f protectForm) error {
	gs, res, err := p.protectGrants(rq, &f)
	if err != nil {
		return err
	}
	if len(gs) == 0 {
		if res != nil {
			f.Error = "Select the rows whose role assignments to add."
		}
		return p.renderProtect(rq, f, res, http.StatusBadRequest)
	}
	made, err := rq.assignRoles(gs)
	if err != nil {
		return err
	}
	res, err = p.protectValidate(rq, &f)
	if err != nil {
		return err
	}
	rq.Session.setFlash(fmt.Sprintf("Assigned %s to the vault's identity; validation ran again.", plural(len(made), "role")))
	return p.renderProtect(rq, f, res, http.StatusOK)
}

// protectTemplate downloads the role assignment template for the selected
// rows (all rows lacking roles when none is selected).
func (p *Portal) protectTemplate(rq *Request, f protectForm) error {
	if len(f.Fix) == 0 {
		f.Fix = f.Disks
	}
	gs, res, err := p.protectGrants(rq, &f)
	if err != nil {
		return err
	}
	if len(gs) == 0 {
		if f.Error == "" {
			f.Error = "The vault's identity lacks no role for the selected disks."
		}
		return p.renderProtect(rq, f, res, http.StatusBadRequest)
	}
	var names []string
	for _, d := range f.Disks {
		names = append(names, resource.MustParse(d).Name())
	}
	vid := resource.MustParse(f.Vault)
	script := roleTemplate(fmt.Sprintf("the backup vault %s's identity (%s) needs to back up the disks %s",
		vid.Name(), gs[0].PrincipalID, strings.Join(names, ", ")), gs)
	h := rq.W.Header()
	h.Set("Content-Type", "text/x-shellscript; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="coffer-role-assignments-`+vid.Name()+`.sh"`)
	_, err = rq.W.Write([]byte(script))
	return err
}

// protectConfigure is "Review and configure": one backup instance per
// disk, named as the Azure CLI names them. The domain validates each
// again; the first refusal stops and is shown.
func (p *Portal) protectConfigure(rq *Request, f protectForm) error {
	t, msg, err := p.protectResolve(rq, &f)
	if err != nil {
		return err
	}
	if msg != "" {
		f.Error = msg
		return p.renderProtect(rq, f, nil, http.StatusBadRequest)
	}
	vid := resource.MustParse(t.vault.ID)
	type planned struct {
		id   resource.ID
		disk string
	}
	var plan []planned
	for _, d := range f.Disks {
		name := resource.MustParse(d).Name()
		plan = append(plan, planned{id: dataprotection.InstanceID(vid, name+"-"+name+"-"+identity.NewGUID()), disk: d})
	}
	needs := make([]authorization.Need, len(plan))
	for i, pl := range plan {
		needs[i] = Need(dataprotection.ActionInstanceWrite, pl.id.String())
	}
	if err := rq.Require(needs...); err != nil {
		return err
	}
	var done []string
	for _, pl := range plan {
		in := dataprotection.InstanceInput{Properties: diskInstance(pl.disk, t.vault.Location, t.policy, t.snapRG)}
		if _, _, err := p.cfg.DataProtection.PutInstance(rq.Context(), rq.Caller(), pl.id, in); err != nil {
			return p.protectFailed(rq, f, pl.disk, done, err)
		}
		bi, err := p.cfg.DataProtection.ConfigureInstance(rq.Context(), pl.id)
		if err == nil && bi.Properties.CurrentProtectionState == dataprotection.StateConfiguringFailed {
			if e := bi.Properties.ProtectionErrorDetails; e != nil {
				err = resource.Errorf(resource.KindBadRequest, e.Code, "%s", e.Message)
			}
		}
		if err != nil {
			return p.protectFailed(rq, f, pl.disk, done, err)
		}
		done = append(done, resource.MustParse(pl.disk).Name())
	}
	return rq.Redirect("/instances?vault="+url.QueryEscape(t.vault.ID),
		fmt.Sprintf("Protection configured for %s: %s.", plural(len(done), "disk"), strings.Join(done, ", ")))
}

func (p *Portal) protectFailed(rq *Request, f protectForm, disk string, done []string, err error) error {
	e := resource.AsError(err)
	if e == nil || e.Kind == resource.KindInternal {
		return err
	}
	f.Error = fmt.Sprintf("Configuring protection of %s failed: %s", resource.MustParse(disk).Name(), e.Message)
	if len(done) > 0 {
		f.Error += fmt.Sprintf(" (protection is configured for %s)", strings.Join(done, ", "))
	}
	return p.renderProtect(rq, f, nil, http.StatusBadRequest)
}

// renderProtect fills what the page shows, with the readiness of each
// selected disk when res holds a validation.
func (p *Portal) renderProtect(rq *Request, f protectForm, res map[string]readiness, status int) error {
	ctx := rq.Context()
	all, err := rq.vaults()
	if err != nil {
		return err
	}
	writable, err := rq.vaultsFor(dataprotection.ActionInstanceWrite)
	if err != nil {
		return err
	}
	f.Allowed = rq.vaultControl(dataprotection.ActionInstanceWrite, all, writable)
	f.Vaults = vaultChoices(writable)
	if f.Vault == "" && len(writable) > 0 {
		f.Vault = writable[0].ID
	}
	var vault *dataprotection.VaultResource
	for i := range writable {
		if strings.EqualFold(writable[i].ID, f.Vault) {
			vault = &writable[i]
		}
	}
	f.Levels = nil
	for _, l := range roleLevels {
		f.Levels = append(f.Levels, struct{ Value, Name string }{l.Value, l.Name})
	}
	if vault != nil {
		vid := resource.MustParse(vault.ID)
		f.VaultName, f.VaultGroup = vid.Name(), vid.ResourceGroup
		if vault.Identity != nil {
			f.Principal = vault.Identity.PrincipalID
		}
		f.ValidateAction = rq.Can(dataprotection.ActionValidateForBackup, vault.ID)
		if rq.Can(dataprotection.ActionPolicyRead, vault.ID).Allowed {
			ps, err := p.cfg.DataProtection.ListPolicies(ctx, vid)
			if err != nil {
				return err
			}
			now := p.cfg.Clock.Now()
			for _, pol := range ps {
				f.Policies = append(f.Policies, protectPolicy{ID: pol.ID, Name: pol.Name, Summary: describePolicy(pol.Properties, now)})
			}
		}
		if !slices.ContainsFunc(f.Policies, func(x protectPolicy) bool { return strings.EqualFold(x.ID, f.Policy) }) {
			f.Policy = ""
			if len(f.Policies) > 0 {
				f.Policy = f.Policies[0].ID
			}
		}
		protected, err := p.protectedDisks(rq)
		if err != nil {
			return err
		}
		disks, err := rq.disks()
		if err != nil {
			return err
		}
		for _, d := range disks {
			selected := slices.ContainsFunc(f.Disks, func(x string) bool { return strings.EqualFold(x, d.ID) })
			if !selected && (protected[strings.ToLower(d.ID)] || !sameRegion(d.Location, vault.Location)) {
				continue
			}
			f.Candidates = append(f.Candidates, protectDisk{ID: d.ID, Name: d.Name, Group: groupOf(d.ID), Location: d.Location,
				Size: d.DiskSizeBytes, Selected: selected})
		}
	}
	f.Groups, err = rq.groups(dataprotection.ActionGroupRead)
	if err != nil {
		return err
	}
	f.applyReadiness(rq, res)
	f.CLI = nil
	vgroup, vname := f.VaultGroup, f.VaultName
	policyName := ""
	if pid, err := resource.Parse(f.Policy); err == nil {
		policyName = pid.Name()
	}
	disks := f.Disks
	if len(disks) == 0 {
		disks = []string{""}
	}
	for _, d := range disks {
		c := Command("protect").Flag("resource-group", vgroup).Flag("vault-name", vname).Flag("disk-id", d).
			Flag("snapshot-group", f.SnapshotGroup).Flag("policy", policyName)
		if f.NeedRoles {
			c.Bool("grant-missing-roles", f.AddRoles.Allowed).Bool("print-role-template", !f.AddRoles.Allowed).Flag("permissions-scope", f.Level)
		}
		f.CLI = append(f.CLI, c)
	}
	rq.Status(status)
	return rq.Render("protect", f)
}

// applyReadiness fills the Backup readiness column and what the page
// offers from it: Add missing roles (or the template) and Review and
// configure.
func (f *protectForm) applyReadiness(rq *Request, res map[string]readiness) {
	f.Validated = res != nil
	f.AllReady = res != nil && len(f.Disks) > 0
	var grants []roleGrant
	_, level := roleLevel(f.Level)
	for i := range f.Candidates {
		c := &f.Candidates[i]
		if !c.Selected || res == nil {
			continue
		}
		r, ok := res[strings.ToLower(c.ID)]
		switch {
		case !ok:
			f.AllReady = false
		case r.err == nil:
			c.Readiness = "Success"
		case r.missing != nil:
			f.AllReady, f.NeedRoles = false, true
			c.Readiness, c.Fixable = "Role assignment not done", true
			c.Fix = len(f.Fix) == 0 || slices.ContainsFunc(f.Fix, func(x string) bool { return strings.EqualFold(x, c.ID) })
			for _, m := range r.missing.Missing {
				c.Missing = append(c.Missing, m.RoleName()+" on "+m.Scope)
			}
			grants = append(grants, grantsFor(r.missing.PrincipalID, r.missing.Missing, level)...)
		default:
			f.AllReady = false
			c.Readiness = "Failed"
			if e := resource.AsError(r.err); e != nil {
				c.Message = e.Message
			} else {
				c.Message = r.err.Error()
			}
		}
	}
	if f.NeedRoles {
		f.AddRoles = rq.CanAll(grantNeeds(grants)...)
		for _, g := range grants {
			f.Template = append(f.Template, g.command().String())
		}
	}
	f.Configure = Allow
	if vid, err := resource.Parse(f.Vault); err == nil && f.Vault != "" {
		f.Configure = rq.Can(dataprotection.ActionInstanceWrite, vid.Child("backupInstances", "new").String())
	}
	if !f.AllReady {
		f.ConfigureHint = "Validate first: every selected disk must be ready."
	}
}

// protectedDisks are the disks a backup instance the principal can see
// already protects.
func (p *Portal) protectedDisks(rq *Request) (map[string]bool, error) {
	vs, err := rq.vaultsFor(dataprotection.ActionInstanceRead)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, v := range vs {
		bis, err := p.cfg.DataProtection.ListInstances(rq.Context(), resource.MustParse(v.ID))
		if err != nil {
			return nil, err
		}
		for _, b := range bis {
			out[strings.ToLower(b.Properties.DataSourceInfo.ResourceID)] = true
		}
	}
	return out, nil
}

func sameRegion(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return norm(a) == norm(b)
}

func resourceGroupID(g groupChoice) string { return resource.GroupID(g.Sub, g.Name).String() }
