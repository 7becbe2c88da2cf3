package portal

import (
	"context"
	"net/url"
	"strings"
	"time"

	"coffer/internal/api"
	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
)

// StorageUsage is what the storage engine holds and how much room is
// left on the data filesystem.
type StorageUsage struct {
	StoredBytes int64 // chunk bytes in packs (after dedup and compression)
	RawBytes    int64 // the same chunks before compression
	FreeBytes   int64
	TotalBytes  int64
}

// instances returns the backup instances the principal may read.
func (rq *Request) instances() ([]instanceRow, error) {
	bis, err := inVaults(rq, dataprotection.ActionInstanceRead, rq.p.cfg.DataProtection.ListInstances)
	if err != nil {
		return nil, err
	}
	rows := make([]instanceRow, len(bis))
	for i, b := range bis {
		rows[i] = instanceRow{InstanceResource: b, URL: PageURL(b.ID)}
	}
	return rows, nil
}

// protectionBucket is the overview's word for an instance's state.
func protectionBucket(b dataprotection.InstanceResource) string {
	st := b.Properties.CurrentProtectionState
	if ps := b.Properties.ProtectionStatus; ps != nil && ps.Status != "" {
		st = ps.Status
	}
	switch st {
	case dataprotection.StateStopped, dataprotection.StateSuspended:
		return "Protection paused"
	case dataprotection.StateProtectionError, dataprotection.StateConfiguringFailed:
		return "Protection error"
	}
	return "Protected"
}

type statusCard struct {
	Label string
	Count int
	Class string
	URL   string
}

type diskRow struct {
	compute.Disk
	URL        string
	Group      string
	ConfigURL  string
	Configure  Control
	Protection string
}

type storageCard struct {
	Stored, Raw, Free, Total int64
	UsedPct                  int64
	PerDay                   int64
	FullDate                 string
}

type overviewPage struct {
	Protection       []statusCard
	Protectable      []diskRow
	ProtectableTotal int
	Jobs24           []statusCount
	Jobs24Total      int
	Storage          *storageCard
	StorageDenied    Control
	Sizes, Durations chart
}

func (p *Portal) overview(rq *Request) error {
	ctx := rq.Context()
	now := p.cfg.Clock.Now()
	bis, err := rq.instances()
	if err != nil {
		return err
	}
	disks, err := rq.disks()
	if err != nil {
		return err
	}
	var page overviewPage
	counts := map[string]int{}
	for _, b := range bis {
		counts[protectionBucket(b.InstanceResource)]++
	}
	unprotected := rq.unprotected(disks, bis)
	page.ProtectableTotal = len(unprotected)
	page.Protectable = unprotected[:min(len(unprotected), 8)]
	counts["Not protected"] = page.ProtectableTotal
	for _, c := range []struct{ label, class, url string }{
		{"Protected", "ok", "/instances?status=Protected"},
		{"Protection paused", "warn", "/instances?status=Paused"},
		{"Protection error", "bad", "/instances?status=Error"},
		{"Not protected", "mute", "/protectable"},
	} {
		page.Protection = append(page.Protection, statusCard{Label: c.label, Count: counts[c.label], Class: c.class, URL: c.url})
	}

	jobs, err := rq.visibleJobs(job.Filter{From: now.Add(-30 * 24 * time.Hour)})
	if err != nil {
		return err
	}
	jc := map[string]int{}
	for _, j := range jobs {
		if now.Sub(j.Start) <= 24*time.Hour {
			jc[j.Status]++
			page.Jobs24Total++
		}
	}
	for _, s := range jobStatuses {
		page.Jobs24 = append(page.Jobs24, statusCount{Status: string(s), Count: jc[string(s)],
			URL: "/jobs?range=24h&status=" + string(s)})
	}
	page.Sizes, page.Durations = jobCharts(jobs, now)

	page.StorageDenied = rq.Can(api.ActionAdminStatsRead, authorization.TenantScope)
	if page.StorageDenied.Allowed && p.cfg.Storage != nil {
		if page.Storage, err = storageSummary(ctx, p.cfg.Storage, jobs, now); err != nil {
			return err
		}
	}
	return rq.Render("overview", page)
}

// unprotected is the disks no backup instance protects, each with its
// Configure protection command.
func (rq *Request) unprotected(disks []compute.Disk, bis []instanceRow) []diskRow {
	protected := map[string]bool{}
	for _, b := range bis {
		protected[strings.ToLower(b.Properties.DataSourceInfo.ResourceID)] = true
	}
	configure := rq.createControl(dataprotection.ActionInstanceWrite)
	var out []diskRow
	for _, d := range disks {
		if !protected[strings.ToLower(d.ID)] {
			out = append(out, diskRow{Disk: d, URL: PageURL(d.ID), Group: groupOf(d.ID),
				ConfigURL: "/protect?disk=" + url.QueryEscape(d.ID), Configure: configure})
		}
	}
	return out
}

// protectable lists the disks without protection (Business Continuity
// Center's Protectable resources).
func (p *Portal) protectable(rq *Request) error {
	bis, err := rq.instances()
	if err != nil {
		return err
	}
	disks, err := rq.disks()
	if err != nil {
		return err
	}
	return rq.Render("protectable", rq.unprotected(disks, bis))
}

// jobCharts draws the bytes backed up per day over the last two weeks and
// the durations of the latest jobs.
func jobCharts(jobs []jobRow, now time.Time) (sizes, durations chart) {
	const days = 14
	perDay := make([]chartValue, days)
	start := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -(days - 1))
	for i := range perDay {
		d := start.AddDate(0, 0, i)
		perDay[i] = chartValue{Label: d.Format("Jan 2"), Title: d.Format("Jan 2") + ": nothing backed up"}
	}
	var any bool
	for _, j := range jobs {
		if j.Operation != job.OpBackup || j.Status != string(job.Completed) {
			continue
		}
		i := int(j.Start.UTC().Sub(start) / (24 * time.Hour))
		if j.Start.Before(start) || i >= days {
			continue
		}
		perDay[i].Value += float64(j.Bytes)
		perDay[i].Title = perDay[i].Label + ": " + formatBytes(int64(perDay[i].Value)) + " backed up"
		any = true
	}
	if !any {
		perDay = nil
	}
	sizes = newChart("Bytes backed up per day", perDay, true, formatChartBytes, "No completed backups in the last two weeks.")

	// The latest 40 jobs, oldest first.
	latest := jobs
	if len(latest) > 40 {
		latest = latest[:40]
	}
	vals := make([]chartValue, 0, len(latest))
	for i := len(latest) - 1; i >= 0; i-- {
		j := latest[i]
		vals = append(vals, chartValue{Label: j.Start.UTC().Format("Jan 2"), Value: j.Duration.Seconds(),
			Class: strings.ToLower(j.Status), Title: j.Operation + " " + j.Status + ", " + formatDuration(j.Duration) + " (" + formatTime(j.Start) + ")"})
	}
	durations = newChart("Job durations", vals, false, formatSeconds, "No jobs in the last 30 days.")
	return sizes, durations
}

// storageSummary is the storage card: what is stored, what is free, and
// when the data filesystem would be full at the rate backups added data
// over the last 30 days.
func storageSummary(ctx context.Context, usage func(context.Context) (StorageUsage, error), jobs []jobRow, now time.Time) (*storageCard, error) {
	u, err := usage(ctx)
	if err != nil {
		return nil, err
	}
	c := &storageCard{Stored: u.StoredBytes, Raw: u.RawBytes, Free: u.FreeBytes, Total: u.TotalBytes}
	if u.TotalBytes > 0 {
		c.UsedPct = (u.TotalBytes - u.FreeBytes) * 100 / u.TotalBytes
	}
	var added int64
	first := now
	for _, j := range jobs {
		if j.Operation == job.OpBackup && j.Status == string(job.Completed) {
			added += j.Bytes
			if j.Start.Before(first) {
				first = j.Start
			}
		}
	}
	span := max(now.Sub(first), 24*time.Hour)
	c.PerDay = int64(float64(added) / span.Hours() * 24)
	switch {
	case c.PerDay <= 0:
		c.FullDate = "not filling: no data was backed up in the last 30 days"
	default:
		daysLeft := float64(u.FreeBytes) / float64(c.PerDay)
		if daysLeft > 3650 {
			c.FullDate = "more than ten years away"
		} else {
			c.FullDate = now.Add(time.Duration(daysLeft * 24 * float64(time.Hour))).UTC().Format("2006-01-02")
		}
	}
	return c, nil
}
