package zktest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
)

// lockPort is the port LoopbackIP binds on a candidate address to reserve it.
// A listening socket is an exclusive claim that the kernel releases when the
// process dies, so a crashed test process never leaves a stale reservation
// (unlike lock files). 65432 lies above Linux's default ephemeral range
// (32768-60999), so no outgoing connection of another process can hold it.
const lockPort = 65432

// LoopbackIP reserves an address 127.a.b.c for the rest of the test and
// returns it. Addresses are drawn at random from 127.64.0.0-127.254.255.255
// (about 12 million, avoiding 127.0.0.0/10 which other software tends to use)
// and claimed by listening on lockPort there, so parallel `go test` processes
// using this package never receive the same address. The claim is released in
// t.Cleanup. Any port on the address is free for the test to use.
func LoopbackIP(t TB) string {
	t.Helper()
	ip, ln, err := reserveLoopbackIP()
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ip
}

func reserveLoopbackIP() (string, net.Listener, error) {
	var lastErr error
	for range 64 {
		ip := fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(191), rand.IntN(256), 1+rand.IntN(254))
		ln, err := net.Listen("tcp4", net.JoinHostPort(ip, fmt.Sprint(lockPort)))
		if err == nil {
			return ip, ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			// Not a collision: loopback aliases are unusable here, retrying won't help.
			return "", nil, fmt.Errorf("reserve loopback address %s: %w", ip, err)
		}
		lastErr = err
	}
	return "", nil, fmt.Errorf("reserve loopback address: no free address after 64 attempts: %w", lastErr)
}
