//go:build !linux

package lowprio

import "runtime"

// lockLowered locks the calling goroutine to its thread; other systems
// have no portable per-thread nice value, so the thread keeps its
// priority.
func lockLowered() {
	runtime.LockOSThread()
	unlowered.Add(1)
}
