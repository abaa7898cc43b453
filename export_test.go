package dlock

// SetLoopExitHook makes the renewal loop call f when it has given up its
// lock for the last time, just before it returns; nil removes the hook.
func SetLoopExitHook(f func()) { testHookLoopExit = f }
