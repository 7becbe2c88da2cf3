package crash

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"coffer/internal/client"
	"coffer/internal/job"
)

// check compares a restarted server with the world, after it has had the
// time to recover: every operation ends, no job stays InProgress, the
// disks hold what was acknowledged, every listed recovery point reads back
// (its snapshot, and restores of some) as the disk was when it was taken,
// no snapshot is orphaned, instances are as acknowledged, and verify is
// clean. It returns every finding; an error that stops the check is the
// last.
func (w *world) check(ctx context.Context, p *process, rng *rand.Rand) error {
	var findings []error
	add := func(err error) {
		if err != nil {
			findings = append(findings, err)
		}
	}
	stop := func(err error) error { return errors.Join(append(findings, err)...) }
	add(w.checkOperations(ctx))
	jobs, err := w.quiesce(ctx)
	if err != nil {
		return stop(err)
	}
	add(w.checkFailedJobs(jobs))
	for _, n := range w.diskNames() {
		d := w.disks[n]
		if d.granted {
			if err := w.endAccess(ctx, d); err != nil {
				return stop(err)
			}
		}
		got, err := w.readAll(ctx, client.Disks, rgDisks, d.name)
		if err != nil {
			return stop(err)
		}
		add(resolve(d, got))
	}
	ds, err := w.c.ListDisks(ctx, rgDisks)
	if err != nil {
		return stop(err)
	}
	for _, d := range ds {
		if d.Properties.ProvisioningState != "Succeeded" {
			add(fmt.Errorf("disk %s is %s", d.Name, d.Properties.ProvisioningState))
		}
	}
	if err := w.checkInstances(ctx); err != nil {
		return stop(err)
	}
	// Now and then a whole GC run, so that what kills during GC left
	// behind is collected (the clock jumps let its safety margin pass)
	// before the points are read back and verify runs.
	if rng.IntN(3) == 0 {
		add(w.gc(ctx, rng))
	}
	if err := w.checkPoints(ctx, p); err != nil {
		return stop(err)
	}
	if err := w.checkRestores(ctx, jobs); err != nil {
		return stop(err)
	}
	if err := w.readBackPoints(ctx, rng); err != nil {
		return stop(err)
	}
	add(w.verify(ctx, rng))
	ps, err := w.c.ListPolicies(ctx, rgDisks, vaultName)
	if err != nil {
		return stop(err)
	}
	names := map[string]bool{}
	for _, p := range ps {
		names[p.Name] = true
	}
	w.mu.Lock()
	for n := range w.policies {
		if !names[n] {
			delete(w.policies, n)
		}
	}
	w.mu.Unlock()
	return errors.Join(findings...)
}

// checkOperations waits for every operation the test started to end.
func (w *world) checkOperations(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var findings []error
	for _, op := range w.ops {
		for {
			done, err := w.opDone(ctx, op)
			if err != nil {
				findings = append(findings, fmt.Errorf("operation %s (%s): %w", op.what, op.async+op.location, err))
				break
			}
			if done {
				break
			}
			if ctx.Err() != nil {
				findings = append(findings, fmt.Errorf("operation %s (%s) is still InProgress 2 minutes after the restart", op.what, op.async+op.location))
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	w.count("operations followed to their end", len(w.ops))
	w.ops = nil
	return errors.Join(findings...)
}

// opDone reports whether an operation has ended (successfully or not).
func (w *world) opDone(ctx context.Context, op opURL) (bool, error) {
	if op.async != "" {
		var st client.OperationStatus
		if _, err := w.c.Do(ctx, http.MethodGet, op.async, "", nil, nil, &st); err != nil {
			return false, err
		}
		switch strings.ToLower(st.Status) {
		case "succeeded", "failed", "canceled":
			return true, nil
		case "inprogress", "running", "accepted":
			return false, nil
		}
		return false, fmt.Errorf("unknown status %q", st.Status)
	}
	resp, err := w.c.Do(ctx, http.MethodGet, op.location, "", nil, nil, nil)
	if e := client.AsError(err); e != nil && e.Code != "" && e.StatusCode != http.StatusNotFound {
		return true, nil // the operation's failure, in ARM's shape
	}
	if err != nil {
		return false, err
	}
	return resp.StatusCode != http.StatusAccepted, nil
}

// quiesce waits until no job of the vault is InProgress and returns the
// jobs.
func (w *world) quiesce(ctx context.Context) ([]client.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		jobs, err := w.c.ListJobs(ctx, rgDisks, vaultName, "")
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		var busy []string
		for _, j := range jobs {
			if j.Properties.Status == string(job.InProgress) {
				busy = append(busy, j.Properties.Operation+" "+j.Name)
			}
		}
		if len(busy) == 0 {
			return jobs, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("jobs still InProgress 3 minutes after the restart: %v", busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// interrupted reports whether a failed job failed because its work was
// interrupted by server stops (a clean, visible end).
func interrupted(j client.Job) bool {
	for _, e := range j.Properties.ErrorDetails {
		if e.Code == "JobInterrupted" || strings.Contains(e.Message, job.ErrInterrupted.Error()) {
			return true
		}
	}
	return false
}

// checkFailedJobs: a job may fail only because kills interrupted it too
// often; any other failure in this world (where every role is in place)
// is a finding. Each job is looked at once.
func (w *world) checkFailedJobs(jobs []client.Job) error {
	var findings []error
	for _, j := range jobs {
		key := "job " + j.Name
		w.mu.Lock()
		seen := w.stats[key] > 0
		w.stats[key] = 1
		w.mu.Unlock()
		if seen || j.Properties.Status == string(job.Completed) {
			continue
		}
		if interrupted(j) {
			w.count("jobs failed for interruptions", 1)
			continue
		}
		findings = append(findings, fmt.Errorf("job %s (%s) ended %s: %v", j.Name, j.Properties.Operation, j.Properties.Status, j.Properties.ErrorDetails))
	}
	return errors.Join(findings...)
}

// checkInstances compares the backup instances with the world, adopting
// what the server says about those whose change was in flight.
func (w *world) checkInstances(ctx context.Context) error {
	list, err := w.c.ListInstances(ctx, rgDisks, vaultName)
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	got := map[string]client.Instance{}
	for _, x := range list {
		got[strings.ToLower(x.Name)] = x
	}
	var findings []error
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, in := range w.instances {
		x, ok := got[strings.ToLower(name)]
		delete(got, strings.ToLower(name))
		switch {
		case in.deleted && !ok:
			delete(w.instances, name)
			w.dropPoints(name)
		case in.deleted && x.Properties.ProvisioningState == "Failed":
			// Its deletion failed for good (interrupted too often): it is
			// usable again, as the failed job says.
			in.deleted, in.unsure = false, false
			in.state = x.Properties.CurrentProtectionState
		case in.deleted:
			findings = append(findings, fmt.Errorf("instance %s: deletion was accepted, but it is still listed (%s, %s)",
				name, x.Properties.ProvisioningState, x.Properties.CurrentProtectionState))
		case in.unsure && !ok:
			delete(w.instances, name)
			w.dropPoints(name)
		case !ok:
			findings = append(findings, fmt.Errorf("instance %s (%s) is gone", name, in.state))
		case in.unsure:
			in.unsure = false
			in.state = x.Properties.CurrentProtectionState
			in.policy = lastSegment(x.Properties.PolicyInfo.PolicyID)
		case x.Properties.CurrentProtectionState != in.state:
			findings = append(findings, fmt.Errorf("instance %s is %s, want %s", name, x.Properties.CurrentProtectionState, in.state))
		}
		if ok && !in.deleted && x.Properties.ProvisioningState != "Succeeded" && x.Properties.ProvisioningState != "Failed" {
			findings = append(findings, fmt.Errorf("instance %s is left %s", name, x.Properties.ProvisioningState))
		}
	}
	for name := range got {
		findings = append(findings, fmt.Errorf("instance %s is listed but was never created", name))
	}
	return errors.Join(findings...)
}

// dropPoints forgets the points of a deleted instance (w.mu held).
func (w *world) dropPoints(instance string) {
	for k, r := range w.rps {
		if strings.EqualFold(r.instance, instance) {
			delete(w.rps, k)
		}
	}
}

// checkPoints lists every instance's recovery points: a new one is the
// contents its disk has now (nothing writes a disk while a backup of it
// may run); each has a succeeded snapshot; a known one may vanish only
// once expired; and every snapshot of the snapshot group belongs to a
// listed point.
func (w *world) checkPoints(ctx context.Context, p *process) error {
	var findings []error
	listed := map[string]bool{}
	snaps := map[string]bool{}
	for _, in := range w.live() {
		rps, err := w.c.ListRecoveryPoints(ctx, rgDisks, vaultName, in.name, "")
		if err != nil {
			return fmt.Errorf("list recovery points of %s: %w", in.name, err)
		}
		for _, x := range rps {
			k := rpKey(in.name, x.Name)
			listed[k] = true
			snap := snapshotOf(x)
			snaps[strings.ToLower(snap)] = true
			w.mu.Lock()
			if w.rps[k] == nil {
				exp, _ := time.Parse(time.RFC3339, x.Properties.ExpiryTime)
				w.rps[k] = &rp{instance: in.name, name: x.Name, snapshot: snap, sha: sha(w.disks[in.disk].content), expiry: exp}
				w.stats["recovery points"]++
			}
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	for k, r := range w.rps {
		if listed[k] {
			// Retention deletes expired points (it retries within the
			// hour when a run fails): none stays listed long past its
			// expiry while its instance is protected.
			in := w.instances[r.instance]
			late := in != nil && in.state == "ProtectionConfigured" && r.expiry.Before(p.now().Add(-2*time.Hour))
			if late && r.overdue {
				findings = append(findings, fmt.Errorf("recovery point %s of %s is still listed, its expiry %s long past",
					r.name, r.instance, r.expiry.Format(time.RFC3339)))
			}
			r.overdue = late
			continue
		}
		if r.expiry.After(p.now()) {
			findings = append(findings, fmt.Errorf("recovery point %s of %s vanished before its expiry %s", r.name, r.instance, r.expiry.Format(time.RFC3339)))
		} else {
			w.stats["recovery points expired"]++
		}
		delete(w.rps, k)
	}
	w.mu.Unlock()
	ss, err := w.c.ListSnapshots(ctx, rgSnaps)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	for _, s := range ss {
		if !snaps[strings.ToLower(s.ID)] {
			findings = append(findings, fmt.Errorf("snapshot %s (%s) is orphaned: no listed recovery point uses it", s.Name, s.Properties.ProvisioningState))
		} else if s.Properties.ProvisioningState != "Succeeded" {
			findings = append(findings, fmt.Errorf("snapshot %s of a listed recovery point is %s", s.Name, s.Properties.ProvisioningState))
		}
		delete(snaps, strings.ToLower(s.ID))
	}
	for s := range snaps {
		findings = append(findings, fmt.Errorf("a listed recovery point's snapshot %s does not exist", s))
	}
	return errors.Join(findings...)
}

// checkRestores settles the restores a kill interrupted: a restore whose
// job completed must read as its point; one that failed or never started
// must have left no disk; every restored disk is then deleted.
func (w *world) checkRestores(ctx context.Context, jobs []client.Job) error {
	var findings []error
	disks, err := w.c.ListDisks(ctx, rgRestores)
	if err != nil {
		return fmt.Errorf("list restored disks: %w", err)
	}
	present := map[string]client.Disk{}
	for _, d := range disks {
		present[strings.ToLower(d.Name)] = d
	}
	completed := map[string]bool{}
	for _, j := range jobs {
		if j.Properties.ExtendedInfo != nil && j.Properties.Status == string(job.Completed) {
			completed[strings.ToLower(lastSegment(j.Properties.ExtendedInfo.RecoveryDestination))] = true
		}
	}
	for _, r := range append([]restore(nil), w.restores...) {
		d, ok := present[strings.ToLower(r.target)]
		delete(present, strings.ToLower(r.target))
		switch {
		case !ok && completed[strings.ToLower(r.target)] && !r.deleting:
			findings = append(findings, fmt.Errorf("restore to %s completed but the disk does not exist", r.target))
		case !ok:
			w.drop(r.target)
		case !completed[strings.ToLower(r.target)]:
			findings = append(findings, fmt.Errorf("restore to %s did not complete, but left the disk (%s)", r.target, d.Properties.ProvisioningState))
			w.drop(r.target)
		default:
			pt := &rp{instance: r.instance, name: r.rp, sha: r.sha}
			if err := w.checkRestored(ctx, r.target, pt); err != nil {
				findings = append(findings, err)
			}
			if k := rpKey(r.instance, r.rp); w.rps[k] != nil {
				w.rps[k].restored = true
			}
		}
	}
	for name, d := range present {
		findings = append(findings, fmt.Errorf("disk %s in %s was never restored by the test (%s)", name, rgRestores, d.Properties.ProvisioningState))
	}
	return errors.Join(findings...)
}

func (w *world) drop(target string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.restores {
		if w.restores[i].target == target {
			w.restores = append(w.restores[:i], w.restores[i+1:]...)
			return
		}
	}
}

// readBackPoints reads the snapshot of every point not yet read back, and
// restores two points (those never restored first) to new disks.
func (w *world) readBackPoints(ctx context.Context, rng *rand.Rand) error {
	var findings []error
	for _, r := range w.rpList() {
		if r.checked {
			continue
		}
		b, err := w.readAll(ctx, client.Snapshots, rgSnaps, lastSegment(r.snapshot))
		if e := client.AsError(err); e != nil && e.StatusCode == http.StatusNotFound && !r.expiry.After(w.now()) {
			continue // expired and deleted by retention meanwhile
		}
		if err != nil {
			return err
		}
		if got := sha(b); got != r.sha {
			findings = append(findings, fmt.Errorf("%w: the snapshot of recovery point %s of %s reads sha256 %s, want %s", errCorrupt, r.name, r.instance, got, r.sha))
		}
		r.checked = true
		w.count("recovery points read back", 1)
	}
	for range 2 {
		if err := w.restoreOne(ctx, rng); err != nil {
			findings = append(findings, err)
		}
	}
	return errors.Join(findings...)
}
