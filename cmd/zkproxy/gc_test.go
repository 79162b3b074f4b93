package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// The proxy collects at GOGC=50 unless the operator set GOGC, whose value
// the runtime has already applied and the proxy leaves alone.
func TestGCDefaultUnlessGOGCSet(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	env, had := os.LookupEnv("GOGC")
	t.Cleanup(func() {
		if had {
			os.Setenv("GOGC", env)
		} else {
			os.Unsetenv("GOGC")
		}
	})

	os.Unsetenv("GOGC")
	if got := applyGCDefault(); got != defaultGCPercent {
		t.Errorf("without GOGC, applyGCDefault = %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("without GOGC, GC percent in force is %d, want %d", got, defaultGCPercent)
	}

	os.Setenv("GOGC", "80")
	debug.SetGCPercent(80) // what the runtime did at start with GOGC=80
	if got := applyGCDefault(); got != 80 {
		t.Errorf("with GOGC=80, applyGCDefault = %d, want 80", got)
	}
	if got := debug.SetGCPercent(100); got != 80 {
		t.Errorf("with GOGC=80, GC percent in force is %d, want 80 left alone", got)
	}
}
