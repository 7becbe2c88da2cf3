package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/dataprotection"
	"coffer/internal/resource"
	"coffer/internal/schedule"
)

// Protection policies: the list, a policy's page (its schedule, its
// retention rules and the next ten backup times in its time zone) and the
// "Create policy" wizard with Azure's tabs (Basics, Schedule + retention,
// Review + create). The wizard keeps its state in the form itself: every
// tab posts every field (the tabs not shown carry theirs as hidden
// inputs) to POST /policies/new, so moving between tabs changes nothing
// on the server, and only "Create" (op=create) does.

func init() { extraRoutes = append(extraRoutes, (*Portal).policyRoutes) }

func (p *Portal) policyRoutes() {
	p.page("GET /policies", p.policyList)
	p.page("GET /policies/new", p.policyNew)
	p.page("POST /policies/new", p.policyWizard)
	p.page("GET /policies/{sub}/{rg}/{vault}/{name}", p.policyShow)
	p.page("POST /policies/{sub}/{rg}/{vault}/{name}/delete", p.policyDelete)
}

// nextBackups is how many upcoming backup times a policy shows.
const nextBackups = 10

// policySummary describes a policy in words, as the list and the pages
// show it.
type policySummary struct {
	Frequency string // "Every 4 hours", "Daily"
	Times     string // "02:00, 06:00, …" in the policy's time zone
	TimeZone  string
	Rules     []ruleSummary
	Next      []nextBackup // the next backup times, in the policy's time zone
}

// nextBackup is an upcoming backup time as the pages list it.
type nextBackup struct {
	Date, Time, Offset string
}

type ruleSummary struct {
	Name, Criterion, Duration string
}

// describePolicy summarises a stored (valid) policy; now is when the next
// backup times are counted from.
func describePolicy(p dataprotection.BackupPolicy, now time.Time) policySummary {
	var s policySummary
	sc, err := p.Schedule()
	if err != nil {
		s.Frequency = "No schedule"
	} else {
		s.Frequency = frequencyText(sc.Interval())
		var times []string
		for _, off := range sc.TimesOfDay() {
			times = append(times, fmt.Sprintf("%02d:%02d", int(off.Hours()), int(off.Minutes())%60))
		}
		s.Times = strings.Join(times, ", ")
		s.TimeZone = sc.TimeZone()
		if s.TimeZone == "" {
			s.TimeZone = sc.Location().String()
		}
		for _, t := range sc.Upcoming(now, nextBackups) {
			t = t.In(sc.Location())
			s.Next = append(s.Next, nextBackup{Date: t.Format("Mon 2 Jan 2006"), Time: t.Format("15:04"), Offset: t.Format("UTC-07:00")})
		}
	}
	for _, rr := range p.RetentionRules() {
		rs := ruleSummary{Name: rr.Name, Criterion: ruleCriterion(rr.Name)}
		if d, ok := p.RetentionDuration(rr.Name); ok {
			rs.Duration = durationText(d)
		}
		s.Rules = append(s.Rules, rs)
	}
	return s
}

func frequencyText(iv schedule.Interval) string {
	switch h := int(iv.Every / time.Hour); {
	case iv.Daily():
		return "Daily"
	case h == 1:
		return "Every hour"
	default:
		return fmt.Sprintf("Every %d hours", h)
	}
}

// ruleCriterion says which backups a retention rule keeps.
func ruleCriterion(rule string) string {
	switch {
	case strings.EqualFold(rule, dataprotection.TagDaily):
		return "First successful backup of the day"
	case strings.EqualFold(rule, dataprotection.TagWeekly):
		return "First successful backup of the week"
	}
	return "Every backup no other rule keeps"
}

// durationText writes a retention as a person reads it: "7 days",
// "12 weeks", "P1Y2M" for mixed units.
func durationText(d schedule.Duration) string {
	parts := []struct {
		n    int
		unit string
	}{{d.Years, "year"}, {d.Months, "month"}, {d.Weeks, "week"}, {d.Days, "day"}, {d.Hours, "hour"}}
	var out []string
	for _, p := range parts {
		switch {
		case p.n == 1:
			out = append(out, "1 "+p.unit)
		case p.n > 1:
			out = append(out, strconv.Itoa(p.n)+" "+p.unit+"s")
		}
	}
	if len(out) == 0 || d.Minutes != 0 || d.Seconds != 0 {
		return d.String()
	}
	return strings.Join(out, " ")
}

// maxText writes a retention limit: "75 days", "18.75 days", "1 year".
func maxText(max time.Duration) string {
	if max >= schedule.MaxRetentionYear {
		return "1 year"
	}
	return strconv.FormatFloat(max.Hours()/24, 'f', -1, 64) + " days"
}

// --- the list ---

type policyRow struct {
	dataprotection.BaseBackupPolicyResource
	URL, Vault, VaultURL, Group string
	Summary                     policySummary
}

type policyListPage struct {
	Policies []policyRow
	Vaults   []vaultChoice
	Vault    string // the vault filter (an ID), "" for all
	Create   Control
	NewURL   string
}

// vaultChoice is a vault a form or filter offers.
type vaultChoice struct {
	ID, Name, Group, Location string
}

func vaultChoices(vs []dataprotection.VaultResource) []vaultChoice {
	out := make([]vaultChoice, 0, len(vs))
	for _, v := range vs {
		out = append(out, vaultChoice{ID: v.ID, Name: v.Name, Group: groupOf(v.ID), Location: v.Location})
	}
	return out
}

// vaultsFor returns the vaults the principal may read in which it may
// also perform action (at the vault's scope).
func (rq *Request) vaultsFor(action string) ([]dataprotection.VaultResource, error) {
	vs, err := rq.vaults()
	if err != nil {
		return nil, err
	}
	return authorization.Visible(rq.Context(), rq.p.cfg.Authz, rq.Principal, action, vs,
		func(v dataprotection.VaultResource) string { return v.ID })
}

// vaultControl decides a command that acts in a vault: allowed when the
// principal may perform action in at least one vault it sees, else the
// refusal at the first one (or at its first subscription).
func (rq *Request) vaultControl(action string, all, allowed []dataprotection.VaultResource) Control {
	switch {
	case len(allowed) > 0:
		return Allow
	case len(all) > 0:
		return rq.Can(action, all[0].ID)
	}
	return rq.canAtFirstScope(action)
}

func (p *Portal) policyList(rq *Request) error {
	vs, err := rq.vaults()
	if err != nil {
		return err
	}
	writable, err := rq.vaultsFor(dataprotection.ActionPolicyWrite)
	if err != nil {
		return err
	}
	readable, err := authorization.Visible(rq.Context(), p.cfg.Authz, rq.Principal, dataprotection.ActionPolicyRead, vs,
		func(v dataprotection.VaultResource) string { return v.ID })
	if err != nil {
		return err
	}
	page := policyListPage{Vaults: vaultChoices(vs), Vault: rq.R.URL.Query().Get("vault"),
		Create: rq.vaultControl(dataprotection.ActionPolicyWrite, vs, writable), NewURL: "/policies/new"}
	if page.Vault != "" {
		page.NewURL += "?vault=" + url.QueryEscape(page.Vault)
	}
	now := p.cfg.Clock.Now()
	for _, v := range readable {
		if page.Vault != "" && !strings.EqualFold(page.Vault, v.ID) {
			continue
		}
		ps, err := p.cfg.DataProtection.ListPolicies(rq.Context(), resource.MustParse(v.ID))
		if err != nil {
			return err
		}
		for _, pol := range ps {
			page.Policies = append(page.Policies, policyRow{BaseBackupPolicyResource: pol, URL: PageURL(pol.ID),
				Vault: v.Name, VaultURL: PageURL(v.ID), Group: groupOf(v.ID), Summary: describePolicy(pol.Properties, now)})
		}
	}
	return rq.Render("policies", page)
}

// --- a policy's page ---

type policyPage struct {
	Policy          dataprotection.BaseBackupPolicyResource
	Vault, VaultURL string
	Group           string
	Summary         policySummary
	Instances       []policyUser
	JSON            string
	Delete          Control
	DeleteURL       string
	Error           string
	CLI             *CLI
}

type policyUser struct{ Name, URL string }

func policyIDOf(rq *Request) resource.ID {
	vault := dataprotection.VaultID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("vault"))
	return vault.Child("backupPolicies", rq.R.PathValue("name"))
}

func (p *Portal) policyShow(rq *Request) error {
	return p.renderPolicy(rq, policyIDOf(rq), "")
}

func (p *Portal) renderPolicy(rq *Request, id resource.ID, errMsg string) error {
	if err := rq.Require(Need(dataprotection.ActionPolicyRead, id.String())); err != nil {
		return err
	}
	pol, err := p.cfg.DataProtection.GetPolicy(rq.Context(), id)
	if err != nil {
		return err
	}
	vault := id.Parent()
	page := policyPage{Policy: pol, Vault: vault.Name(), VaultURL: PageURL(vault.String()), Group: vault.ResourceGroup,
		Summary: describePolicy(pol.Properties, p.cfg.Clock.Now()), Error: errMsg,
		Delete:    rq.Can(dataprotection.ActionPolicyDelete, id.String()),
		DeleteURL: PageURL(id.String()) + "/delete",
		CLI: Command("policy", "show").Flag("resource-group", vault.ResourceGroup).Flag("vault-name", vault.Name()).
			Flag("name", id.Name())}
	if rq.Can(dataprotection.ActionInstanceRead, vault.String()).Allowed {
		bis, err := p.cfg.DataProtection.ListInstances(rq.Context(), vault)
		if err != nil {
			return err
		}
		for _, b := range bis {
			if strings.EqualFold(b.Properties.PolicyInfo.PolicyID, id.String()) {
				page.Instances = append(page.Instances, policyUser{Name: b.Name, URL: PageURL(b.ID)})
			}
		}
	}
	if page.JSON, err = jsonView(pol); err != nil {
		return err
	}
	if errMsg != "" {
		rq.Status(http.StatusConflict)
	}
	return rq.Render("policy", page)
}

// policyDelete deletes a policy; the domain refuses while a backup
// instance uses it, and the page then says which.
func (p *Portal) policyDelete(rq *Request) error {
	id := policyIDOf(rq)
	if err := rq.Require(Need(dataprotection.ActionPolicyDelete, id.String())); err != nil {
		return err
	}
	_, err := p.cfg.DataProtection.DeletePolicy(rq.Context(), id)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindConflict {
		return p.renderPolicy(rq, id, e.Message)
	}
	if err != nil {
		return err
	}
	return rq.Redirect("/policies", "Backup policy "+id.Name()+" deleted.")
}

// --- the "Create policy" wizard ---

// The wizard's tabs.
const (
	tabBasics   = "basics"
	tabSchedule = "schedule"
	tabReview   = "review"
)

// retentionUnits are the units a retention is given in (the CLI's
// letters).
var retentionUnits = []struct{ Letter, Name string }{{"d", "Days"}, {"w", "Weeks"}, {"m", "Months"}, {"y", "Years"}}

// retentionRule is one retention rule of the wizard: Default (editable,
// not removable), Daily or Weekly.
type retentionRule struct {
	Tag       string
	Field     string // the form field of its duration: retention, daily-retention, weekly-retention
	Option    dataprotection.PolicyOption
	Criterion string
	Value     string // a number
	Unit      string // d, w, m or y
	Max       string // the longest retention allowed, in words
	Error     string
	Removable bool
}

// Retention is the rule's duration as the CLI takes it ("7d").
func (r retentionRule) Retention() string { return strings.TrimSpace(r.Value) + r.Unit }

// wizardRules are the rules the wizard can hold, in order, with the
// duration each starts with when added.
var wizardRules = []retentionRule{
	{Tag: dataprotection.TagDefault, Field: "retention", Option: dataprotection.OptionRetention, Value: "7", Unit: "d"},
	{Tag: dataprotection.TagDaily, Field: "daily-retention", Option: dataprotection.OptionDailyRetention, Value: "30", Unit: "d", Removable: true},
	{Tag: dataprotection.TagWeekly, Field: "weekly-retention", Option: dataprotection.OptionWeeklyRetention, Value: "12", Unit: "w", Removable: true},
}

// policyForm is the wizard's state: every field of every tab.
type policyForm struct {
	Tab       string
	Name      string
	Vault     string // vault ID
	Frequency string // hourly or daily
	Hours     int
	Time      string // HH:MM
	TimeZone  string
	Rules     []retentionRule

	// Errors by field (name, vault, hours, time, timezone, or a rule's
	// field); General is an error of no one field.
	Errors  map[string]string
	General string

	// What the page shows.
	Vaults     []vaultChoice
	VaultName  string
	Group      string
	Hourly     []int
	TimeZones  []string
	Units      []struct{ Letter, Name string }
	CanAdd     []retentionRule // rules "Add retention rule" may add
	LimitText  string
	Summary    policySummary // on Review: the built policy described
	PolicyJSON string
	Create     Control
	CLI        *CLI
}

func (f *policyForm) fieldError(field, msg string) {
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	if _, ok := f.Errors[field]; !ok {
		f.Errors[field] = msg
	}
}

// readPolicyForm reads the wizard's fields from a POST, applying "Add
// retention rule" and "Remove".
func readPolicyForm(r *http.Request) policyForm {
	f := policyForm{
		Tab:       r.PostFormValue("tab"),
		Name:      strings.TrimSpace(r.PostFormValue("name")),
		Vault:     r.PostFormValue("vault"),
		Frequency: r.PostFormValue("frequency"),
		Time:      strings.TrimSpace(r.PostFormValue("time")),
		TimeZone:  r.PostFormValue("timezone"),
	}
	f.Hours, _ = strconv.Atoi(r.PostFormValue("hours"))
	add, remove := r.PostFormValue("add-rule"), r.PostFormValue("remove-rule")
	for _, w := range wizardRules {
		_, present := r.PostForm[w.Field]
		switch {
		case w.Tag == dataprotection.TagDefault:
		case strings.EqualFold(remove, w.Tag):
			continue
		case strings.EqualFold(add, w.Tag) && !present:
			f.Rules = append(f.Rules, w)
			continue
		case !present:
			continue
		}
		rule := w
		if present {
			rule.Value = strings.TrimSpace(r.PostFormValue(w.Field))
			rule.Unit = r.PostFormValue(w.Field + "-unit")
		}
		f.Rules = append(f.Rules, rule)
	}
	if add != "" || remove != "" {
		f.Tab = tabSchedule
	}
	return f
}

// defaults fills what a new wizard starts with: Azure's default disk
// policy, every 4 hours, kept 7 days, in UTC.
func (f *policyForm) defaults() {
	if f.Frequency == "" {
		f.Frequency = "hourly"
	}
	if f.Hours == 0 {
		f.Hours = 4
	}
	if f.Time == "" {
		f.Time = "02:00"
	}
	if f.TimeZone == "" {
		f.TimeZone = "UTC"
	}
	if len(f.Rules) == 0 {
		f.Rules = []retentionRule{wizardRules[0]}
	}
	if f.Tab == "" {
		f.Tab = tabBasics
	}
}

// every is the schedule's period as chosen.
func (f *policyForm) every() time.Duration {
	if f.Frequency == "daily" || f.Hours == 0 {
		return 24 * time.Hour
	}
	return time.Duration(f.Hours) * time.Hour
}

// options are the wizard's choices as the domain builds a policy from
// them.
func (f *policyForm) options() dataprotection.DiskPolicyOptions {
	o := dataprotection.DiskPolicyOptions{Time: f.Time, TimeZone: f.TimeZone}
	if f.Frequency != "daily" {
		o.Hours = f.Hours
	}
	for _, r := range f.Rules {
		switch r.Option {
		case dataprotection.OptionRetention:
			o.Retention = r.Retention()
		case dataprotection.OptionDailyRetention:
			o.DailyRetention = r.Retention()
		case dataprotection.OptionWeeklyRetention:
			o.WeeklyRetention = r.Retention()
		}
	}
	return o
}

// optionFields maps the options the domain names in its errors to the
// wizard's fields.
var optionFields = map[dataprotection.PolicyOption]string{
	dataprotection.OptionHours: "hours", dataprotection.OptionTime: "time", dataprotection.OptionTimeZone: "timezone",
	dataprotection.OptionRetention: "retention", dataprotection.OptionDailyRetention: "daily-retention",
	dataprotection.OptionWeeklyRetention: "weekly-retention",
}

// build builds the policy the wizard describes; a refused option is
// shown at its field (the message is the domain's, which explains the
// limit it hit).
func (f *policyForm) build() (dataprotection.BackupPolicy, bool) {
	for _, r := range f.Rules {
		if n, err := strconv.Atoi(strings.TrimSpace(r.Value)); err != nil || n <= 0 {
			f.fieldError(r.Field, fmt.Sprintf("The %s retention must be a whole number of %s greater than 0.", r.Tag, unitName(r.Unit)))
		}
	}
	if len(f.Errors) > 0 {
		return dataprotection.BackupPolicy{}, false
	}
	pol, err := dataprotection.BuildDiskPolicy(f.options())
	var oe *dataprotection.PolicyOptionError
	switch {
	case err == nil:
		return pol, true
	case errors.As(err, &oe):
		msg := oe.Err.Error()
		if e := resource.AsError(err); e != nil {
			msg = e.Message
		}
		f.fieldError(optionFields[oe.Option], sentence(strings.TrimPrefix(msg, "build disk policy: ")))
	default:
		f.General = err.Error()
	}
	return dataprotection.BackupPolicy{}, false
}

func unitName(letter string) string {
	for _, u := range retentionUnits {
		if u.Letter == letter {
			return strings.ToLower(u.Name)
		}
	}
	return "days"
}

// checkBasics checks the Basics tab: a name Azure accepts and a vault the
// principal may create policies in.
func (f *policyForm) checkBasics(writable []dataprotection.VaultResource) {
	if f.Name == "" {
		f.fieldError("name", "Give the policy a name.")
	} else if err := dataprotection.CheckChildName(f.Name); err != nil {
		msg := err.Error()
		if e := resource.AsError(err); e != nil {
			msg = e.Message
		}
		f.fieldError("name", msg)
	}
	if !slices.ContainsFunc(writable, func(v dataprotection.VaultResource) bool { return strings.EqualFold(v.ID, f.Vault) }) {
		f.fieldError("vault", "Choose a backup vault in which you may create policies.")
	}
}

// prepare fills what the wizard's page shows.
func (f *policyForm) prepare(rq *Request, writable, all []dataprotection.VaultResource) {
	f.Vaults = vaultChoices(writable)
	f.Create = rq.vaultControl(dataprotection.ActionPolicyWrite, all, writable)
	if vid, err := resource.Parse(f.Vault); err == nil && f.Vault != "" {
		f.VaultName, f.Group = vid.Name(), vid.ResourceGroup
		f.Create = rq.Can(dataprotection.ActionPolicyWrite, vid.Child("backupPolicies", f.nameOr("new")).String())
	}
	f.Hourly = schedule.HourlyIntervals
	f.TimeZones = timeZoneChoices(f.TimeZone)
	f.Units = retentionUnits
	f.CanAdd = nil
	for _, w := range wizardRules[1:] {
		if !slices.ContainsFunc(f.Rules, func(r retentionRule) bool { return r.Tag == w.Tag }) {
			w.Criterion = ruleCriterion(w.Tag)
			f.CanAdd = append(f.CanAdd, w)
		}
	}
	every := f.every()
	for i := range f.Rules {
		r := &f.Rules[i]
		r.Criterion = ruleCriterion(r.Tag)
		max, _ := dataprotection.MaxRuleRetention(r.Tag, every)
		r.Max = maxText(max)
		r.Error = f.Errors[r.Field]
	}
	defMax, byCount := dataprotection.MaxRuleRetention(dataprotection.TagDefault, every)
	freq := "daily backups"
	if f.Frequency != "daily" {
		freq = "backups every " + plural(f.Hours, "hour")
	}
	if byCount {
		f.LimitText = fmt.Sprintf("A disk keeps at most %d scheduled backups (incremental snapshots are limited to 500 per disk, and 50 are kept for on-demand backups), and none longer than 1 year. With %s, the Default rule keeps every backup, so it can keep them at most %s (%d × %s). Daily and Weekly rules keep one backup a day or a week, so only the year limits them.",
			schedule.MaxBackups, freq, maxText(defMax), schedule.MaxBackups, plural(f.Hours, "hour"))
	} else {
		f.LimitText = fmt.Sprintf("A disk keeps at most %d scheduled backups and none longer than 1 year. With %s, 450 backups take longer than a year, so every rule can keep backups up to 1 year.",
			schedule.MaxBackups, freq)
	}
	f.CLI = f.cli()
}

func (f *policyForm) nameOr(def string) string {
	if f.Name != "" {
		return f.Name
	}
	return def
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// cli is the `coffer policy create` command the wizard runs.
func (f *policyForm) cli() *CLI {
	c := Command("policy", "create").Flag("resource-group", f.Group).Flag("vault-name", f.VaultName).Field("name", "name", f.Name)
	if f.Frequency != "daily" {
		c.Flag("hourly", strconv.Itoa(f.Hours))
	}
	c.Flag("time", f.Time).Flag("timezone", f.TimeZone)
	for _, r := range f.Rules {
		c.Flag(r.Field, r.Retention())
	}
	return c
}

// timeZoneChoices are the zones the wizard offers: UTC, then Azure's
// Windows names; a zone the form holds that is neither stays offered.
func timeZoneChoices(current string) []string {
	zs := []string{"UTC"}
	var win []string
	for name := range schedule.WindowsZones() {
		if name != "UTC" {
			win = append(win, name)
		}
	}
	slices.Sort(win)
	zs = append(zs, win...)
	if current != "" && !slices.ContainsFunc(zs, func(z string) bool { return strings.EqualFold(z, current) }) {
		zs = append([]string{current}, zs...)
	}
	return zs
}

func (p *Portal) policyNew(rq *Request) error {
	f := policyForm{Vault: rq.R.URL.Query().Get("vault")}
	f.defaults()
	return p.renderWizard(rq, f, http.StatusOK)
}

// policyWizard moves between the wizard's tabs. Leaving Basics checks the
// name and the vault; leaving "Schedule + retention" builds the policy,
// and a refused choice keeps the wizard on that tab with the reason at
// the field. Nothing is stored.
func (p *Portal) policyWizard(rq *Request) error {
	if rq.R.PostFormValue("op") == "create" {
		return p.policyCreate(rq)
	}
	f := readPolicyForm(rq.R)
	f.defaults()
	status := http.StatusOK
	if f.Tab == tabSchedule || f.Tab == tabReview {
		writable, err := rq.vaultsFor(dataprotection.ActionPolicyWrite)
		if err != nil {
			return err
		}
		f.checkBasics(writable)
		if len(f.Errors) > 0 {
			f.Tab, status = tabBasics, http.StatusBadRequest
		}
	}
	if f.Tab == tabReview {
		if _, ok := f.build(); !ok {
			f.Tab, status = tabSchedule, http.StatusBadRequest
		}
	}
	return p.renderWizard(rq, f, status)
}

func (p *Portal) renderWizard(rq *Request, f policyForm, status int) error {
	all, err := rq.vaults()
	if err != nil {
		return err
	}
	writable, err := rq.vaultsFor(dataprotection.ActionPolicyWrite)
	if err != nil {
		return err
	}
	if f.Vault == "" && len(writable) > 0 {
		f.Vault = writable[0].ID
	}
	if f.Tab == tabReview {
		pol, ok := f.build()
		if ok {
			f.Summary = describePolicy(pol, p.cfg.Clock.Now())
			if f.PolicyJSON, err = jsonView(dataprotection.BaseBackupPolicyResource{Name: f.Name, Type: dataprotection.PolicyResourceType, Properties: pol}); err != nil {
				return err
			}
		}
	}
	f.prepare(rq, writable, all)
	rq.Status(status)
	return rq.Render("policy-new", f)
}

// policyCreate creates the policy the wizard describes, as `coffer policy
// create` does; it refuses a name already taken rather than replace that
// policy.
func (p *Portal) policyCreate(rq *Request) error {
	f := readPolicyForm(rq.R)
	f.defaults()
	vault, err := resource.Parse(f.Vault)
	if err != nil || !vault.IsType(dataprotection.VaultResourceType) {
		f.Tab = tabBasics
		f.fieldError("vault", "Choose a backup vault.")
		return p.renderWizard(rq, f, http.StatusBadRequest)
	}
	id := vault.Child("backupPolicies", f.Name)
	if err := rq.Require(Need(dataprotection.ActionPolicyWrite, id.String())); err != nil {
		return err
	}
	writable, err := rq.vaultsFor(dataprotection.ActionPolicyWrite)
	if err != nil {
		return err
	}
	if f.checkBasics(writable); len(f.Errors) > 0 {
		f.Tab = tabBasics
		return p.renderWizard(rq, f, http.StatusBadRequest)
	}
	pol, ok := f.build()
	if !ok {
		f.Tab = tabSchedule
		return p.renderWizard(rq, f, http.StatusBadRequest)
	}
	if _, err := p.cfg.DataProtection.GetPolicy(rq.Context(), id); err == nil {
		f.Tab = tabBasics
		f.fieldError("name", fmt.Sprintf("The vault %s already has a policy named %s; choose another name.", vault.Name(), f.Name))
		return p.renderWizard(rq, f, http.StatusConflict)
	} else if !resource.IsNotFound(err) {
		return err
	}
	out, _, err := p.cfg.DataProtection.PutPolicy(rq.Context(), id, pol)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindBadRequest {
		f.Tab, f.General = tabReview, e.Message
		return p.renderWizard(rq, f, http.StatusBadRequest)
	}
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(out.ID), "Backup policy "+out.Name+" created.")
}

// sentence starts a domain message with a capital letter, as the page
// shows it on its own.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}
