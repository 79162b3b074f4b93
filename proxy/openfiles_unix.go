//go:build unix

package proxy

import "syscall"

// openFilesLimit returns the process's open-files limit (RLIMIT_NOFILE,
// soft). Go programs raise the soft limit to the hard one at start (package
// os, since Go 1.19), so this is what the proxy can really open.
func openFilesLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return rl.Cur, true
}
