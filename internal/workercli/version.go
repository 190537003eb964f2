package workercli

import (
	"github.com/spf13/cobra"

	"github.com/ihr-tools/ihr/internal/buildinfo"
)

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			bi := buildinfo.Read()
			if g.jsonOut {
				return g.printJSON(bi)
			}
			g.say("ihr-worker %s\n", bi)
			return nil
		},
	}
}
