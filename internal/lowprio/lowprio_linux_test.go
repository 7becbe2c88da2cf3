package lowprio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startNice is the nice value the process started with, read before any
// test ran.
var startNice, startErr = readNice(unix.Gettid())

// readNice reads the nice value of thread tid of this process from /proc
// (field 19 of its stat line), the kernel's own account.
func readNice(tid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields 3 on
	if len(fields) <= 19-3 {
		return 0, fmt.Errorf("stat of thread %d: %d fields", tid, len(fields)+2)
	}
	return strconv.Atoi(fields[19-3])
}

func threadNice(t *testing.T, tid int) int {
	t.Helper()
	n, err := readNice(tid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunLowersItsThread(t *testing.T) {
	if startNice >= Nice() {
		t.Skipf("the process already runs at nice %d", startNice)
	}
	var tid, nice int
	errWork := errors.New("the work's own error")
	err := Run(func() error {
		tid = unix.Gettid()
		nice = threadNice(t, tid)
		return errWork
	})
	if !errors.Is(err, errWork) {
		t.Fatalf("Run returned %v, want fn's error", err)
	}
	if Unlowered() != 0 {
		t.Fatalf("%d threads not lowered", Unlowered())
	}
	if nice != Nice() {
		t.Fatalf("thread %d ran fn at nice %d, want %d", tid, nice, Nice())
	}
}

// TestNormalFromLoweredThread: Normal, called from work on a lowered
// thread, runs its function on another thread at the process's nice
// value and returns its error.
func TestNormalFromLoweredThread(t *testing.T) {
	if startNice >= Nice() {
		t.Skipf("the process already runs at nice %d", startNice)
	}
	errWork := errors.New("the work's own error")
	var outer, inner, innerNice int
	err := Run(func() error {
		outer = unix.Gettid()
		return Normal(func() error {
			inner = unix.Gettid()
			innerNice = threadNice(t, inner)
			return errWork
		})
	})
	if !errors.Is(err, errWork) {
		t.Fatalf("Run(Normal) returned %v, want fn's error", err)
	}
	if inner == outer {
		t.Fatalf("Normal ran fn on the lowered thread %d", outer)
	}
	if innerNice != startNice {
		t.Fatalf("Normal ran fn at nice %d, want the process's %d", innerNice, startNice)
	}
}

// TestSetNice: the value SetNice sets reaches the threads that run the
// work, pool threads lowered before to another value included (lowering
// further needs no privilege; as root the test also raises it back), and
// a value out of range is refused and changes nothing.
func TestSetNice(t *testing.T) {
	if startErr != nil {
		t.Fatal(startErr)
	}
	if startNice > 10 {
		t.Skipf("the process already runs at nice %d", startNice)
	}
	t.Cleanup(func() { SetNice(DefaultNice) })
	// niceOfJobs runs 4 jobs at once (so that pool threads lowered
	// before take some) and returns the nice values they ran at.
	niceOfJobs := func() map[int]int {
		var mu sync.Mutex
		seen := map[int]int{}
		var wg sync.WaitGroup
		hold := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				err := Run(func() error {
					n := threadNice(t, unix.Gettid())
					mu.Lock()
					seen[n]++
					mu.Unlock()
					<-hold
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		for {
			mu.Lock()
			k := 0
			for _, c := range seen {
				k += c
			}
			mu.Unlock()
			if k == 4 {
				break
			}
			runtime.Gosched()
		}
		close(hold)
		wg.Wait()
		return seen
	}
	values := []int{10, 15}
	if os.Geteuid() == 0 {
		values = append(values, 10, 0)
	}
	for _, want := range values {
		if err := SetNice(want); err != nil {
			t.Fatalf("SetNice(%d): %v", want, err)
		}
		if got := Nice(); got != want {
			t.Fatalf("Nice() = %d after SetNice(%d)", got, want)
		}
		if seen := niceOfJobs(); len(seen) != 1 || seen[want] != 4 {
			t.Errorf("after SetNice(%d) the jobs ran at nice values (value: jobs) %v", want, seen)
		}
	}
	for _, bad := range []int{-1, 20, 40} {
		if err := SetNice(bad); !errors.Is(err, ErrNice) {
			t.Errorf("SetNice(%d) = %v, want ErrNice", bad, err)
		}
		if got, was := Nice(), values[len(values)-1]; got != was {
			t.Errorf("Nice() = %d after the refused SetNice(%d), want %d as before", got, bad, was)
		}
	}
}

// TestPriorityDoesNotLeak runs many lowered jobs, then more goroutines
// than there are threads, each locked to a thread at once, and checks
// that none of them runs lowered: a lowered thread given back to the
// runtime's idle threads would be the first one reused.
func TestPriorityDoesNotLeak(t *testing.T) {
	const lowered = 16
	var wg sync.WaitGroup
	for range lowered {
		wg.Go(func() {
			if err := Run(func() error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if startErr != nil {
		t.Fatal(startErr)
	}
	base := startNice
	n := 2*lowered + runtime.GOMAXPROCS(0)
	ready := make(chan struct{})
	var mu sync.Mutex
	seen := map[int]int{} // thread -> nice
	for range n {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid := unix.Gettid()
			nice := threadNice(t, tid)
			mu.Lock()
			seen[tid] = nice
			mu.Unlock()
			<-ready // every goroutine holds its own thread meanwhile
		})
	}
	for {
		mu.Lock()
		k := len(seen)
		mu.Unlock()
		if k == n {
			break
		}
		runtime.Gosched()
	}
	close(ready)
	wg.Wait()
	if nice := threadNice(t, os.Getpid()); nice != base {
		t.Errorf("the main thread (ps's figure for the process) is at nice %d, want %d", nice, base)
	}
	for tid, nice := range seen {
		if nice != base {
			t.Errorf("goroutine ran on thread %d at nice %d (the process's: %d) after the lowered work ended", tid, nice, base)
		}
	}
}

// threadCPU is the calling thread's CPU time.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// spin burns CPU for n rounds.
func spin(n int) uint64 {
	x := uint64(1)
	for i := range n {
		x = x*6364136223846793005 + uint64(i)
	}
	return x
}

var sink atomic.Uint64

// BenchmarkCPUBesideUser runs a busy thread standing for the user's and a
// busy thread standing for background work on the same core, and reports
// the CPU time the background thread got per CPU second of the user's
// (bg-cpu/user-cpu): about 1 when both run at the same priority, and what
// Run's threads take from a user's thread when both want that core. Other
// tenants of the core take from both alike, so the ratio holds on a busy
// machine. go test -run - -bench CPUBesideUser ./internal/lowprio
func BenchmarkCPUBesideUser(b *testing.B) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	pin := func() {
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			b.Fatal(err)
		}
	}
	for _, lowered := range []bool{false, true} {
		b.Run(fmt.Sprintf("lowered=%v", lowered), func(b *testing.B) {
			var userCPU, bgCPU time.Duration
			for range b.N {
				var stop atomic.Bool
				bgDone := make(chan time.Duration)
				go func() {
					runtime.LockOSThread() // never unlocked: the thread ends with it
					pin()
					if lowered {
						setNice(DefaultNice)
					}
					start := threadCPU(b)
					for !stop.Load() {
						sink.Add(spin(1000))
					}
					bgDone <- threadCPU(b) - start
				}()
				userDone := make(chan time.Duration)
				go func() {
					runtime.LockOSThread()
					pin()
					start := threadCPU(b)
					sink.Add(spin(50_000_000))
					userDone <- threadCPU(b) - start
				}()
				userCPU += <-userDone
				stop.Store(true)
				bgCPU += <-bgDone
			}
			b.ReportMetric(float64(bgCPU)/float64(userCPU), "bg-cpu/user-cpu")
		})
	}
}

// TestHelperChild is the child process of TestChildrenOutliveRun: it runs
// until its standard input closes.
func TestHelperChild(t *testing.T) {
	if os.Getenv("LOWPRIO_TEST_CHILD") != "1" {
		t.Skip("the child process of TestChildrenOutliveRun")
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// TestChildrenOutliveRun: children that goroutines started with a
// parent-death signal (as pgtest starts PostgreSQL) outlive any number of
// Run calls. Linux sends that signal when the thread that forked the
// child ends, and the runtime ends a locked thread whose goroutine
// returns: a Run whose goroutine landed on such a thread and ended it
// would kill the child.
func TestChildrenOutliveRun(t *testing.T) {
	type child struct {
		cmd   *exec.Cmd
		stdin io.Closer
	}
	var mu sync.Mutex
	var children []child
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			runtime.LockOSThread() // each from a thread of its own
			defer runtime.UnlockOSThread()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperChild$")
			cmd.Env = append(os.Environ(), "LOWPRIO_TEST_CHILD=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Error(err)
				return
			}
			if err := cmd.Start(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			children = append(children, child{cmd, stdin})
			mu.Unlock()
		})
	}
	wg.Wait()
	for range 4 {
		for range 32 {
			wg.Go(func() {
				if err := Run(func() error { return nil }); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	for _, c := range children {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(c.cmd.Process.Pid, &ws, syscall.WNOHANG, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pid != 0 {
			t.Errorf("child %d ended (%v) while Run ran", pid, ws)
			continue
		}
		c.stdin.Close()
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v", c.cmd.Process.Pid, err)
		}
	}
}
