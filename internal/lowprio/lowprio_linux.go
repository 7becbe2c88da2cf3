package lowprio

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// lockLowered locks the calling goroutine to its thread and lowers the
// thread's priority (on Linux, PRIO_PROCESS with a thread ID names that
// one thread).
func lockLowered() {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), Nice); err != nil {
		unlowered.Add(1)
	}
}
