package zktest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Firewall is a set of iptables rules in a chain of its own
// ("ZKTEST-<pid>-<random>"), jumped to from INPUT and OUTPUT for loopback traffic
// only, so removing it is one unhook+flush+delete and it can never disturb
// another test's rules. It is removed in t.Cleanup even if the test fails.
type Firewall struct {
	Chain string

	mu      sync.Mutex
	removed bool
}

// Partition rejects all TCP traffic between every address in a and every
// address in b, in both directions (iptables REJECT, icmp-port-unreachable:
// new connections fail at once with ECONNREFUSED; established ones see only
// a soft error and stall until the peers' own timeouts fire, as on a real
// network). Only TCP is matched, so the ICMP errors REJECT sends back are not
// themselves rejected by the reverse rule. Addresses must be loopback
// addresses this test reserved (LoopbackIP).
//
// For rules by address to apply to ZooKeeper's quorum traffic, each server's
// outgoing sockets must be bound to its own address; zktest servers run with
// the bind shim (csrc/bindshim.c) for that. Clients connecting from 127.0.0.1
// are never affected.
func Partition(t TB, a, b []string) (*Firewall, error) {
	t.Helper()
	for _, ip := range append(append([]string{}, a...), b...) {
		p := net.ParseIP(ip)
		if p == nil || !p.IsLoopback() || p.To4() == nil || ip == "127.0.0.1" {
			return nil, fmt.Errorf("partition: %q is not a test loopback address", ip)
		}
	}
	removeOrphanChains()
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	// The owner's pid in the name lets a later test remove the chain if
	// this process dies before its cleanup runs (removeOrphanChains).
	f := &Firewall{Chain: fmt.Sprintf("%s%d-%s", chainPrefix, os.Getpid(), strings.ToUpper(hex.EncodeToString(suffix[:])))}
	// Registered before anything is installed, so a half-installed
	// firewall is removed too.
	t.Cleanup(func() {
		if err := f.Remove(); err != nil {
			t.Errorf("zktest: %v", err)
		}
	})
	if err := iptables("-N", f.Chain); err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	for _, x := range a {
		for _, y := range b {
			for _, pair := range [][2]string{{x, y}, {y, x}} {
				if err := iptables("-A", f.Chain, "-p", "tcp", "-s", pair[0], "-d", pair[1], "-j", "REJECT"); err != nil {
					return nil, fmt.Errorf("partition: %w", err)
				}
			}
		}
	}
	if err := iptables("-I", "OUTPUT", "1", "-o", "lo", "-j", f.Chain); err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	if err := iptables("-I", "INPUT", "1", "-i", "lo", "-j", f.Chain); err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	return f, nil
}

// Remove deletes the firewall's rules and chain. It is idempotent and
// tolerates a partially installed firewall.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return nil
	}
	var errs []error
	// Each jump exists at most once; deleting a missing one just fails.
	for _, hook := range [][]string{{"OUTPUT", "-o", "lo"}, {"INPUT", "-i", "lo"}} {
		if chainHasJump(hook[0], f.Chain) {
			if err := iptables("-D", hook[0], hook[1], hook[2], "-j", f.Chain); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if chainExists(f.Chain) {
		if err := iptables("-F", f.Chain); err != nil {
			errs = append(errs, err)
		}
		if err := iptables("-X", f.Chain); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove firewall %s: %w", f.Chain, err)
	}
	f.removed = true
	return nil
}

// Active reports whether the firewall is installed.
func (f *Firewall) Active() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.removed && chainExists(f.Chain)
}

const chainPrefix = "ZKTEST-"

// removeOrphanChains removes firewalls left behind by test processes that
// were killed before their t.Cleanup ran. Only chains named by this package
// whose owner pid no longer exists are touched.
func removeOrphanChains() {
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		chain, ok := strings.CutPrefix(line, "-N "+chainPrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(chain, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // owner alive (or not ours to judge)
		}
		_ = (&Firewall{Chain: chainPrefix + chain}).Remove()
	}
}

func chainExists(chain string) bool {
	return exec.Command("iptables", "-w", "-S", chain).Run() == nil
}

func chainHasJump(hook, chain string) bool {
	out, err := exec.Command("iptables", "-w", "-S", hook).Output()
	return err == nil && strings.Contains(string(out), "-j "+chain+"\n")
}

// iptables runs iptables, waiting for the xtables lock (-w) because other
// test processes may be changing rules at the same time.
func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
