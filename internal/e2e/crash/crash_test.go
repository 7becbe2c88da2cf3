package crash

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var (
	seedFlag   = flag.Uint64("crash.seed", 0, "seed of the crash matrix's random choices (0: a new one, printed)")
	pointsFlag = flag.Int("crash.points", 60, "number of SIGKILLs the crash matrix makes")
)

// TestCrashMatrix kills `coffer serve` with SIGKILL at random moments of
// random work (see scenarios), restarts it on the same data directory with
// its clock moved forward (as if it had been down for hours: scheduled
// backups and retention come due, and GC's safety margin passes) and
// checks the server against what it acknowledged (world.check).
//
// Reproduce a failure with the seed it prints:
//
//	go test ./internal/e2e/crash -run CrashMatrix -crash.seed=N [-crash.points=M]
func TestCrashMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash matrix runs `coffer serve` for minutes; skipped with -short")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("crash matrix: seed %d, %d kill points (reproduce: go test ./internal/e2e/crash -run CrashMatrix -crash.seed=%d -crash.points=%d)",
		seed, *pointsFlag, seed, *pointsFlag)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx := context.Background()

	p := newProcess(t, cofferBinary(t), t.TempDir())
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("server log (end):\n%s", p.logTail())
		}
	})
	if err := p.start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	var err error
	if w.c, err = p.client(); err != nil {
		t.Fatal(err)
	}
	w.sub, w.now = w.c.Subscription, p.now
	if err := w.setup(ctx, rng); err != nil {
		t.Fatalf("setup: %v\n%s", err, p.logTail())
	}

	est := map[string]time.Duration{} // how long each scenario runs when not killed
	kills := map[string]int{}
	for point := 0; point < *pointsFlag; {
		sc := pick(rng, w)
		var label string
		if sc.run == nil {
			// recovery: an idle kill, a restart hours later, and one to
			// three kills while the server recovers and catches up (so
			// that tasks also run out of deliveries).
			p.kill()
			kills["idle"]++
			point++
			var ds []string
			for i := 0; i == 0 || (i < 3 && rng.IntN(2) == 0); i++ {
				if i > 0 {
					kills[sc.name]++
					point++
				}
				if err := restart(ctx, p, rng, i == 0); err != nil {
					t.Fatalf("point %d: %v", point, err)
				}
				d := delay(rng, est, "recovery")
				time.Sleep(d)
				p.kill()
				ds = append(ds, d.Round(time.Millisecond).String())
			}
			label = fmt.Sprintf("recovery (killed %s after restarts)", strings.Join(ds, ", "))
		} else {
			label = runKilled(ctx, t, p, w, sc, rng, est)
		}
		kills[sc.name]++
		point++
		if err := restart(ctx, p, rng, rng.IntN(3) > 0); err != nil {
			t.Fatalf("point %d (%s): %v", point, label, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := w.check(cctx, p, rng)
		cancel()
		if err != nil {
			t.Fatalf("point %d, after a kill during %s (seed %d):\n%v", point, label, seed, err)
		}
		if e := p.alive(); e != nil {
			t.Fatalf("point %d: %v", point, e)
		}
		t.Logf("point %d: %s; checked (server clock %s)", point, label, p.now().UTC().Format(time.DateTime))
	}
	if err := p.stop(); err != nil {
		t.Errorf("clean stop after the matrix: %v", err)
	}
	var lines []string
	for k, n := range kills {
		lines = append(lines, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(lines)
	t.Logf("kills: %s", strings.Join(lines, ", "))
	lines = lines[:0]
	for k, n := range w.stats {
		if !strings.HasPrefix(k, "job ") {
			lines = append(lines, fmt.Sprintf("%s %d", k, n))
		}
	}
	slices.Sort(lines)
	t.Logf("work done: %s", strings.Join(lines, ", "))
}

// delay picks when to kill: uniformly within 1.2 times how long the
// scenario takes when it is not killed.
func delay(rng *rand.Rand, est map[string]time.Duration, name string) time.Duration {
	e, ok := est[name]
	if !ok {
		e = 500 * time.Millisecond
		if name == "recovery" {
			e = 2 * time.Second // start-up and the catch-up after it
		}
	}
	return time.Duration(rng.Float64() * 1.2 * float64(e))
}

// runKilled runs a scenario and SIGKILLs the server at a random moment of
// it: half the time uniformly within the scenario's usual length, half
// the time within 100 ms after the scenario marks the start of its
// critical part (a restore's disk hydrating, a backup's job running, the
// first write of an upload). An error the scenario meets before the kill
// fails the test.
func runKilled(ctx context.Context, t *testing.T, p *process, w *world, sc scenario, rng *rand.Rand, est map[string]time.Duration) string {
	t.Helper()
	d := delay(rng, est, sc.name)
	focused := rng.IntN(2) == 0
	if focused {
		d = time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
	}
	// The scenario gets its own random source, so that how far it got
	// when killed does not change the matrix's later choices.
	srng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	var killed atomic.Bool
	type result struct {
		err     error
		elapsed time.Duration
		killed  bool
	}
	done := make(chan result, 1)
	mark := make(chan struct{}, 1)
	w.mark = func() {
		select {
		case mark <- struct{}{}:
		default:
		}
	}
	start := time.Now()
	go func() {
		err := sc.run(w, ctx, srng)
		done <- result{err, time.Since(start), killed.Load()}
	}()
	var res result
	got := false
	if focused {
		select {
		case <-mark:
		case res = <-done:
			got = true
		}
	}
	timer := time.NewTimer(d)
	if !got {
		select {
		case <-timer.C:
			killed.Store(true)
			p.kill()
			res = <-done
		case res = <-done:
			got = true
		}
	}
	if got {
		<-timer.C
		killed.Store(true)
		p.kill()
	}
	how := fmt.Sprintf("%v after the start", d.Round(time.Millisecond))
	if focused {
		how = fmt.Sprintf("%v after its mark", d.Round(time.Millisecond))
	}
	if res.err != nil && !res.killed {
		t.Fatalf("%s failed before the kill: %v\n%s", sc.name, res.err, p.logTail())
	}
	if res.err != nil && errors.Is(res.err, errCorrupt) {
		t.Fatalf("%s: %v", sc.name, res.err)
	}
	if !res.killed {
		if !focused {
			old := est[sc.name]
			if old == 0 {
				old = res.elapsed
			}
			est[sc.name] = (3*old + res.elapsed) / 4
		}
		return fmt.Sprintf("%s (ended in %v; killed %s)", sc.name, res.elapsed.Round(time.Millisecond), how)
	}
	return fmt.Sprintf("%s (killed %s: %s)", sc.name, how, quote(res.err))
}

// restart starts the server again, its clock moved forward: by up to five
// hours when jump is set (scheduled backups and retention come due), and
// always to between 2 and 30 minutes past an hour, so that no hourly
// backup comes due while the test writes to a disk.
func restart(ctx context.Context, p *process, rng *rand.Rand, jump bool) error {
	now := p.now()
	if jump {
		now = now.Add(time.Duration(rng.Int64N(int64(5 * time.Hour))))
	}
	at := now.Truncate(time.Hour).Add(time.Duration(2+rng.IntN(28)) * time.Minute)
	if at.Before(now) {
		at = at.Add(time.Hour)
	}
	return p.start(ctx, max(0, time.Until(at)))
}
