package zktest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// buildCache holds build products (the bind shim, compiled Java programs)
// keyed by a hash of their inputs, so each is built once per machine and
// concurrent test processes never see a half-written product: each build goes
// to a private temp dir that is renamed into place atomically.
var buildCache struct {
	mu   sync.Mutex
	dirs map[string]string // key -> built dir, for this process
}

func cacheRoot() (string, error) {
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	root = filepath.Join(root, "zkproxy-zktest")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("create build cache: %w", err)
	}
	return root, nil
}

func cacheKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// cachedBuild returns the directory holding the product for key, running
// build(tmpDir) to create it when it does not exist yet.
func cachedBuild(kind, key string, build func(dir string) error) (string, error) {
	buildCache.mu.Lock()
	defer buildCache.mu.Unlock()
	if d, ok := buildCache.dirs[key]; ok {
		return d, nil
	}
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	final := filepath.Join(root, kind+"-"+key)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err != nil {
		tmp, err := os.MkdirTemp(root, "build-")
		if err != nil {
			return "", fmt.Errorf("build %s: %w", kind, err)
		}
		defer os.RemoveAll(tmp)
		if err := build(tmp); err != nil {
			return "", fmt.Errorf("build %s: %w", kind, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
			return "", fmt.Errorf("build %s: %w", kind, err)
		}
		// Another process may have won the race; its product is identical.
		if err := os.Rename(tmp, final); err != nil {
			if _, statErr := os.Stat(filepath.Join(final, ".complete")); statErr != nil {
				return "", fmt.Errorf("build %s: install: %w", kind, err)
			}
		}
	}
	if buildCache.dirs == nil {
		buildCache.dirs = make(map[string]string)
	}
	buildCache.dirs[key] = final
	return final, nil
}
