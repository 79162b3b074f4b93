// Command zkproxy is a ZooKeeper-protocol proxy that moves ZooKeeper clients
// from one ensemble to another without a client restart. `zkproxy serve` runs
// the proxy; the other commands talk to a running proxy's admin API.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "zkproxy:", err)
		os.Exit(exitStatus(err))
	}
}

// run executes one zkproxy command; tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "zkproxy",
		Short:         "ZooKeeper proxy that moves clients between ensembles without a restart",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.AddCommand(newMitosisCommand())
	root.AddCommand(newServeCommand(), newCutoverCommand(), newSessionsCommand(), newHealthCommand(), newUpgradeCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the zkproxy version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), version) },
	})
	return root.ExecuteContext(ctx)
}
