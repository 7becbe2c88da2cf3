package lowprio

import (
	"time"

	"golang.org/x/sys/unix"
)

// mainThread reports whether the calling thread is the process's first.
func mainThread() bool { return unix.Gettid() == unix.Getpid() }

// setNice sets the calling thread's nice value (on Linux, PRIO_PROCESS
// with a thread ID names that one thread).
func setNice(n int) {
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n); err != nil {
		unlowered.Add(1)
	}
}

// ThreadCPU returns the CPU time the calling thread has used: meaningful
// between two calls from the same thread, as in Run's work, whose thread
// is locked (0 if the system does not say).
func ThreadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
