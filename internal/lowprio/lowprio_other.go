//go:build !linux

package lowprio

import "time"

// mainThread reports whether the calling thread is the process's first;
// other systems have no portable way to tell, nor per-thread priorities.
func mainThread() bool { return false }

// setNice counts the thread as unlowered: other systems have no portable
// per-thread nice value.
func setNice(int) { unlowered.Add(1) }

// ThreadCPU returns 0: other systems have no portable per-thread CPU
// clock.
func ThreadCPU() time.Duration { return 0 }
