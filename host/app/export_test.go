package app

// LoseDataDirLock releases a's data dir lock as the kernel does when the
// process dies: for tests that simulate a crash inside the test process.
func LoseDataDirLock(a *App) {
	if a.releaseDataDir != nil {
		a.releaseDataDir()
	}
}
