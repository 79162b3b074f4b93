package zktest

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

//go:embed csrc/bindshim.c
var bindShimSource string

const bindShimName = "libzktestbind.so"

// bindShim returns the path of the LD_PRELOAD library that binds a server's
// outgoing sockets to $ZKTEST_BIND_IP (see bindshim.c), building it with gcc
// on first use.
func bindShim() (string, error) {
	dir, err := cachedBuild("bindshim", cacheKey(bindShimSource), func(dir string) error {
		src := filepath.Join(dir, "bindshim.c")
		if err := os.WriteFile(src, []byte(bindShimSource), 0o644); err != nil {
			return err
		}
		out, err := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o",
			filepath.Join(dir, bindShimName), src, "-ldl").CombinedOutput()
		if err != nil {
			return fmt.Errorf("gcc: %w\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, bindShimName), nil
}
