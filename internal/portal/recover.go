package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

// Recover: choose a protected item, a recovery point and the restore
// parameters (target subscription, resource group and the new disk's
// name); Validate; "Grant permissions" when the vault's identity lacks
// Disk Restore Operator on the target group; Review + restore. The
// restore's page follows the job and, once it succeeded, offers to revoke
// the Disk Restore Operator assignment with one click, as Azure's docs
// advise.

func init() { extraRoutes = append(extraRoutes, (*Portal).recoverRoutes) }

func (p *Portal) recoverRoutes() {
	p.page("GET /recover", p.recoverPage)
	p.page("POST /recover", p.recoverPost)
	p.page("GET /recover/status/{sub}/{rg}/{vault}/{id}", p.recoverStatus)
	p.page("POST /recover/revoke", p.recoverRevoke)
}

// recoverForm is the page's state, carried in the form.
type recoverForm struct {
	Instance     string // backup instance ID
	Point        string // recovery point name
	Subscription string // target subscription ID
	Group        string // target resource group name
	DiskName     string

	// What the page shows.
	Instances     []recoverItem
	Item          *recoverItem
	Points        []rpRow
	Subscriptions []subscriptionChoice
	Groups        []groupChoice
	Validated     bool
	Valid         bool
	Message       string // the validation's refusal
	Recommended   []string
	Missing       bool // the refusal is Disk Restore Operator missing
	Grant         Control
	Grants        []string // the role assignment commands
	Restore       Control
	Validate      Control
	Error         string
	CLI           *CLI
}

type subscriptionChoice struct{ ID, Name string }

type recoverItem struct {
	ID, Name, Disk, Vault, VaultGroup, State string
	Location                                 string
}

func readRecoverForm(values url.Values) recoverForm {
	return recoverForm{Instance: values.Get("instance"), Point: values.Get("rp"), Subscription: values.Get("target-subscription"),
		Group: values.Get("target-group"), DiskName: strings.TrimSpace(values.Get("name"))}
}

func (p *Portal) recoverPage(rq *Request) error {
	return p.renderRecover(rq, readRecoverForm(rq.R.URL.Query()), nil, http.StatusOK)
}

// recoverPost runs the page's buttons: select (re-read the item's
// recovery points), validate, grant (Grant permissions, then validate)
// and restore.
func (p *Portal) recoverPost(rq *Request) error {
	if err := rq.R.ParseForm(); err != nil {
		return resource.Errorf(resource.KindBadRequest, "InvalidForm", "The form could not be read: %v.", err)
	}
	f := readRecoverForm(rq.R.PostForm)
	switch rq.R.PostFormValue("op") {
	case "validate":
		return p.recoverValidate(rq, f)
	case "grant":
		return p.recoverGrant(rq, f)
	case "restore":
		return p.recoverRestore(rq, f)
	}
	return p.renderRecover(rq, f, nil, http.StatusOK)
}

// recoverRequest is the restore the form describes, or the reason it is
// not complete.
func (f *recoverForm) request() (resource.ID, dataprotection.RestoreRequest, string) {
	id, err := resource.Parse(f.Instance)
	if err != nil || !id.IsType(dataprotection.InstanceType) {
		return id, dataprotection.RestoreRequest{}, "Choose a protected item."
	}
	switch {
	case f.Point == "":
		return id, dataprotection.RestoreRequest{}, "Choose a recovery point."
	case f.Subscription == "" || f.Group == "":
		return id, dataprotection.RestoreRequest{}, "Choose the target subscription and resource group."
	case f.DiskName == "":
		return id, dataprotection.RestoreRequest{}, "Name the restored disk."
	}
	target := resource.GroupID(f.Subscription, f.Group).Child(dataprotection.DatasourceTypeDisk, f.DiskName)
	return id, dataprotection.RestoreRequest{ObjectType: dataprotection.ObjectTypeRPRestore, RecoveryPointID: f.Point,
		SourceDataStoreType: dataprotection.DataStoreOperational,
		Target: &dataprotection.RestoreTarget{ObjectType: dataprotection.ObjectTypeRestoreTarget,
			RecoveryOption: dataprotection.RecoveryOptionFailIfExists, DiskID: target.String()}}, ""
}

// restoreValidation is the outcome of validating a restore.
type restoreValidation struct {
	err     error
	missing *dataprotection.MissingRolesError
}

func (p *Portal) validateRestore(rq *Request, f *recoverForm) (*restoreValidation, error) {
	id, req, msg := f.request()
	if msg != "" {
		f.Error = msg
		return nil, nil
	}
	if err := rq.Require(Need(dataprotection.ActionInstanceValidateRestore, id.String())); err != nil {
		return nil, err
	}
	_, verr := p.cfg.DataProtection.ValidateRestore(rq.Context(), id, req)
	if verr != nil && resource.AsError(verr) == nil {
		return nil, verr
	}
	v := &restoreValidation{err: verr}
	v.missing, _ = dataprotection.MissingRoles(verr)
	return v, nil
}

func (p *Portal) recoverValidate(rq *Request, f recoverForm) error {
	v, err := p.validateRestore(rq, &f)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if v == nil {
		status = http.StatusBadRequest
	}
	return p.renderRecover(rq, f, v, status)
}

// recoverGrant is "Grant permissions": it assigns the roles the vault's
// identity lacks on the target group, then validates again.
func (p *Portal) recoverGrant(rq *Request, f recoverForm) error {
	v, err := p.validateRestore(rq, &f)
	if err != nil || v == nil || v.missing == nil {
		if err == nil {
			return p.renderRecover(rq, f, v, http.StatusOK)
		}
		return err
	}
	gs := grantsFor(v.missing.PrincipalID, v.missing.Missing, rbac.LevelResource)
	if _, err := rq.assignRoles(gs); err != nil {
		return err
	}
	if v, err = p.validateRestore(rq, &f); err != nil {
		return err
	}
	rq.Session.setFlash("Granted " + gs[0].Role + " to the vault's identity on " + f.Group + "; validation ran again.")
	return p.renderRecover(rq, f, v, http.StatusOK)
}

// recoverRestore starts the restore (the domain validates it again) and
// answers with the restore's page.
func (p *Portal) recoverRestore(rq *Request, f recoverForm) error {
	id, req, msg := f.request()
	if msg != "" {
		f.Error = msg
		return p.renderRecover(rq, f, nil, http.StatusBadRequest)
	}
	if err := rq.Require(Need(dataprotection.ActionInstanceRestore, id.String())); err != nil {
		return err
	}
	jobID, err := p.cfg.DataProtection.Restore(rq.Context(), id, req)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindBadRequest {
		v := &restoreValidation{err: err}
		v.missing, _ = dataprotection.MissingRoles(err)
		return p.renderRecover(rq, f, v, http.StatusBadRequest)
	}
	if err != nil {
		return err
	}
	jid := resource.MustParse(jobID)
	return rq.Redirect("/recover/status/"+url.PathEscape(jid.Subscription)+"/"+url.PathEscape(jid.ResourceGroup)+"/"+
		url.PathEscape(jid.Names[0])+"/"+url.PathEscape(jid.Name()), "Restore of "+f.DiskName+" started.")
}

func (p *Portal) renderRecover(rq *Request, f recoverForm, v *restoreValidation, status int) error {
	ctx := rq.Context()
	vs, err := rq.vaultsFor(dataprotection.ActionInstanceRead)
	if err != nil {
		return err
	}
	for _, vault := range vs {
		bis, err := p.cfg.DataProtection.ListInstances(ctx, resource.MustParse(vault.ID))
		if err != nil {
			return err
		}
		ds, err := p.cfg.Authz.DecideEach(ctx, rq.Principal, dataprotection.ActionRecoveryPointRead, biIDs(bis))
		if err != nil {
			return err
		}
		for i, b := range bis {
			if !ds[i].Allowed {
				continue
			}
			name := b.Properties.FriendlyName
			if name == "" {
				name = b.Name
			}
			f.Instances = append(f.Instances, recoverItem{ID: b.ID, Name: name, Disk: b.Properties.DataSourceInfo.ResourceName,
				Vault: vault.Name, VaultGroup: groupOf(vault.ID), State: stateLabel(b.Properties.CurrentProtectionState), Location: vault.Location})
		}
	}
	for i := range f.Instances {
		if strings.EqualFold(f.Instances[i].ID, f.Instance) {
			f.Item = &f.Instances[i]
		}
	}
	if f.Item == nil && f.Instance == "" && len(f.Instances) > 0 {
		f.Item = &f.Instances[0]
	}
	if f.Item != nil {
		f.Instance = f.Item.ID
		id := resource.MustParse(f.Item.ID)
		rps, err := p.cfg.DataProtection.ListRecoveryPoints(ctx, id, dataprotection.RPFilter{})
		if err != nil {
			return err
		}
		found := false
		for i := len(rps) - 1; i >= 0; i-- {
			rp := rps[i]
			f.Points = append(f.Points, rpRow{Name: rp.Name, Tag: rp.Properties.RetentionTagName, Time: rp.Time, Expiry: rp.Expiry, Size: rp.SizeBytes})
			found = found || rp.Name == f.Point
		}
		if !found && len(f.Points) > 0 {
			f.Point = f.Points[0].Name
		}
		if f.DiskName == "" {
			f.DiskName = f.Item.Disk + "-restored-" + p.cfg.Clock.Now().UTC().Format("20060102-1504")
		}
		f.Validate = rq.Can(dataprotection.ActionInstanceValidateRestore, id.String())
		f.Restore = rq.CanAll(Need(dataprotection.ActionInstanceValidateRestore, id.String()), Need(dataprotection.ActionInstanceRestore, id.String()))
	}
	subs, err := rq.subscriptions()
	if err != nil {
		return err
	}
	for _, s := range subs {
		f.Subscriptions = append(f.Subscriptions, subscriptionChoice{ID: s.ID, Name: s.DisplayName})
	}
	if f.Subscription == "" && len(subs) > 0 {
		f.Subscription = subs[0].ID
	}
	groups, err := rq.groups(dataprotection.ActionGroupRead)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if strings.EqualFold(g.Sub, f.Subscription) {
			f.Groups = append(f.Groups, g)
		}
	}
	if f.Group == "" && len(f.Groups) > 0 {
		f.Group = f.Groups[0].Name
	}
	if v != nil {
		f.Validated = true
		f.Valid = v.err == nil
		if e := resource.AsError(v.err); e != nil {
			f.Message = e.Message
			f.Recommended = recommendedActions(e)
		}
		if v.missing != nil {
			f.Missing = true
			gs := grantsFor(v.missing.PrincipalID, v.missing.Missing, rbac.LevelResource)
			f.Grant = rq.CanAll(grantNeeds(gs)...)
			for _, g := range gs {
				f.Grants = append(f.Grants, g.command().String())
			}
		}
	}
	if f.Item != nil {
		vid := resource.MustParse(f.Item.ID).Parent()
		f.CLI = Command("restore").Flag("resource-group", vid.ResourceGroup).Flag("vault-name", vid.Name()).
			Flag("instance", resource.MustParse(f.Item.ID).Name()).Flag("rp", f.Point).Flag("target-subscription", f.Subscription).
			Flag("target-group", f.Group).Field("target-disk", "name", f.DiskName)
	}
	rq.Status(status)
	return rq.Render("recover", f)
}

// recommendedActions are the recommended actions of a domain error (its
// UserFacingError additional info).
func recommendedActions(e *resource.Error) []string {
	for _, ai := range e.AdditionalInfo {
		if u, ok := ai.Info.(job.UserFacingError); ok {
			return u.RecommendedAction
		}
	}
	return nil
}

// --- the restore's page ---

type recoverStatusPage struct {
	Job                job.Resource
	Row                jobRow
	JobURL             string
	Running, Succeeded bool
	Failed             bool
	Disk, DiskURL      string
	TargetGroup        string
	Assignments        []revokeOffer
	Principal          string
}

// revokeOffer is a Disk Restore Operator assignment of the vault's
// identity that covers the target group, with the one-click revoke.
type revokeOffer struct {
	Scope, Name string
	Revoke      Control
}

func (p *Portal) recoverStatus(rq *Request) error {
	vid := dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("vault"))
	if err := rq.Require(Need(dataprotection.ActionJobRead, vid.String())); err != nil {
		return err
	}
	ctx := rq.Context()
	j, err := p.cfg.DataProtection.GetJob(ctx, vid, rq.R.PathValue("id"))
	if err != nil {
		return err
	}
	w := j.Properties
	if w.Operation != job.OpRestore {
		return resource.Errorf(resource.KindNotFound, "JobNotFound", "The job %s is not a restore.", j.Name)
	}
	page := recoverStatusPage{Job: j, Row: newJobRow(j, p.cfg.Clock.Now()), JobURL: PageURL(j.ID), Running: w.Status == string(job.InProgress),
		Succeeded: w.Status == string(job.Completed), Failed: w.Status == string(job.Failed)}
	if ei := w.ExtendedInfo; ei != nil && ei.RecoveryDestination != "" {
		page.Disk, page.DiskURL = nameOfID(ei.RecoveryDestination), PageURL(ei.RecoveryDestination)
		page.TargetGroup = resource.MustParse(ei.RecoveryDestination).GroupScope().String()
	}
	if page.Running {
		rq.Refresh(2)
	}
	if page.Succeeded && page.TargetGroup != "" {
		if page.Assignments, page.Principal, err = p.restoreOperatorAssignments(rq, vid, page.TargetGroup); err != nil {
			return err
		}
	}
	return rq.Render("recover-status", page)
}

// restoreOperatorAssignments are the vault identity's Disk Restore
// Operator assignments that cover group, each with the decision on
// revoking it.
func (p *Portal) restoreOperatorAssignments(rq *Request, vaultID resource.ID, group string) ([]revokeOffer, string, error) {
	v, err := p.cfg.DataProtection.GetVault(rq.Context(), vaultID)
	if err != nil || v.Identity == nil || v.Identity.PrincipalID == "" {
		return nil, "", err
	}
	principal := v.Identity.PrincipalID
	_, as, err := p.cfg.Authz.ListAssignments(rq.Context(), group, rbac.AssignmentFilter{AtScope: true, PrincipalID: principal})
	if err != nil {
		return nil, "", err
	}
	var out []revokeOffer
	for _, a := range as {
		if rbac.SameRoleDefinition(a.RoleDefinitionID, rbac.RoleDiskRestoreOperator) {
			out = append(out, revokeOffer{Scope: a.Scope, Name: a.Name, Revoke: rq.Can(rbac.ActionRoleAssignmentsDelete, a.Scope)})
		}
	}
	return out, principal, nil
}

// recoverRevoke revokes one role assignment, as the API's DELETE of it
// does, and returns to the restore's page.
func (p *Portal) recoverRevoke(rq *Request) error {
	scope, name := rq.R.PostFormValue("scope"), rq.R.PostFormValue("assignment")
	if err := rq.Require(Need(rbac.ActionRoleAssignmentsDelete, scope)); err != nil {
		return err
	}
	a, existed, err := p.cfg.Authz.DeleteAssignment(rq.Context(), scope, name)
	if err != nil {
		return err
	}
	back := localPath(rq.R.PostFormValue("back"))
	if back == "" {
		back = "/recover"
	}
	if !existed {
		return rq.Redirect(back, "The role assignment was already gone.")
	}
	role := a.RoleDefinitionID
	if d, ok := rbac.BuiltInRoleByID(a.RoleDefinitionID); ok {
		role = d.RoleName
	}
	return rq.Redirect(back, fmt.Sprintf("Revoked %s from the vault's identity at %s.", role, a.Scope))
}
