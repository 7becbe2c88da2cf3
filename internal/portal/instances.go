package portal

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
)

// Backup instances: the list (filters by vault, protection status and disk
// tags; selectable columns) and an instance's page (essentials, the latest
// recovery point, the job summary of the last seven days, the recovery
// points of a chosen time range, Backup now with the choice of retention
// rule, and stop / suspend / resume / delete protection with a reason and,
// for deletion, the instance's name typed as confirmation).

func init() { extraRoutes = append(extraRoutes, (*Portal).instanceRoutes) }

func (p *Portal) instanceRoutes() {
	p.page("GET /instances", p.instanceList)
	p.page("GET /instances/{sub}/{rg}/{vault}/{name}", p.instanceShow)
	p.page("POST /instances/{sub}/{rg}/{vault}/{name}/backup", p.instanceBackup)
	p.page("POST /instances/{sub}/{rg}/{vault}/{name}/protection", p.instanceProtection)
	p.page("POST /instances/{sub}/{rg}/{vault}/{name}/delete", p.instanceDelete)
	p.page("POST /instances/{sub}/{rg}/{vault}/{name}/verify", p.instanceVerify)
}

// protectionStates are the protection states the status filter offers, in
// words.
var protectionStates = []struct{ Value, Label string }{
	{dataprotection.StateConfigured, "Protected"},
	{dataprotection.StateSuspended, "Backups suspended"},
	{dataprotection.StateStopped, "Protection stopped"},
	{dataprotection.StateProtectionError, "Protection error"},
	{dataprotection.StateConfiguring, "Configuring"},
	{dataprotection.StateConfiguringFailed, "Configuration failed"},
}

func stateLabel(state string) string {
	for _, s := range protectionStates {
		if s.Value == state {
			return s.Label
		}
	}
	return state
}

// instanceColumns are the list's optional columns; the name is always
// shown.
var instanceColumns = []struct {
	Key, Label string
	Default    bool
}{
	{"datasource", "Datasource", true},
	{"group", "Resource group", true},
	{"vault", "Vault", true},
	{"policy", "Policy", true},
	{"status", "Protection status", true},
	{"latest", "Latest recovery point", true},
	{"snapshots", "Snapshot resource group", false},
	{"tags", "Disk tags", false},
}

type biListRow struct {
	Name, URL, Disk, DiskURL, Group, Vault, VaultURL string
	Policy, PolicyURL, State, StateLabel, SnapshotRG string
	Latest                                           time.Time
	Tags                                             []string
}

type biListPage struct {
	Rows     []biListRow
	Vaults   []vaultChoice
	States   []struct{ Value, Label string }
	Columns  []biColumn
	Vault    string
	State    string
	Tag      string
	Show     map[string]bool
	Protect  Control
	Total    int
	CLI      *CLI
	TagError string
}

type biColumn struct {
	Key, Label string
	On         bool
}

// tagFilter matches disk tags: "key" (present) or "key=value"; the key is
// matched case-insensitively, as ARM matches tag names.
func tagFilter(f string, tags map[string]string) bool {
	k, v, withValue := strings.Cut(f, "=")
	k = strings.TrimSpace(k)
	for tk, tv := range tags {
		if strings.EqualFold(tk, k) && (!withValue || tv == strings.TrimSpace(v)) {
			return true
		}
	}
	return false
}

func (p *Portal) instanceList(rq *Request) error {
	q := rq.R.URL.Query()
	page := biListPage{Vault: q.Get("vault"), State: q.Get("status"), Tag: strings.TrimSpace(q.Get("tag")),
		States: protectionStates, Show: map[string]bool{}}
	chosen := q["col"]
	for _, c := range instanceColumns {
		on := c.Default
		if q.Has("cols") {
			on = slices.Contains(chosen, c.Key)
		}
		page.Show[c.Key] = on
		page.Columns = append(page.Columns, biColumn{Key: c.Key, Label: c.Label, On: on})
	}
	all, err := rq.vaults()
	if err != nil {
		return err
	}
	writable, err := rq.vaultsFor(dataprotection.ActionInstanceWrite)
	if err != nil {
		return err
	}
	page.Protect = rq.vaultControl(dataprotection.ActionInstanceWrite, all, writable)
	page.Vaults = vaultChoices(all)
	readable, err := rq.vaultsFor(dataprotection.ActionInstanceRead)
	if err != nil {
		return err
	}
	disks, err := rq.disks()
	if err != nil {
		return err
	}
	tags := map[string]map[string]string{}
	for _, d := range disks {
		tags[strings.ToLower(d.ID)] = d.Tags
	}
	ctx := rq.Context()
	for _, v := range readable {
		if page.Vault != "" && !strings.EqualFold(page.Vault, v.ID) {
			continue
		}
		vid := resource.MustParse(v.ID)
		bis, err := p.cfg.DataProtection.ListInstances(ctx, vid)
		if err != nil {
			return err
		}
		rpOK := map[string]bool{}
		if page.Show["latest"] {
			ds, err := p.cfg.Authz.DecideEach(ctx, rq.Principal, dataprotection.ActionRecoveryPointRead, biIDs(bis))
			if err != nil {
				return err
			}
			for i, d := range ds {
				rpOK[bis[i].ID] = d.Allowed
			}
		}
		for _, b := range bis {
			pr := b.Properties
			state := pr.CurrentProtectionState
			if page.State != "" && state != page.State {
				continue
			}
			dt := tags[strings.ToLower(pr.DataSourceInfo.ResourceID)]
			if page.Tag != "" && !tagFilter(page.Tag, dt) {
				continue
			}
			row := biListRow{Name: pr.FriendlyName, URL: PageURL(b.ID), Disk: pr.DataSourceInfo.ResourceName,
				DiskURL: PageURL(pr.DataSourceInfo.ResourceID), Group: groupOf(pr.DataSourceInfo.ResourceID),
				Vault: v.Name, VaultURL: PageURL(v.ID), Policy: nameOfID(pr.PolicyInfo.PolicyID), PolicyURL: PageURL(pr.PolicyInfo.PolicyID),
				State: state, StateLabel: stateLabel(state), SnapshotRG: groupOf(snapshotGroupOf(pr))}
			if row.Name == "" {
				row.Name = b.Name
			}
			for k, v := range dt {
				row.Tags = append(row.Tags, k+"="+v)
			}
			slices.Sort(row.Tags)
			if rpOK[b.ID] {
				rps, err := p.cfg.DataProtection.ListRecoveryPoints(ctx, resource.MustParse(b.ID), dataprotection.RPFilter{})
				if err != nil {
					return err
				}
				if len(rps) > 0 {
					row.Latest = rps[len(rps)-1].Time
				}
			}
			page.Rows = append(page.Rows, row)
		}
	}
	page.Total = len(page.Rows)
	if vid, err := resource.Parse(page.Vault); err == nil && page.Vault != "" {
		page.CLI = Command("instance", "list").Flag("resource-group", vid.ResourceGroup).Flag("vault-name", vid.Name())
	}
	return rq.Render("instances", page)
}

func biIDs(bis []dataprotection.InstanceResource) []string {
	out := make([]string, len(bis))
	for i, b := range bis {
		out[i] = b.ID
	}
	return out
}

func nameOfID(id string) string {
	x, err := resource.Parse(id)
	if err != nil {
		return id
	}
	return x.Name()
}

// snapshotGroupOf is the snapshot resource group an instance's policy
// parameters name.
func snapshotGroupOf(in dataprotection.Instance) string {
	if pp := in.PolicyInfo.PolicyParameters; pp != nil {
		for _, d := range pp.DataStoreParametersList {
			if d.ResourceGroupID != "" {
				return d.ResourceGroupID
			}
		}
	}
	return ""
}

// --- an instance's page ---

type biPage struct {
	Instance                      dataprotection.InstanceResource
	Name, State, StateLabel       string
	Disk, DiskURL, DiskGroup      string
	SnapshotRG                    string
	Vault, VaultURL, Group        string
	Policy, PolicyURL             string
	Error                         *job.UserFacingError
	Latest                        *rpRow
	Points                        []rpRow
	From, To                      string // the recovery points' range, dates
	RPError                       string
	CanReadPoints                 Control
	Summary                       []statusCount
	JobsURL                       string
	Rules                         []string // the policy's retention rules, for Backup now
	Backup                        Control
	BackupHint                    string
	Stop, Suspend, Resume, Delete Control
	CanStop, CanSuspend           bool
	CanResume                     bool
	Reasons                       []string
	RecoverURL                    string
	Recover                       Control
	JSON                          string
	BackupCLI, DeleteCLI, StopCLI *CLI
	ActionError                   string
	Change                        *changeNote
	PointsJSON                    string // the listed points' ARM bodies
}

// changeNote is the instance's last protection change as the page says it.
type changeNote struct {
	dataprotection.ChangeNote
	Label string
}

// changeLabels name the protection changes.
var changeLabels = map[string]string{
	string(dataprotection.StopProtection): "Protection stopped", string(dataprotection.SuspendBackups): "Backups suspended",
	string(dataprotection.ResumeProtection): "Protection resumed", string(dataprotection.ResumeBackups): "Backups resumed",
	dataprotection.ChangeDelete: "Deletion requested",
}

type rpRow struct {
	Name, Tag, Type, State, RestoreURL string
	Time, Expiry                       time.Time
	Size                               int64
	// Verify is the verify state as the page says it ("Verified",
	// "Verify failed", "Not verified"), VerifyState Coffer's value,
	// VerifyNote what the last verification found, and when.
	Verify, VerifyState, VerifyNote string
	VerifyButton                    post
}

// verifyLabels name the verify states.
var verifyLabels = map[string]string{dataprotection.VerifyVerified: "Verified", dataprotection.VerifyFailed: "Verify failed",
	dataprotection.VerifyNotVerified: "Not verified"}

// deleteReasons are Azure's reasons for stopping or deleting protection.
var deleteReasons = []string{"Decommissioned", "Moved to another vault", "Recreated under another name", "Testing", "Others"}

func instanceIDOf(rq *Request) resource.ID {
	return dataprotection.InstanceID(dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("vault")),
		rq.R.PathValue("name"))
}

func (p *Portal) instanceShow(rq *Request) error {
	return p.renderInstance(rq, instanceIDOf(rq), "")
}

// parseDay reads a date input (YYYY-MM-DD) as the start of that day, UTC.
func parseDay(s string) (time.Time, bool) {
	t, err := time.Parse("2006-01-02", s)
	return t, err == nil
}

func (p *Portal) renderInstance(rq *Request, id resource.ID, actionErr string) error {
	if err := rq.Require(Need(dataprotection.ActionInstanceRead, id.String())); err != nil {
		return err
	}
	ctx := rq.Context()
	dp := p.cfg.DataProtection
	b, err := dp.GetInstance(ctx, id)
	if err != nil {
		return err
	}
	pr := b.Properties
	vault := id.Parent()
	now := p.cfg.Clock.Now().UTC()
	page := biPage{Instance: b, Name: pr.FriendlyName, State: pr.CurrentProtectionState, StateLabel: stateLabel(pr.CurrentProtectionState),
		Disk: pr.DataSourceInfo.ResourceName, DiskURL: PageURL(pr.DataSourceInfo.ResourceID), DiskGroup: groupOf(pr.DataSourceInfo.ResourceID),
		SnapshotRG: snapshotGroupOf(pr), Vault: vault.Name(), VaultURL: PageURL(vault.String()), Group: vault.ResourceGroup,
		Policy: nameOfID(pr.PolicyInfo.PolicyID), PolicyURL: PageURL(pr.PolicyInfo.PolicyID), Error: pr.ProtectionErrorDetails,
		Reasons: deleteReasons, ActionError: actionErr,
		RecoverURL: "/recover?instance=" + url.QueryEscape(b.ID)}
	if page.Name == "" {
		page.Name = b.Name
	}
	if c := b.LastChange; c != nil {
		page.Change = &changeNote{ChangeNote: *c, Label: cmp.Or(changeLabels[c.Change], c.Change)}
	}
	if page.Error == nil && pr.ProtectionStatus != nil {
		page.Error = pr.ProtectionStatus.ErrorDetails
	}

	// Recovery points in the chosen range (default: the last 30 days).
	to, from := now, now.AddDate(0, 0, -30)
	q := rq.R.URL.Query()
	if t, ok := parseDay(q.Get("from")); ok {
		from = t
	} else if q.Get("from") != "" {
		page.RPError = "The start date must be a date such as 2024-05-01."
	}
	if t, ok := parseDay(q.Get("to")); ok {
		to = t.Add(24*time.Hour - time.Nanosecond)
	} else if q.Get("to") != "" {
		page.RPError = "The end date must be a date such as 2024-05-31."
	}
	page.From, page.To = from.Format("2006-01-02"), to.Format("2006-01-02")
	page.CanReadPoints = rq.Can(dataprotection.ActionRecoveryPointRead, id.String())
	page.Recover = rq.CanAll(Need(dataprotection.ActionInstanceValidateRestore, id.String()), Need(dataprotection.ActionInstanceRestore, id.String()))
	if page.CanReadPoints.Allowed {
		verify := rq.Can(dataprotection.ActionRecoveryPointVerify, id.String())
		all, err := dp.ListRecoveryPoints(ctx, id, dataprotection.RPFilter{})
		if err != nil {
			return err
		}
		shown := []dataprotection.RecoveryPointResource{}
		for i := len(all) - 1; i >= 0; i-- {
			rp := all[i]
			row := rpRow{Name: rp.Name, Tag: rp.Properties.RetentionTagName, Type: rp.Properties.RecoveryPointType,
				State: rp.Properties.RecoveryPointState, Time: rp.Time, Expiry: rp.Expiry, Size: rp.SizeBytes,
				RestoreURL: page.RecoverURL + "&rp=" + url.QueryEscape(rp.Name), VerifyState: dataprotection.VerifyNotVerified}
			if v := rp.Properties.CofferVerification; v != nil {
				row.VerifyState, row.VerifyNote = v.State, v.Message
				if t, err := time.Parse(time.RFC3339Nano, v.LastVerifiedTime); err == nil {
					row.VerifyNote = t.UTC().Format("2006-01-02 15:04 UTC") + ": " + v.Message
				}
			}
			row.Verify = cmp.Or(verifyLabels[row.VerifyState], row.VerifyState)
			row.VerifyButton = postButton("Verify", PageURL(id.String())+"/verify", verify, rq.Session.CSRF)
			row.VerifyButton.Fields = map[string]string{"rp": rp.Name}
			if page.Latest == nil {
				latest := row
				page.Latest = &latest
			}
			if !rp.Time.Before(from) && !rp.Time.After(to) {
				page.Points = append(page.Points, row)
				shown = append(shown, rp)
			}
		}
		if page.PointsJSON, err = jsonView(map[string]any{"value": shown}); err != nil {
			return err
		}
	}

	// Jobs of the last seven days, by status.
	if rq.Can(dataprotection.ActionJobRead, vault.String()).Allowed {
		js, err := dp.ListJobs(ctx, vault, job.Filter{From: now.Add(-7 * 24 * time.Hour), BackupInstanceID: b.ID})
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for _, j := range js {
			counts[j.Properties.Status]++
		}
		base := "/jobs?instance=" + url.QueryEscape(page.Name) + "&range=7d"
		for _, s := range []job.Status{job.Completed, job.Failed, job.InProgress, job.Cancelled} {
			page.Summary = append(page.Summary, statusCount{Status: string(s), Count: counts[string(s)], URL: base + "&status=" + string(s)})
		}
		page.JobsURL = base
	}

	// Backup now, with the policy's retention rules.
	page.Backup = rq.Can(dataprotection.ActionInstanceBackup, id.String())
	if pid, err := resource.Parse(pr.PolicyInfo.PolicyID); err == nil && rq.Can(dataprotection.ActionPolicyRead, pid.String()).Allowed {
		if pol, err := dp.GetPolicy(ctx, pid); err == nil {
			for _, rr := range pol.Properties.RetentionRules() {
				page.Rules = append(page.Rules, rr.Name)
			}
		}
	}
	if len(page.Rules) == 0 {
		page.Rules = []string{dataprotection.TagDefault}
	}
	protecting := page.State == dataprotection.StateConfigured || page.State == dataprotection.StateProtectionError
	if !protecting {
		page.BackupHint = "On-demand backups need protection to be configured and running; this instance is " + strings.ToLower(page.StateLabel) + "."
	}
	page.CanStop = page.State == dataprotection.StateConfigured || page.State == dataprotection.StateSuspended || page.State == dataprotection.StateProtectionError
	page.CanSuspend = page.State == dataprotection.StateConfigured || page.State == dataprotection.StateProtectionError
	page.CanResume = page.State == dataprotection.StateStopped || page.State == dataprotection.StateSuspended
	page.Stop = rq.Can(dataprotection.StopProtection.Action(), id.String())
	page.Suspend = rq.Can(dataprotection.SuspendBackups.Action(), id.String())
	page.Resume = rq.Can(dataprotection.ResumeProtection.Action(), id.String())
	page.Delete = rq.Can(dataprotection.ActionInstanceDelete, id.String())
	cmd := func(words ...string) *CLI {
		return Command(words...).Flag("resource-group", vault.ResourceGroup).Flag("vault-name", vault.Name()).Flag("name", id.Name())
	}
	page.BackupCLI = Command("backup", "now").Flag("resource-group", vault.ResourceGroup).Flag("vault-name", vault.Name()).
		Flag("instance", id.Name()).Field("retention-tag", "rule", page.Rules[0])
	page.StopCLI = cmd("instance", "stop")
	page.DeleteCLI = cmd("instance", "delete").Bool("yes", true)
	if page.JSON, err = jsonView(b); err != nil {
		return err
	}
	for _, s := range page.Summary {
		if s.Status == string(job.InProgress) && s.Count > 0 {
			rq.Refresh(5)
		}
	}
	if actionErr != "" {
		rq.Status(http.StatusBadRequest)
	}
	return rq.Render("instance", page)
}

// instanceBackup is "Backup now": an on-demand backup kept by the chosen
// retention rule; the answer is the job's page, which follows it.
func (p *Portal) instanceBackup(rq *Request) error {
	id := instanceIDOf(rq)
	if err := rq.Require(Need(dataprotection.ActionInstanceBackup, id.String())); err != nil {
		return err
	}
	ctx := rq.Context()
	b, err := p.cfg.DataProtection.GetInstance(ctx, id)
	if err != nil {
		return err
	}
	pol, err := p.cfg.DataProtection.GetPolicy(ctx, resource.MustParse(b.Properties.PolicyInfo.PolicyID))
	if err != nil {
		return err
	}
	rule, _ := pol.Properties.BackupRule()
	if rule == nil {
		return p.renderInstance(rq, id, "The instance's policy has no backup rule.")
	}
	jobID, err := p.cfg.DataProtection.AdhocBackup(ctx, id, dataprotection.BackupRequest{RuleName: rule.Name, RetentionTag: rq.R.PostFormValue("rule")})
	if e := resource.AsError(err); e != nil && e.Kind != resource.KindInternal && e.Kind != resource.KindForbidden && e.Kind != resource.KindNotFound {
		return p.renderInstance(rq, id, "Backup now was refused: "+e.Message)
	}
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(jobID), "Backup of "+b.Properties.FriendlyName+" started.")
}

// instanceProtection stops, suspends or resumes protection. Stopping and
// suspending need a reason, which the instance keeps with who gave it
// (ChangeNote) and the instance page shows.
func (p *Portal) instanceProtection(rq *Request) error {
	id := instanceIDOf(rq)
	change := dataprotection.ProtectionChange(rq.R.PostFormValue("change"))
	switch change {
	case dataprotection.StopProtection, dataprotection.SuspendBackups, dataprotection.ResumeProtection:
	default:
		return resource.Errorf(resource.KindBadRequest, "InvalidProtectionChange", "%q is not a protection change (stopProtection, suspendBackups or resumeProtection).", change)
	}
	if err := rq.Require(Need(change.Action(), id.String())); err != nil {
		return err
	}
	reason := strings.TrimSpace(rq.R.PostFormValue("reason"))
	if change != dataprotection.ResumeProtection && reason == "" {
		return p.renderInstance(rq, id, "Give a reason for stopping or suspending protection.")
	}
	note := dataprotection.ChangeNote{Reason: reason, Comments: strings.TrimSpace(rq.R.PostFormValue("comments")), By: rq.Caller().Name}
	b, err := p.cfg.DataProtection.SetProtection(rq.Context(), id, change, note)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindBadRequest {
		return p.renderInstance(rq, id, e.Message)
	}
	if err != nil {
		return err
	}
	p.log.Info("portal: protection changed", "instance", id.String(), "change", string(change), "by", rq.Principal.ID,
		"reason", reason, "comments", note.Comments)
	return rq.Redirect(PageURL(id.String()), fmt.Sprintf("%s: %s.", b.Properties.FriendlyName, stateLabel(b.Properties.CurrentProtectionState)))
}

// instanceDelete deletes the instance with its recovery points and their
// snapshots, once its name was typed as confirmation and a reason given.
func (p *Portal) instanceDelete(rq *Request) error {
	id := instanceIDOf(rq)
	if err := rq.Require(Need(dataprotection.ActionInstanceDelete, id.String())); err != nil {
		return err
	}
	reason := strings.TrimSpace(rq.R.PostFormValue("reason"))
	switch {
	case rq.R.PostFormValue("confirm") != id.Name():
		return p.renderInstance(rq, id, fmt.Sprintf("Type the backup instance's name, %s, to confirm its deletion.", id.Name()))
	case reason == "":
		return p.renderInstance(rq, id, "Give a reason for deleting the backup instance.")
	}
	note := dataprotection.ChangeNote{Reason: reason, Comments: strings.TrimSpace(rq.R.PostFormValue("comments")), By: rq.Caller().Name}
	jobID, err := p.cfg.DataProtection.StartDeleteInstance(rq.Context(), id, note)
	if err != nil {
		return err
	}
	p.log.Info("portal: backup instance deleted", "instance", id.String(), "by", rq.Principal.ID, "reason", reason,
		"comments", note.Comments, "job", jobID)
	target := "/instances"
	if jobID != "" {
		target = PageURL(jobID)
	}
	return rq.Redirect(target, "Deleting backup instance "+id.Name()+" with its recovery points.")
}

// instanceVerify verifies a recovery point of the instance (reads back
// every chunk of it) and shows the outcome on the instance's page.
func (p *Portal) instanceVerify(rq *Request) error {
	id := instanceIDOf(rq)
	if err := rq.Require(Need(dataprotection.ActionRecoveryPointVerify, id.String())); err != nil {
		return err
	}
	name := rq.R.PostFormValue("rp")
	rp, err := p.cfg.DataProtection.VerifyRecoveryPoint(rq.Context(), id, name)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindNotFound {
		return p.renderInstance(rq, id, e.Message)
	}
	if err != nil {
		return err
	}
	v := rp.Properties.CofferVerification
	msg := fmt.Sprintf("Recovery point of %s: %s. %s", rp.Time.UTC().Format("2006-01-02 15:04 UTC"), verifyLabels[v.State], v.Message)
	return rq.Redirect(PageURL(id.String())+"#recovery-points", msg)
}
