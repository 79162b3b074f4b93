package zktest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Paths of the Debian ZooKeeper 3.8 installation (scripts/test-deps.sh).
// zookeeper.jar's manifest Class-Path pulls in its own dependencies;
// slf4j-simple makes the server log to stderr.
const (
	ZooKeeperJar   = "/usr/share/java/zookeeper.jar"
	SLF4JSimpleJar = "/usr/share/java/slf4j-simple.jar"
	// CuratorJar is Apache Curator 5's framework (libcurator-framework-java).
	CuratorJar = "/usr/share/java/curator-framework.jar"
)

// jvmFlags keeps test JVMs small and quick to start on a shared 2-core
// machine: the C1 compiler only, the serial collector, no perf-data files in
// /tmp, and IPv4 sockets so the bind shim and loopback addresses stay simple.
var jvmFlags = []string{
	"-XX:TieredStopAtLevel=1",
	"-XX:+UseSerialGC",
	"-XX:-UsePerfData",
	"-Djava.net.preferIPv4Stack=true",
}

// RequireIntegration skips the test under -short, and fails it when the
// ZooKeeper installation is missing (run scripts/test-deps.sh).
func RequireIntegration(t TB) {
	t.Helper()
	// testing.Short may only be asked inside a test binary.
	if _, inTest := t.(testing.TB); inTest && testing.Short() {
		t.Skip("integration test: starts real ZooKeeper; skipped under -short")
	}
	for _, f := range []string{ZooKeeperJar, SLF4JSimpleJar} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("zktest: %s missing (run scripts/test-deps.sh): %v", f, err)
		}
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatalf("zktest: java missing (run scripts/test-deps.sh): %v", err)
	}
}

// dieWithParent makes the child get SIGKILL when the test process dies, so a
// crashed or killed `go test` leaves no JVM behind. Pdeathsig fires when the
// creating OS thread exits; the Go runtime only retires threads that exit
// while locked, which zktest never does.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
