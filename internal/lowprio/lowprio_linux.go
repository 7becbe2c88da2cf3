package lowprio

import "golang.org/x/sys/unix"

// mainThread reports whether the calling thread is the process's first.
func mainThread() bool { return unix.Gettid() == unix.Getpid() }

// lower lowers the calling thread's priority (on Linux, PRIO_PROCESS with
// a thread ID names that one thread).
func lower() {
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), Nice); err != nil {
		unlowered.Add(1)
	}
}
