package lowprio

import "golang.org/x/sys/unix"

// mainThread reports whether the calling thread is the process's first.
func mainThread() bool { return unix.Gettid() == unix.Getpid() }

// setNice sets the calling thread's nice value (on Linux, PRIO_PROCESS
// with a thread ID names that one thread).
func setNice(n int) {
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n); err != nil {
		unlowered.Add(1)
	}
}
