//go:build !unix

package proxy

// openFilesLimit: no RLIMIT_NOFILE here; the default is fallbackMaxClientConns.
func openFilesLimit() (uint64, bool) { return 0, false }
