//go:build !linux

package lowprio

// mainThread reports whether the calling thread is the process's first;
// other systems have no portable way to tell, nor per-thread priorities.
func mainThread() bool { return false }

// setNice counts the thread as unlowered: other systems have no portable
// per-thread nice value.
func setNice(int) { unlowered.Add(1) }
