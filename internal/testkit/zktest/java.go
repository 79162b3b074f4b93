package zktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Java is a Java program compiled against the ZooKeeper 3.8 client
// (zookeeper.jar), ready to run.
type Java struct {
	// Class is the main class (the source's public class).
	Class string
	// Dir holds the compiled classes.
	Dir string
	// Jars are the jars beyond the ZooKeeper client the program was
	// compiled against and runs with.
	Jars []string
}

var publicClassRE = regexp.MustCompile(`(?m)^\s*public\s+(?:final\s+)?class\s+([A-Za-z_][A-Za-z0-9_]*)`)

// JavaProgram compiles javaSource (one compilation unit whose public class is
// the main class; no package declaration) with javac against zookeeper.jar.
// Compilation happens once per source text and machine: the classes are
// cached under the user cache dir, keyed by a hash of the source.
func JavaProgram(t TB, javaSource string) *Java {
	t.Helper()
	return JavaProgramWith(t, javaSource)
}

// JavaProgramWith is JavaProgram with more jars on the class path, e.g.
// CuratorJar (each jar's manifest Class-Path brings its dependencies).
// A missing jar fails the test, naming the package that ships it.
func JavaProgramWith(t TB, javaSource string, jars ...string) *Java {
	t.Helper()
	RequireIntegration(t)
	for _, jar := range jars {
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("zktest: %s missing (run scripts/test-deps.sh): %v", jar, err)
		}
	}
	j, err := compileJava(javaSource, jars)
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return j
}

func compileJava(src string, jars []string) (*Java, error) {
	m := publicClassRE.FindStringSubmatch(src)
	if m == nil {
		return nil, fmt.Errorf("compile java: no public class in source")
	}
	class := m[1]
	classpath := strings.Join(append([]string{ZooKeeperJar}, jars...), ":")
	dir, err := cachedBuild("java", cacheKey(src, classpath), func(dir string) error {
		file := filepath.Join(dir, class+".java")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			return err
		}
		cmd := exec.Command("javac", "-J-Xmx128m", "-J-XX:TieredStopAtLevel=1", "-nowarn",
			"-cp", classpath, "-d", dir, file)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("javac %s: %w\n%s", class, err, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Java{Class: class, Dir: dir, Jars: jars}, nil
}

// nettyExtraJars are Netty parts the Netty client socket
// (ClientCnxnSocketNetty, what a TLS client uses) loads but Debian's
// zookeeper.jar manifest does not list; Kafka ships its own. Both come with
// libnetty-java, a dependency of the zookeeper package.
var nettyExtraJars = []string{"/usr/share/java/netty-resolver.jar", "/usr/share/java/netty-codec.jar"}

// Command returns a command that runs the program with the ZooKeeper client
// and slf4j-simple (logging to stderr) on the classpath, a 64 MiB heap, and
// SIGKILL if the test process dies. The caller starts and waits for it;
// cancelling ctx kills it.
func (j *Java) Command(ctx context.Context, args ...string) *exec.Cmd {
	jargs := append([]string{"-Xmx64m"}, jvmFlags...)
	jargs = append(jargs,
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", strings.Join(append(append([]string{j.Dir, ZooKeeperJar, SLF4JSimpleJar}, nettyExtraJars...), j.Jars...), ":"), j.Class)
	jargs = append(jargs, args...)
	cmd := exec.CommandContext(ctx, "java", jargs...)
	dieWithParent(cmd)
	return cmd
}

// Run runs the program to completion and returns its combined stdout and
// stderr. A non-zero exit is an error that includes the output.
func (j *Java) Run(ctx context.Context, args ...string) (string, error) {
	out, err := j.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("java %s: %w\n%s", j.Class, err, out)
	}
	return string(out), nil
}
