package e2e

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"

	"coffer/internal/cluster"
	"coffer/internal/rbac"
	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

var (
	jobsDisks  = flag.Int("jobs.disks", 0, "disks of TestJobsPerSecondNodes (0: skip it)")
	jobsRounds = flag.Int("jobs.rounds", 2, "rounds of one node and of two nodes, alternated, of TestJobsPerSecondNodes")
)

// TestJobsPerSecondNodes measures on-demand backups of small disks per
// second, one node against two, on one PostgreSQL server and a local blob
// directory per round. Each round is a new installation (a new database)
// of jobs.disks disks of 1 GiB with 1 MiB written, each protected; with
// two nodes half of the disks are made through each node (placement
// local), so half are homed on each and their backups run there. The
// figure is the time from the first trigger to the last job's end, and
// the CPU that took: the test process (both nodes and the SDK clients
// driving them) and the PostgreSQL server. Rounds alternate 1 and 2 nodes.
// It runs only when asked:
//
//	go test ./internal/e2e -run TestJobsPerSecondNodes -jobs.disks 40 -jobs.rounds 2 -v -timeout 30m
func TestJobsPerSecondNodes(t *testing.T) {
	if *jobsDisks == 0 {
		t.Skip("a measurement: run with -jobs.disks N")
	}
	pg := pgtest.Start(t)
	for r := range *jobsRounds {
		for _, nodes := range []int{1, 2} {
			t.Run(fmt.Sprintf("round%d/%dnodes", r+1, nodes), func(t *testing.T) {
				jobsRound(t, pg.NewDatabase(t), nodes, *jobsDisks)
			})
		}
	}
}

func jobsRound(t *testing.T, db string, nodes, disks int) {
	const loc = "local"
	o := Options{DB: db, Blob: t.TempDir(), Placement: "local", NodeName: "node-a"}
	a := startDP(t, o)
	envs := []*dpEnv{a}
	if nodes == 2 {
		o.NodeName = "node-b"
		envs = append(envs, joinDP(t, a, o))
	}
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault"} {
		a.group(t, g, loc)
	}
	v := a.vault(t, "rg-vault", "vault1", loc)
	pol := a.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	rg := "/subscriptions/" + a.sub + "/resourceGroups/"
	a.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskBackupReader, rg+"rg-disks")
	a.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskSnapshotContributor, rg+"rg-snaps")
	via := func(i int) *dpEnv { return envs[i%len(envs)] } // the disk's home
	for i := range disks {
		e, name := via(i), fmt.Sprintf("d%03d", i)
		src := e.disk(t, "rg-disks", name, loc, "StandardSSD_LRS")
		e.write(t, "rg-disks", name, byte(i), 0)
		var home string
		if err := e.Server.Store().View(e.ctx, func(tx store.Tx) error {
			var err error
			home, err = cluster.Home(e.ctx, tx, *src.ID)
			return err
		}); err != nil || home != e.Server.NodeName() {
			t.Fatalf("disk %s made through %s is homed on %q (%v)", name, e.Server.NodeName(), home, err)
		}
		if _, err := a.protect("rg-vault", "vault1", name+"-bi", biBody(*src.ID, loc, *pol.ID, rg+"rg-snaps")); err != nil {
			t.Fatalf("protect %s: %v", name, err)
		}
	}

	cpu0, pg0 := selfCPU(t), postgresCPU(t, db)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, disks)
	jobIDs := make([]string, disks)
	for i := range disks {
		wg.Go(func() {
			e, bi := via(i), fmt.Sprintf("d%03d-bi", i)
			p, err := e.bis.BeginAdhocBackup(e.ctx, "rg-vault", "vault1", bi, armdataprotection.TriggerBackupRequest{BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{
				RuleName: to.Ptr("BackupHourly"), TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr("Default")}}}, nil)
			if err != nil {
				errs <- fmt.Errorf("backup %s: %w", bi, err)
				return
			}
			res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
			if err != nil {
				errs <- fmt.Errorf("backup %s: %w", bi, err)
				return
			}
			jobIDs[i] = *res.JobID
		})
	}
	wg.Wait()
	for i, id := range jobIDs {
		if id == "" {
			continue
		}
		if j := via(i).waitJob(t, "rg-vault", "vault1", id); *j.Status != "Completed" {
			t.Errorf("backup of d%03d: job %s", i, *j.Status)
		}
	}
	wall := time.Since(start)
	cpu, pgCPU := selfCPU(t)-cpu0, postgresCPU(t, db)-pg0
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d node(s), %d backups: %.2f s, %.2f jobs/s; CPU per job: %.3f s Coffer and clients, %.3f s PostgreSQL",
		nodes, disks, wall.Seconds(), float64(disks)/wall.Seconds(), cpu.Seconds()/float64(disks), pgCPU.Seconds()/float64(disks))
}

// selfCPU is the CPU time (user and system) the test process has used.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time of the PostgreSQL server listening on db's
// port: its postmaster's, with the backends it reaped, and its live
// backends'.
func postgresCPU(t *testing.T, db string) time.Duration {
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	port := "\x00-p\x00" + u.Port() + "\x00"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var master string
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), port) && strings.HasSuffix(strings.SplitN(string(b), "\x00", 2)[0], "postgres") {
			master = filepath.Base(filepath.Dir(p))
		}
	}
	if master == "" {
		t.Fatalf("no postmaster on port %s", u.Port())
	}
	var ticks int64
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if err != nil {
			continue // gone
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		// f[0] is field 3 (state): ppid is f[1], utime..cstime f[11..14].
		pid := filepath.Base(filepath.Dir(p))
		n := 2 // utime, stime
		switch {
		case pid == master:
			n = 4 // and the reaped children's
		case f[1] != master:
			continue
		}
		for _, s := range f[11 : 11+n] {
			v, _ := strconv.ParseInt(s, 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
