package zktest

import _ "embed"

//go:embed csrc/bindshim.c
var bindShimSource string

const bindShimName = "libzktestbind.so"

// bindShim returns the path of the LD_PRELOAD library that binds a server's
// outgoing sockets to $ZKTEST_BIND_IP (see bindshim.c), building it with gcc
// on first use.
func bindShim() (string, error) {
	return gccBuild("bindshim", bindShimSource, "", bindShimName,
		[]string{"-shared", "-fPIC", "-O2", "-Wall"}, []string{"-ldl"})
}
