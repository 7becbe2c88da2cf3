package portal

import (
	"context"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
)

func (p *Portal) jobRoutes() {
	p.page("GET /jobs", p.jobList)
	p.page("GET /jobs/{sub}/{rg}/{vault}/{id}", p.jobShow)
	p.page("POST /jobs/{sub}/{rg}/{vault}/{id}/cancel", p.jobCancel)
}

// jobRow is a job as the lists show it.
type jobRow struct {
	Name, URL, Vault, VaultGroup, VaultURL string
	Operation, Status                      string
	Instance, InstanceURL, Datasource      string
	Start, End                             time.Time
	Duration                               time.Duration
	Bytes                                  int64
	Progress                               int
	UserTriggered                          bool
}

func parseJobTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// newJobRow is j as a row; the duration of a running job is up to now.
func newJobRow(j job.Resource, now time.Time) jobRow {
	w := j.Properties
	r := jobRow{Name: j.Name, URL: PageURL(j.ID), Operation: w.Operation, Status: w.Status,
		Instance: w.BackupInstanceFriendlyName, InstanceURL: PageURL(w.BackupInstanceID), Datasource: w.DataSourceName,
		Start: parseJobTime(w.StartTime), End: parseJobTime(w.EndTime), UserTriggered: w.IsUserTriggered, Vault: w.VaultName}
	if vid := strings.Index(strings.ToLower(j.ID), "/backupjobs/"); vid > 0 {
		r.VaultURL = PageURL(j.ID[:vid])
		r.VaultGroup = groupOf(j.ID)
	}
	if !r.Start.IsZero() {
		end := r.End
		if end.IsZero() {
			end = now
		}
		r.Duration = end.Sub(r.Start)
	}
	if ei := w.ExtendedInfo; ei != nil {
		if ei.DataTransferredInBytes != nil {
			r.Bytes = int64(*ei.DataTransferredInBytes)
		}
		if p, ok := ei.AdditionalDetails["Progress"]; ok {
			r.Progress, _ = strconv.Atoi(strings.TrimSuffix(p, "%"))
		}
	}
	if w.Status == string(job.Completed) {
		r.Progress = 100
	}
	return r
}

// jobStatuses are the status strip's entries, in Azure's order.
var jobStatuses = []job.Status{job.Completed, job.Failed, job.Cancelled, job.InProgress, job.CompletedWithWarnings}

// jobOperations are the operations the filter offers.
var jobOperations = []string{job.OpBackup, "OnDemandBackup", "ScheduledBackup", job.OpRestore, job.OpRetention,
	job.OpValidateForBackup, job.OpValidateRestore, job.OpDeleteProtection}

// jobRanges are the time ranges the filter offers; "all" is the whole
// kept history (job.RetentionPeriod), not only the last seven days.
var jobRanges = []struct{ Value, Label string }{
	{"24h", "Last 24 hours"}, {"7d", "Last 7 days"}, {"30d", "Last 30 days"}, {"all", "All kept history"},
}

type statusCount struct {
	Status string
	Count  int
	URL    string
	On     bool
}

type jobListPage struct {
	Jobs      []jobRow
	Strip     []statusCount
	AllURL    string
	Status    string
	Operation string
	Instance  string
	Range     string
	Vault     string
	Vaults    []string
	Instances []string
	Ops       []string
	Ranges    []struct{ Value, Label string }
	Total     int
	CLI       *CLI
}

// jobFilter is the jobs page's query.
type jobFilter struct {
	status, operation, instance, rng, vault string
}

func (f jobFilter) query(status string) string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("status", status)
	set("operation", f.operation)
	set("instance", f.instance)
	set("vault", f.vault)
	if f.rng != "" && f.rng != "all" {
		q.Set("range", f.rng)
	}
	if len(q) == 0 {
		return "/jobs"
	}
	return "/jobs?" + q.Encode()
}

func rangeStart(rng string, now time.Time) time.Time {
	switch rng {
	case "24h":
		return now.Add(-24 * time.Hour)
	case "7d":
		return now.Add(-7 * 24 * time.Hour)
	case "30d":
		return now.Add(-30 * 24 * time.Hour)
	}
	return time.Time{}
}

// visibleJobs returns the jobs of every vault whose jobs the principal may
// read that pass f, newest first.
func (rq *Request) visibleJobs(f job.Filter) ([]jobRow, error) {
	js, err := inVaults(rq, dataprotection.ActionJobRead, func(ctx context.Context, vault resource.ID) ([]job.Resource, error) {
		return rq.p.cfg.DataProtection.ListJobs(ctx, vault, f)
	})
	if err != nil {
		return nil, err
	}
	now := rq.p.cfg.Clock.Now()
	rows := make([]jobRow, len(js))
	for i, j := range js {
		rows[i] = newJobRow(j, now)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Start.After(rows[j].Start) })
	return rows, nil
}

func (p *Portal) jobList(rq *Request) error {
	q := rq.R.URL.Query()
	f := jobFilter{status: q.Get("status"), operation: q.Get("operation"), instance: q.Get("instance"),
		rng: q.Get("range"), vault: q.Get("vault")}
	if f.rng == "" {
		f.rng = "all"
	}
	now := p.cfg.Clock.Now()
	all, err := rq.visibleJobs(job.Filter{Operation: f.operation, From: rangeStart(f.rng, now)})
	if err != nil {
		return err
	}
	page := jobListPage{Status: f.status, Operation: f.operation, Instance: f.instance, Range: f.rng, Vault: f.vault,
		Ops: jobOperations, Ranges: jobRanges, AllURL: f.query("")}
	counts := map[string]int{}
	seenInst, seenVault := map[string]bool{}, map[string]bool{}
	for _, r := range all {
		if r.Instance != "" && !seenInst[r.Instance] {
			seenInst[r.Instance] = true
			page.Instances = append(page.Instances, r.Instance)
		}
		if !seenVault[r.Vault] {
			seenVault[r.Vault] = true
			page.Vaults = append(page.Vaults, r.Vault)
		}
		if (f.instance != "" && r.Instance != f.instance) || (f.vault != "" && r.Vault != f.vault) {
			continue
		}
		counts[r.Status]++
		page.Total++
		if f.status == "" || strings.EqualFold(r.Status, f.status) {
			page.Jobs = append(page.Jobs, r)
		}
	}
	sort.Strings(page.Instances)
	sort.Strings(page.Vaults)
	for _, s := range jobStatuses {
		page.Strip = append(page.Strip, statusCount{Status: string(s), Count: counts[string(s)], URL: f.query(string(s)),
			On: strings.EqualFold(f.status, string(s))})
	}
	if f.vault != "" && len(page.Jobs) > 0 {
		page.CLI = Command("job", "list").Flag("resource-group", page.Jobs[0].VaultGroup).Flag("vault-name", f.vault).
			Flag("status", f.status).Flag("operation", f.operation)
	}
	for _, r := range page.Jobs {
		if r.Status == string(job.InProgress) {
			rq.Refresh(5)
			break
		}
	}
	return rq.Render("jobs", page)
}

type jobPage struct {
	Notes    []jobNote
	Cancel   *post // set for a job of a kind that can be cancelled
	Job      job.Resource
	Row      jobRow
	Vault    string
	VaultURL string
	JSON     string
	Running  bool
	CLI      *CLI
}

func (p *Portal) jobShow(rq *Request) error {
	vid := dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("vault"))
	if err := rq.Require(Need(dataprotection.ActionJobRead, vid.String())); err != nil {
		return err
	}
	j, err := p.cfg.DataProtection.GetJob(rq.Context(), vid, rq.R.PathValue("id"))
	if err != nil {
		return err
	}
	page := jobPage{Job: j, Row: newJobRow(j, p.cfg.Clock.Now()), Vault: vid.Name(), VaultURL: PageURL(vid.String()),
		Running: j.Properties.Status == string(job.InProgress),
		CLI:     Command("job", "show").Flag("resource-group", vid.ResourceGroup).Flag("vault-name", vid.Name()).Flag("id", j.Name)}
	if page.JSON, err = jsonView(j); err != nil {
		return err
	}
	page.Notes = jobNotes(j)
	if slices.Contains(j.Properties.SupportedActions, "Cancellable") {
		c := postButton("Cancel job", PageURL(j.ID)+"/cancel", rq.Can(dataprotection.CancelAction(j.Properties.Operation), dataprotection.CancelScope(vid.String(), j)), rq.Session.CSRF)
		page.Cancel = &c
	}
	if page.Running {
		rq.Refresh(3)
	}
	return rq.Render("job", page)
}

// jobCancel cancels a backup or a restore in progress (CancelJob).
func (p *Portal) jobCancel(rq *Request) error {
	vid := dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("vault"))
	if err := rq.Require(Need(dataprotection.ActionJobRead, vid.String())); err != nil {
		return err
	}
	ctx := rq.Context()
	j, err := p.cfg.DataProtection.GetJob(ctx, vid, rq.R.PathValue("id"))
	if err != nil {
		return err
	}
	if err := rq.Require(Need(dataprotection.CancelAction(j.Properties.Operation), dataprotection.CancelScope(vid.String(), j))); err != nil {
		return err
	}
	out, err := p.cfg.DataProtection.CancelJob(ctx, vid, j.Name, rq.Caller())
	if err != nil {
		return err
	}
	if out.Properties.Status == string(job.Cancelled) {
		return rq.Redirect(PageURL(j.ID), "Job cancelled.")
	}
	return rq.Redirect(PageURL(j.ID), "Cancelling: the job stops and cleans up what it made.")
}

// jobNote is one of the job's details a person gave or caused: who asked
// for a deletion and why, who cancelled it.
type jobNote struct{ Label, Value string }

// jobNoteKeys are the job details (extendedInfo.additionalDetails) the job
// page shows, with their labels, in this order.
var jobNoteKeys = []jobNote{
	{"Requested by", dataprotection.DetailRequestedBy},
	{"Reason", dataprotection.DetailReason},
	{"Comments", dataprotection.DetailComments},
	{"Cancellation", job.DetailCancelReason},
}

func jobNotes(j job.Resource) []jobNote {
	ei := j.Properties.ExtendedInfo
	if ei == nil {
		return nil
	}
	var out []jobNote
	for _, k := range jobNoteKeys {
		if v := ei.AdditionalDetails[k.Value]; v != "" {
			out = append(out, jobNote{Label: k.Label, Value: v})
		}
	}
	return out
}
