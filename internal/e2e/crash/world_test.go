package crash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"coffer/internal/client"
	"coffer/internal/dataprotection"
	"coffer/internal/e2e"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// The world the matrix drives: a few small disks whose every byte the test
// knows, a vault with instances on some of them, and everything the server
// acknowledged. After each kill and restart, check compares the server with
// it.
const (
	diskSize   = 16 << 20
	sectorSize = 512
	location   = "local"

	rgDisks    = "crash"
	rgSnaps    = "crash-snapshots"
	rgRestores = "crash-restores"
	vaultName  = "vault"
)

// The first policies: hourly backups kept two days or four hours, so that
// the clock jumps between restarts make scheduled backups and retention
// due.
var basePolicies = map[string]client.DiskPolicyOptions{
	"hourly-2d": {Hours: 1, Retention: "2d"},
	"hourly-4h": {Hours: 1, Retention: "4h"},
}

// write is one write the server was sent but that is not known durable:
// in flight at a kill (SAS), or acknowledged but not flushed (NBD).
type write struct {
	off  int64
	data []byte // zeros for a clear, trim or write-zeroes
}

type disk struct {
	name    string
	content []byte  // what the disk holds, as far as the server acknowledged durably
	unsure  []write // writes that may or may not have landed
	granted bool    // an access grant may be open
}

type instance struct {
	name, disk, policy string
	state              string // currentProtectionState expected
	// unsure: a change was in flight at a kill; the server's answer is
	// adopted at the next check.
	unsure  bool
	deleted bool // deletion acknowledged: it must go, with its points
}

// rp is a recovery point the test has seen listed.
type rp struct {
	instance, name, snapshot string
	sha                      string // the disk's SHA-256 when it was taken
	expiry                   time.Time
	checked                  bool // its snapshot read back identical
	restored                 bool // a restore of it read back identical
	overdue                  bool // listed past its expiry at a check
}

// restore is a restore the test started.
type restore struct {
	instance, rp, target, sha string
	deleting                  bool // its disk, read back, is being deleted
}

// opURL is a long-running operation the test started.
type opURL struct{ async, location, what string }

type world struct {
	c       *client.Client
	sub     string
	vaultID string // the vault identity's principal

	mu        sync.Mutex
	disks     map[string]*disk
	instances map[string]*instance
	rps       map[string]*rp // by instance/name, lower case
	restores  []restore
	ops       []opURL
	policies  map[string]client.DiskPolicyOptions
	now       func() time.Time // the server's clock
	// mark tells the killer that the running scenario has reached its
	// critical part.
	mark  func()
	gen   int
	stats map[string]int
}

func newWorld() *world {
	w := &world{mark: func() {}, disks: map[string]*disk{}, instances: map[string]*instance{}, rps: map[string]*rp{}, stats: map[string]int{},
		policies: map[string]client.DiskPolicyOptions{}}
	for n, o := range basePolicies {
		w.policies[n] = o
	}
	return w
}

func (w *world) count(what string, n int) {
	w.mu.Lock()
	w.stats[what] += n
	w.mu.Unlock()
}

func (w *world) next() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	return w.gen
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (w *world) groupID(rg string) string { return "/subscriptions/" + w.sub + "/resourceGroups/" + rg }

func (w *world) dpPath(rest ...string) string {
	return w.groupID(rgDisks) + "/providers/Microsoft.DataProtection/backupVaults/" + vaultName + "/" + strings.Join(rest, "/")
}

// lro sends a request that may start a long-running operation, records
// the operation's status URL for the checks, and waits for its end.
func (w *world) lro(ctx context.Context, what, method, p, version string, body any) ([]byte, error) {
	resp, err := w.c.Do(ctx, method, p, version, nil, body, nil)
	if err != nil {
		return nil, err
	}
	if a, l := resp.Header.Get("Azure-AsyncOperation"), resp.Header.Get("Location"); a != "" || l != "" {
		w.mu.Lock()
		w.ops = append(w.ops, opURL{async: a, location: l, what: what})
		w.mu.Unlock()
	}
	return w.c.Wait(ctx, resp, nil)
}

func (w *world) jobOf(body []byte) (string, error) {
	var info struct {
		JobID string `json:"jobId"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.JobID == "" {
		return "", fmt.Errorf("no job ID in %q (%v)", body, err)
	}
	return info.JobID, nil
}

// setup creates the world on a new server: groups, the vault and its
// roles, the policies, four disks with known contents and two protected.
func (w *world) setup(ctx context.Context, rng *rand.Rand) error {
	c := w.c
	for _, g := range []string{rgDisks, rgSnaps, rgRestores} {
		if _, err := c.CreateGroup(ctx, g, location, nil); err != nil {
			return fmt.Errorf("create group %s: %w", g, err)
		}
	}
	v, err := c.CreateVault(ctx, rgDisks, vaultName, location, "")
	if err != nil {
		return fmt.Errorf("create vault: %w", err)
	}
	w.vaultID = v.PrincipalID()
	for _, a := range []struct{ role, scope string }{
		{rbac.RoleDiskBackupReader, w.groupID(rgDisks)},
		{rbac.RoleDiskSnapshotContributor, w.groupID(rgSnaps)},
		{rbac.RoleDiskRestoreOperator, w.groupID(rgRestores)},
	} {
		def := "/subscriptions/" + w.sub + "/providers/Microsoft.Authorization/roleDefinitions/" + a.role
		if _, err := c.CreateRoleAssignment(ctx, a.scope, identity.NewGUID(), def, w.vaultID, "ServicePrincipal"); err != nil {
			return fmt.Errorf("assign role %s: %w", a.role, err)
		}
	}
	for name, o := range w.policies {
		props, err := client.BuildDiskPolicy(o)
		if err != nil {
			return err
		}
		if _, err := c.PutPolicy(ctx, rgDisks, vaultName, name, props); err != nil {
			return fmt.Errorf("create policy %s: %w", name, err)
		}
	}
	for i := range 4 {
		d := &disk{name: fmt.Sprintf("d%d", i), content: make([]byte, diskSize)}
		if _, err := c.CreateDisk(ctx, rgDisks, d.name, client.DiskSpec{Location: location, UploadSizeBytes: diskSize}, true); err != nil {
			return fmt.Errorf("create disk %s: %w", d.name, err)
		}
		w.disks[d.name] = d
		if err := w.uploadSAS(ctx, rng, d, 24); err != nil {
			return err
		}
	}
	for _, p := range [][2]string{{"d0", "hourly-2d"}, {"d1", "hourly-4h"}} {
		if err := w.protect(ctx, w.disks[p[0]], p[1]); err != nil {
			return err
		}
	}
	return nil
}

// randomWrite is a write of 4 KiB to 1 MiB at a sector-aligned offset:
// random bytes, a repeated pattern (compressible), or zeros.
func randomWrite(rng *rand.Rand) write {
	n := []int{4 << 10, 64 << 10, 192 << 10, 1 << 20}[rng.IntN(4)]
	off := rng.Int64N((diskSize-int64(n))/sectorSize+1) * sectorSize
	data := make([]byte, n)
	switch rng.IntN(5) {
	case 0:
		// zeros
	case 1, 2:
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
	default:
		pat := fmt.Appendf(nil, "write at %d, %x\n", off, rng.Uint64())
		for i := range data {
			data[i] = pat[i%len(pat)]
		}
	}
	return write{off: off, data: data}
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// uploadSAS writes n random writes to a disk through a Write grant's SAS
// URL (page writes; zeros as clear-pages) and ends the grant. Each
// acknowledged write is durable; the one in flight at a kill is unsure.
func (w *world) uploadSAS(ctx context.Context, rng *rand.Rand, d *disk, n int) error {
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
		return fmt.Errorf("grant write on %s: %w", d.name, err)
	}
	for range n {
		wr := randomWrite(rng)
		w.mu.Lock()
		d.unsure = append(d.unsure, wr)
		w.mu.Unlock()
		w.mark()
		if isZero(wr.data) {
			err = w.c.ClearPages(ctx, a.AccessSAS, wr.off, int64(len(wr.data)))
		} else {
			err = w.c.PutPages(ctx, a.AccessSAS, wr.off, wr.data)
		}
		if err != nil {
			return fmt.Errorf("write %d bytes at %d of %s: %w", len(wr.data), wr.off, d.name, err)
		}
		w.mu.Lock()
		copy(d.content[wr.off:], wr.data)
		d.unsure = d.unsure[:len(d.unsure)-1]
		w.mu.Unlock()
		w.count("SAS page writes", 1)
	}
	return w.endAccess(ctx, d)
}

func (w *world) computePath(name string) string {
	return w.groupID(rgDisks) + "/providers/Microsoft.Compute/disks/" + name
}

func (w *world) endAccess(ctx context.Context, d *disk) error {
	if _, err := w.lro(ctx, "end access "+d.name, http.MethodPost, w.computePath(d.name)+"/endGetAccess", client.ComputeVersion, nil); err != nil {
		return fmt.Errorf("end access to %s: %w", d.name, err)
	}
	w.mu.Lock()
	d.granted = false
	w.mu.Unlock()
	return nil
}

// protect creates a backup instance of d with a policy and waits until
// protection is configured.
func (w *world) protect(ctx context.Context, d *disk, policy string) error {
	name := fmt.Sprintf("bi-%s-%d", d.name, w.next())
	in := &instance{name: name, disk: d.name, policy: policy, state: "ProtectionConfigured", unsure: true}
	w.mu.Lock()
	w.instances[name] = in
	w.mu.Unlock()
	props := client.InstanceBody(e2e.DiskID(w.sub, rgDisks, d.name), location, w.dpPath("backupPolicies", policy), w.groupID(rgSnaps))
	if _, err := w.lro(ctx, "protect "+name, http.MethodPut, w.dpPath("backupInstances", name), client.DataProtectionVersion,
		map[string]any{"properties": props}); err != nil {
		return fmt.Errorf("protect %s as %s: %w", d.name, name, err)
	}
	w.mu.Lock()
	in.unsure = false
	w.mu.Unlock()
	return nil
}

// live returns the instances not being deleted, sorted by name.
func (w *world) live() []*instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*instance
	for _, in := range w.instances {
		if !in.deleted {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *instance) int { return strings.Compare(a.name, b.name) })
	return out
}

// instanceOf returns the live instance protecting disk, or nil.
func (w *world) instanceOf(disk string) *instance {
	for _, in := range w.live() {
		if in.disk == disk {
			return in
		}
	}
	return nil
}

func (w *world) diskNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.disks {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (w *world) rpList() []*rp {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*rp
	for _, r := range w.rps {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *rp) int { return strings.Compare(a.instance+a.name, b.instance+b.name) })
	return out
}

// tolerated reports whether err is a refusal the matrix expects from a
// healthy server: Azure's daily limits of on-demand backups and restores
// (the clock jumps make days short, but the limits still bind).
func tolerated(err error) bool {
	e := client.AsError(err)
	return e != nil && (e.Code == dataprotection.CodeAdhocLimit || e.Code == dataprotection.CodeRestoreLimit)
}

// readAll reads a whole disk (or snapshot) through a read grant.
func (w *world) readAll(ctx context.Context, typ, rg, name string) ([]byte, error) {
	a, err := w.c.GrantAccess(ctx, typ, rg, name, "Read", time.Hour)
	if err != nil {
		return nil, fmt.Errorf("grant read on %s: %w", name, err)
	}
	size, err := w.c.DataSize(ctx, a.AccessSAS)
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", name, err)
	}
	var buf bytes.Buffer
	for off := int64(0); off < size; off += 4 << 20 {
		b, err := w.c.ReadRange(ctx, a.AccessSAS, off, min(4<<20, size-off))
		if err != nil {
			return nil, fmt.Errorf("read %s at %d: %w", name, off, err)
		}
		buf.Write(b)
	}
	if err := w.c.RevokeAccess(ctx, typ, rg, name); err != nil {
		return nil, fmt.Errorf("end access to %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// resolve reads a disk with unsure writes and adopts what it holds, after
// checking that every sector holds either the acknowledged contents or
// the data of one of the unsure writes that cover it.
func resolve(d *disk, got []byte) error {
	if len(got) != len(d.content) {
		return fmt.Errorf("disk %s reads %d bytes, want %d", d.name, len(got), len(d.content))
	}
	var bad []string
	for s := 0; s < len(got); s += sectorSize {
		have := got[s : s+sectorSize]
		if bytes.Equal(have, d.content[s:s+sectorSize]) {
			continue
		}
		ok := false
		for _, wr := range d.unsure {
			if int64(s) >= wr.off && int64(s) < wr.off+int64(len(wr.data)) {
				rel := int64(s) - wr.off
				ok = ok || bytes.Equal(have, wr.data[rel:rel+sectorSize])
			}
		}
		if !ok {
			bad = append(bad, fmt.Sprint(s))
			if len(bad) == 8 {
				bad = append(bad, "…")
				break
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("disk %s: sectors at %s hold neither what was acknowledged nor any write in flight (%d in flight)",
			d.name, strings.Join(bad, ", "), len(d.unsure))
	}
	copy(d.content, got)
	d.unsure = nil
	return nil
}

// rpKey is the world's key of a recovery point.
func rpKey(instance, name string) string { return strings.ToLower(instance + "/" + name) }

// snapshotOf returns the resource ID of a recovery point's snapshot.
func snapshotOf(r client.RecoveryPoint) string {
	for _, ds := range r.Properties.DataStores {
		if ds.ID != "" {
			return ds.ID
		}
	}
	return ""
}

func lastSegment(id string) string { return path.Base(id) }

// quote is for messages: a short form of an error.
func quote(err error) string {
	if err == nil {
		return "ok"
	}
	var e *client.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %s: %s", e.StatusCode, e.Code, e.Message)
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 120 {
		s = s[:min(strings.Index(s, ": "), 60)] + " … " + s[i+2:]
	}
	return s
}
