// Package workercli is the ihr-worker command line: the commands of the
// worker spec, their flags, exit codes, logging, metrics and output. The
// binary's main only wires signals and os.Args to Main.
//
// Output contract: human-readable text goes to stderr; --json writes one
// machine-readable summary to stdout. Exit codes (worker spec):
//
//	0 every file processed and every row recorded
//	1 some rows or files were rejected (reports written)
//	2 usage or configuration error
//	3 a source or the API could not be reached
package workercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of the worker spec.
const (
	ExitOK          = 0
	ExitRejected    = 1
	ExitUsage       = 2
	ExitUnreachable = 3
)

// ExitError carries the exit code a command chose for its failure.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

func exitErr(code int, err error) error { return &ExitError{Code: code, Err: err} }

func usageErr(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// silent ends a command with an exit code after it has already told the
// user everything (e.g. rows rejected: the summary says so), so Main
// prints no error line for it.
type silent struct{ code int }

func (s silent) Error() string { return fmt.Sprintf("exit status %d", s.code) }

// Streams are the process's standard streams; tests pass buffers.
type Streams struct {
	In  io.Reader
	Out io.Writer // machine output (--json, CSV)
	Err io.Writer // human output and logs
}

// Main runs the command line args (without the program name) and returns
// the process exit code. ctx is cancelled on SIGINT/SIGTERM; commands then
// finish the rows in flight and return.
func Main(ctx context.Context, args []string, st Streams) int {
	if st.In == nil {
		st.In = os.Stdin
	}
	if st.Out == nil {
		st.Out = os.Stdout
	}
	if st.Err == nil {
		st.Err = os.Stderr
	}
	root := NewCommand(st)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(err, st.Err)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var s silent
	if errors.As(err, &s) {
		return s.code
	}
	code := ExitUsage // cobra's own errors: unknown command, bad flag, missing argument
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fmt.Fprint(stderr, "ihr-worker: "+msg)
	if code == ExitUsage && ee == nil {
		fmt.Fprintln(stderr, "Run 'ihr-worker --help' for usage.")
	}
	return code
}

// NewCommand builds the command tree. It is exported so that tests (and
// the deploy manifests' test) can inspect the flags the binary accepts.
func NewCommand(st Streams) *cobra.Command {
	g := &globals{st: st}
	root := &cobra.Command{
		Use:   "ihr-worker",
		Short: "Move ERP result files into Coupa Integration History Records",
		Long: `ihr-worker picks up CSV files from SFTP, FTP(S), S3 or local folders, turns each
row into an Integration History Record, posts it to the API (Coupa or the bundled
ihr-api), writes a per-file response report and archives or rejects the file.

Exit codes: 0 all processed and recorded, 1 some rows or files rejected (reports
written), 2 usage or configuration error, 3 a source or the API could not be reached.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// No "completion" command: the spec's command set is the whole surface.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(st.Err) // help and usage are human output
	root.SetErr(st.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitErr(ExitUsage, err)
	})
	g.addFlags(root.PersistentFlags())
	// Every command checks the logging flags, also those that log
	// nothing (status): a typo must not pass silently.
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return g.checkLogFlags() }
	root.AddCommand(
		newRunCommand(g),
		newServeCommand(g),
		newReprocessCommand(g),
		newValidateCommand(g),
		newExportCommand(g),
		newStatusCommand(g),
		newLedgerCommand(g),
		newVersionCommand(g),
	)
	return root
}

// exactArgs is cobra.ExactArgs with the usage exit code and a message that
// names the missing argument.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErr("%s takes %d argument(s): %s (got %d)", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// requireFlags fails with the usage exit code when a flag is missing;
// cobra's MarkFlagRequired would return an untyped error.
func requireFlags(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if f := cmd.Flags().Lookup(n); f == nil || !f.Changed {
			return usageErr("%s: the --%s flag is required", cmd.CommandPath(), n)
		}
	}
	return nil
}

// flagChanged reports whether the user set the flag on the command line.
func flagChanged(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
