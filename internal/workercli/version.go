package workercli

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			v := "dev"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			if g.jsonOut {
				return g.printJSON(map[string]string{"version": v, "go": runtime.Version()})
			}
			g.say("ihr-worker %s (%s)\n", v, runtime.Version())
			return nil
		},
	}
}
