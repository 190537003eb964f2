package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiserver"
)

// seed creates the integrations a file lists, leaving existing codes as
// they are, so the flag can stay on every start.
func seed(ctx context.Context, srv *apiserver.Server, file string, log *zap.Logger) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--integrations-file: %w", err)
	}
	list, err := apiserver.ParseIntegrations(data)
	if err != nil {
		return fmt.Errorf("--integrations-file %s: %w", file, err)
	}
	for _, in := range list {
		res, err := srv.EnsureIntegration(ctx, in)
		if err != nil {
			return fmt.Errorf("--integrations-file %s: %w", file, err)
		}
		log.Info("integration seeded", zap.String("code", res.Code), zap.Int64("id", res.ID), zap.Bool("created", res.Created))
	}
	return nil
}

// newIntegrationsCommand is `ihr-api integrations add|list`: it works on
// the database directly (no server, no credential needed), beside a
// running ihr-api or before its first start.
func newIntegrationsCommand(stderr io.Writer, defaultDB string) *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "integrations",
		Short: "Add or list the integrations records point at (on the database, no server needed)",
		Long: `Records name their integration by code; a record for a code that does not
exist is refused (400 "Integration with code … does not exist"). Create the
integrations first, with this command or with --integrations-file at start.
It works on the database directly, beside a running ihr-api or before its
first start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&db, "db", defaultDB, "sqlite:PATH or postgres://… (IHR_API_DB)")
	open := func(ctx context.Context) (*apiserver.Server, error) {
		return apiserver.New(ctx, apiserver.Config{DB: db})
	}

	var code, name, direction, endSystem, file string
	var jsonOut bool
	add := &cobra.Command{
		Use:   "add (--code CODE --name NAME [--direction …] [--end-system …] | --file FILE)",
		Short: "Create an integration (or every one a file lists); an existing code is left unchanged",
		Example: `  ihr-api integrations add --db sqlite:ihr-api.db --code ERP-INVOICES --name "ERP invoices"
  ihr-api integrations add --db sqlite:ihr-api.db --file integrations.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []apiserver.Integration
			switch {
			case file != "" && code != "":
				return fmt.Errorf("give --file or --code, not both")
			case file != "":
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if list, err = apiserver.ParseIntegrations(data); err != nil {
					return err
				}
			case code != "":
				if name == "" {
					name = code
				}
				in := apiserver.Integration{"code": code, "name": name}
				if direction != "" {
					in["direction"] = direction
				}
				if endSystem != "" {
					in["end-system"] = endSystem
				}
				list = append(list, in)
			default:
				return fmt.Errorf("give --code CODE (and --name NAME), or --file FILE")
			}
			srv, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer srv.Close()
			var results []apiserver.SeedResult
			for _, in := range list {
				res, err := srv.EnsureIntegration(cmd.Context(), in)
				if err != nil {
					return err
				}
				results = append(results, res)
				if !jsonOut {
					what := "created"
					if !res.Created {
						what = "exists already, left unchanged"
					}
					fmt.Fprintf(stderr, "integration %s (id %d): %s\n", res.Code, res.ID, what)
				}
			}
			if jsonOut {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(results)
			}
			return nil
		},
	}
	add.Flags().StringVar(&code, "code", "", "the integration code records use")
	add.Flags().StringVar(&name, "name", "", "a unique name (default: the code)")
	add.Flags().StringVar(&direction, "direction", "", "to_coupa or from_coupa")
	add.Flags().StringVar(&endSystem, "end-system", "", "the ERP's name, for people")
	add.Flags().StringVar(&file, "file", "", "create every integration this YAML/JSON file lists (the --integrations-file format)")
	add.Flags().BoolVar(&jsonOut, "json", false, "print the results as JSON on stdout")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the integrations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer srv.Close()
			all, err := srv.ListIntegrations(cmd.Context(), "")
			if err != nil {
				return err
			}
			if listJSON {
				if all == nil {
					all = []apiserver.IntegrationInfo{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCODE\tNAME\tDIRECTION")
			for _, in := range all {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", in.ID, in.Code, in.Name, in.Direction)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON on stdout")
	cmd.AddCommand(add, list)
	return cmd
}
