// Command zkproxy is a ZooKeeper-protocol proxy that moves clients between
// ensembles without a restart. The serve and cutover commands land with the
// proxy and cutover issues.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "zkproxy: not yet implemented")
	os.Exit(2)
}
