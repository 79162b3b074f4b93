package zktest

// TB is the part of testing.TB the helpers use. *testing.T and *testing.B
// satisfy it; so can a program that is not a test (the demo), which then
// owns running the cleanups and deciding what a fatal error does.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
	TempDir() string
}
