package crash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"coffer/internal/client"
	"coffer/internal/e2e"
	"coffer/internal/nbd/nbdtest"
)

// A scenario is work the matrix kills the server during. run returns the
// first error it meets; after a kill that is expected, before it a
// failure.
type scenario struct {
	name   string
	weight int
	run    func(w *world, ctx context.Context, rng *rand.Rand) error
	// ready, when set, says whether the world allows the scenario now.
	ready func(w *world) bool
}

var scenarios = []scenario{
	{"backup", 4, (*world).backupNow, func(w *world) bool { return len(w.backupCandidates()) > 0 }},
	{"restore", 3, (*world).restoreOne, func(w *world) bool { return len(w.restoreCandidates()) > 0 }},
	{"upload-sas", 2, func(w *world, ctx context.Context, rng *rand.Rand) error {
		return w.uploadSAS(ctx, rng, w.disks[w.diskNames()[rng.IntN(len(w.disks))]], 4+rng.IntN(20))
	}, nil},
	{"upload-nbd", 2, (*world).uploadNBD, nil},
	{"gc", 2, (*world).gc, nil},
	{"verify", 1, (*world).verify, nil},
	{"policy", 1, (*world).changePolicy, nil},
	{"instance", 3, (*world).changeInstance, nil},
	// recovery kills the server while it is idle, restarts it hours later
	// and kills it again while it catches up: scheduled backups that came
	// due and retention of expired points, and the recovery of what the
	// first kill interrupted (the loop runs it; see TestCrashMatrix).
	{"recovery", 2, nil, nil},
}

// pick chooses a scenario the world allows, by weight.
func pick(rng *rand.Rand, w *world) scenario {
	var ok []scenario
	total := 0
	for _, s := range scenarios {
		if s.ready == nil || s.ready(w) {
			ok = append(ok, s)
			total += s.weight
		}
	}
	n := rng.IntN(total)
	for _, s := range ok {
		if n < s.weight {
			return s
		}
		n -= s.weight
	}
	panic("unreachable")
}

func (w *world) backupCandidates() []*instance {
	var out []*instance
	for _, in := range w.live() {
		if in.state == "ProtectionConfigured" && !in.unsure {
			out = append(out, in)
		}
	}
	return out
}

// restoreCandidates are the points read back at least once that do not
// expire within the hour.
func (w *world) restoreCandidates() []*rp {
	var out []*rp
	for _, r := range w.rpList() {
		if in := w.instances[r.instance]; in != nil && !in.deleted && r.checked && r.expiry.After(w.now().Add(time.Hour)) {
			out = append(out, r)
		}
	}
	return out
}

func (w *world) backupRule(ctx context.Context, policy string) (string, error) {
	p, err := w.c.GetPolicy(ctx, rgDisks, vaultName, policy)
	if err != nil {
		return "", err
	}
	return p.BackupRule()
}

// backupNow backs up a protected disk on demand and waits for the job.
func (w *world) backupNow(ctx context.Context, rng *rand.Rand) error {
	cands := w.backupCandidates()
	if len(cands) == 0 {
		return nil
	}
	in := cands[rng.IntN(len(cands))]
	rule, err := w.backupRule(ctx, in.policy)
	if err != nil {
		return err
	}
	body, err := w.lro(ctx, "backup "+in.name, http.MethodPost, w.dpPath("backupInstances", in.name, "backup"), client.DataProtectionVersion,
		map[string]any{"backupRuleOptions": map[string]any{"ruleName": rule, "triggerOption": map[string]any{"retentionTagOverride": "Default"}}})
	if tolerated(err) {
		w.count("on-demand backups refused by the daily limit", 1)
		return nil
	}
	if err != nil {
		return fmt.Errorf("back up %s: %w", in.name, err)
	}
	id, err := w.jobOf(body)
	if err != nil {
		return err
	}
	w.mark()
	j, err := e2e.WaitJob(ctx, w.c, rgDisks, vaultName, id)
	if err != nil {
		return err
	}
	w.count("on-demand backups", 1)
	return e2e.JobError(j)
}

// restoreOne restores a recovery point to a new disk, reads it at once
// (while it hydrates), compares and deletes it.
func (w *world) restoreOne(ctx context.Context, rng *rand.Rand) error {
	cands := w.restoreCandidates()
	if len(cands) == 0 {
		return nil
	}
	r := cands[rng.IntN(len(cands))]
	for _, c := range cands { // prefer one never restored
		if !c.restored {
			r = c
			break
		}
	}
	target := fmt.Sprintf("r%d", w.next())
	w.mu.Lock()
	w.restores = append(w.restores, restore{instance: r.instance, rp: r.name, target: target, sha: r.sha})
	w.mu.Unlock()
	req := client.RestoreRequest(r.name, e2e.DiskID(w.sub, rgRestores, target), location)
	body, err := w.lro(ctx, "restore "+r.name, http.MethodPost, w.dpPath("backupInstances", r.instance, "restore"), client.DataProtectionVersion, req)
	if tolerated(err) {
		w.count("restores refused by the daily limit", 1)
		w.drop(target)
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", r.name, err)
	}
	id, err := w.jobOf(body)
	if err != nil {
		return err
	}
	j, err := e2e.WaitJob(ctx, w.c, rgDisks, vaultName, id)
	if err != nil {
		return err
	}
	if err := e2e.JobError(j); err != nil {
		return err
	}
	w.mark() // the disk hydrates
	return w.checkRestored(ctx, target, r)
}

// checkRestored reads a restored disk, compares it with the point's
// contents and deletes it.
func (w *world) checkRestored(ctx context.Context, target string, r *rp) error {
	b, err := w.readAll(ctx, client.Disks, rgRestores, target)
	if err != nil {
		return err
	}
	if got := sha(b); got != r.sha {
		return fmt.Errorf("%w: recovery point %s of %s restored to %s reads sha256 %s, want %s", errCorrupt, r.name, r.instance, target, got, r.sha)
	}
	w.mu.Lock()
	r.restored = true
	w.mu.Unlock()
	w.count("restores read back", 1)
	w.mu.Lock()
	for i := range w.restores {
		if w.restores[i].target == target {
			w.restores[i].deleting = true
		}
	}
	w.mu.Unlock()
	if _, err := w.lro(ctx, "delete disk "+target, http.MethodDelete,
		w.groupID(rgRestores)+"/providers/Microsoft.Compute/disks/"+target, client.ComputeVersion, nil); err != nil {
		return fmt.Errorf("delete restored disk %s: %w", target, err)
	}
	w.drop(target)
	return nil
}

// errCorrupt marks a finding: data that differs from what was committed.
var errCorrupt = errors.New("data differs")

// uploadNBD writes random data, zeroes and trims to a disk over NBD,
// flushing now and then. Writes are sure once a flush after them is
// acknowledged.
func (w *world) uploadNBD(ctx context.Context, rng *rand.Rand) error {
	d := w.disks[w.diskNames()[rng.IntN(len(w.disks))]]
	w.mu.Lock()
	d.granted = true
	w.mu.Unlock()
	body, err := w.lro(ctx, "grant write "+d.name, http.MethodPost, w.computePath(d.name)+"/beginGetAccess", client.ComputeVersion,
		map[string]any{"access": "Write", "durationInSeconds": 3600})
	if err != nil {
		return fmt.Errorf("grant write on %s: %w", d.name, err)
	}
	var a client.AccessURI
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	u, err := url.Parse(a.NBDURL)
	if err != nil || a.NBDURL == "" {
		return fmt.Errorf("grant on %s has no NBD URL (%q): %v", d.name, a.NBDURL, err)
	}
	nc, err := nbdtest.Dial(ctx, u.Host, strings.TrimPrefix(u.Path, "/"), nbdtest.Options{})
	if err != nil {
		return fmt.Errorf("NBD connect to %s: %w", d.name, err)
	}
	defer nc.Close()
	flush := func() error {
		if _, err := nc.Do(nbdtest.CmdFlush, 0, 0, 0, nil); err != nil {
			return fmt.Errorf("NBD flush of %s: %w", d.name, err)
		}
		w.mu.Lock()
		for _, wr := range d.unsure {
			copy(d.content[wr.off:], wr.data)
		}
		d.unsure = nil
		w.mu.Unlock()
		w.count("NBD flushes", 1)
		return nil
	}
	n := 4 + rng.IntN(24)
	for i := range n {
		wr := randomWrite(rng)
		w.mu.Lock()
		d.unsure = append(d.unsure, wr)
		w.mu.Unlock()
		w.mark()
		switch {
		case isZero(wr.data) && rng.IntN(2) == 0:
			_, err = nc.Do(nbdtest.CmdTrim, 0, uint64(wr.off), uint32(len(wr.data)), nil)
		case isZero(wr.data):
			_, err = nc.Do(nbdtest.CmdWriteZeroes, 0, uint64(wr.off), uint32(len(wr.data)), nil)
		default:
			_, err = nc.WriteAt(wr.data, wr.off)
		}
		if err != nil {
			return fmt.Errorf("NBD write of %d bytes at %d of %s: %w", len(wr.data), wr.off, d.name, err)
		}
		w.count("NBD writes", 1)
		if rng.IntN(4) == 0 || i == n-1 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := nc.Disconnect(); err != nil {
		return fmt.Errorf("NBD disconnect from %s: %w", d.name, err)
	}
	return w.endAccess(ctx, d)
}

// admin runs a Coffer.Admin operation and decodes its result.
func (w *world) admin(ctx context.Context, op string, out any) error {
	w.mark()
	body, err := w.lro(ctx, "admin "+op, http.MethodPost, "/providers/Coffer.Admin/"+op, client.IdentityVersion, nil)
	if err != nil {
		return fmt.Errorf("admin %s: %w", op, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin %s: decode %q: %w", op, body, err)
	}
	return nil
}

func (w *world) gc(ctx context.Context, _ *rand.Rand) error {
	var res struct {
		Problems      []string `json:"problems"`
		DeletedChunks int      `json:"deletedChunks"`
		PacksDeleted  int      `json:"packsDeleted"`
		Rewritten     int      `json:"packsRewritten"`
	}
	if err := w.admin(ctx, "gc", &res); err != nil {
		return err
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("%w: gc found problems: %v", errCorrupt, res.Problems)
	}
	w.count("gc runs", 1)
	w.count("chunks deleted by gc", res.DeletedChunks)
	w.count("packs deleted or rewritten by gc", res.PacksDeleted+res.Rewritten)
	return nil
}

type verifyResult struct {
	OK       bool            `json:"ok"`
	Packs    int             `json:"packs"`
	Chunks   int             `json:"chunks"`
	Problems json.RawMessage `json:"problems"`
}

func (w *world) verify(ctx context.Context, _ *rand.Rand) error {
	var v verifyResult
	if err := w.admin(ctx, "verify", &v); err != nil {
		return err
	}
	if !v.OK {
		return fmt.Errorf("%w: verify: %d packs, %d chunks, problems %s", errCorrupt, v.Packs, v.Chunks, v.Problems)
	}
	w.count("verify runs", 1)
	return nil
}

// changePolicy creates or updates an extra policy, or deletes one no
// instance uses.
func (w *world) changePolicy(ctx context.Context, rng *rand.Rand) error {
	name := fmt.Sprintf("extra-%d", rng.IntN(3))
	used := false
	for _, in := range w.live() {
		used = used || strings.EqualFold(in.policy, name)
	}
	if !used && rng.IntN(3) == 0 {
		err := w.c.DeletePolicy(ctx, rgDisks, vaultName, name)
		if e := client.AsError(err); e != nil && e.StatusCode == http.StatusNotFound {
			err = nil
		}
		if err == nil {
			w.mu.Lock()
			delete(w.policies, name)
			w.mu.Unlock()
		}
		return err
	}
	o := client.DiskPolicyOptions{Hours: []int{1, 2, 4}[rng.IntN(3)], Retention: []string{"6h", "1d", "3d"}[rng.IntN(3)]}
	props, err := client.BuildDiskPolicy(o)
	if err != nil {
		return err
	}
	if _, err := w.c.PutPolicy(ctx, rgDisks, vaultName, name, props); err != nil {
		return fmt.Errorf("put policy %s: %w", name, err)
	}
	w.mu.Lock()
	w.policies[name] = o
	w.mu.Unlock()
	return nil
}

// changeInstance protects an unprotected disk, or changes an instance:
// another policy, stop, suspend or resume protection, or delete.
func (w *world) changeInstance(ctx context.Context, rng *rand.Rand) error {
	var free []string
	for _, d := range w.diskNames() {
		if w.instanceOf(d) == nil {
			free = append(free, d)
		}
	}
	live := w.live()
	if len(free) > 0 && (len(live) == 0 || rng.IntN(3) == 0) {
		w.mark()
		return w.protect(ctx, w.disks[free[rng.IntN(len(free))]], w.policyNames()[rng.IntN(len(w.policyNames()))])
	}
	if len(live) == 0 {
		return nil
	}
	in := live[rng.IntN(len(live))]
	w.mark()
	switch k := rng.IntN(5); {
	case k == 0:
		pol := w.policyNames()[rng.IntN(len(w.policyNames()))]
		w.mu.Lock()
		in.unsure = true
		w.mu.Unlock()
		props := client.InstanceBody(e2e.DiskID(w.sub, rgDisks, in.disk), location, w.dpPath("backupPolicies", pol), w.groupID(rgSnaps))
		if _, err := w.lro(ctx, "update "+in.name, http.MethodPut, w.dpPath("backupInstances", in.name), client.DataProtectionVersion,
			map[string]any{"properties": props}); err != nil {
			return fmt.Errorf("update %s: %w", in.name, err)
		}
		w.mu.Lock()
		in.policy, in.unsure = pol, false
		w.mu.Unlock()
	case k == 1:
		w.mu.Lock()
		in.unsure = true
		w.mu.Unlock()
		resp, err := w.c.Do(ctx, http.MethodDelete, w.dpPath("backupInstances", in.name), client.DataProtectionVersion, nil, nil, nil)
		if err != nil {
			return fmt.Errorf("delete %s: %w", in.name, err)
		}
		w.mu.Lock()
		in.deleted = true
		w.ops = append(w.ops, opURL{async: resp.Header.Get("Azure-AsyncOperation"), location: resp.Header.Get("Location"), what: "delete " + in.name})
		w.mu.Unlock()
		if _, err := w.c.Wait(ctx, resp, nil); err != nil {
			return fmt.Errorf("delete %s: %w", in.name, err)
		}
		w.count("instances deleted", 1)
	default:
		// Stop or suspend only while another instance takes backups.
		action, state := "resumeProtection", "ProtectionConfigured"
		switch {
		case in.state != "ProtectionConfigured" || len(w.backupCandidates()) < 2:
		case k == 3:
			action, state = "suspendBackups", "BackupSchedulesSuspended"
		default:
			action, state = "stopProtection", "ProtectionStopped"
		}
		w.mu.Lock()
		in.unsure = true
		w.mu.Unlock()
		if _, err := w.lro(ctx, action+" "+in.name, http.MethodPost, w.dpPath("backupInstances", in.name, action), client.DataProtectionVersion, map[string]any{}); err != nil {
			return fmt.Errorf("%s %s: %w", action, in.name, err)
		}
		w.mu.Lock()
		in.state, in.unsure = state, false
		w.mu.Unlock()
	}
	return nil
}

func (w *world) policyNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.policies {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
