package workercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/storeurl"
)

type exportFlags struct {
	integration   string
	createdAfter  string
	createdBefore string
	updatedAfter  string
	updatedBefore string
	status        string
	resolved      string
	to            string
	columns       []string
}

func newExportCommand(g *globals) *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export --config FILE --to URL-or-PATH [filters]",
		Short: "Query records (integration, time range, status, resolved) and write them as CSV to a store",
		Long: `export pages through the API's records matching the filters (oldest first, by id,
so records created meanwhile are neither skipped nor repeated) and streams them as
CSV to --to, in constant memory whatever the number of records.

--to is a local path, "-" for stdout, or a store URL ending in the file name:
file:///…, sftp://…, ftp(s)://…, s3://bucket/key.csv. A remote URL uses the
store settings (credentials, known_hosts, endpoint …) of the configured source
on the same scheme and host; the file appears whole or not at all.

Times are RFC 3339 (2024-06-01T00:00:00Z) or a date (2024-06-01, local midnight).
"after" is exclusive, "before" exclusive.`,
		Example: `  ihr-worker export --config worker.yaml --integration ERP-INVOICES \
      --created-after 2024-06-01 --status Error --resolved false --to errors.csv
  ihr-worker export --config worker.yaml --updated-after 2024-06-01T00:00:00Z \
      --to sftp://coupa@sftp.example.com/Exports/records.csv`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(cmd, "to"); err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			if _, err := exporter.NewRecordWriter(io.Discard, f.columns); err != nil {
				return usageErr("--columns: %v", err)
			}
			cfg, err := g.loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := g.newLogger(false)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			return g.export(cmd.Context(), cfg, log, q, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.integration, "integration", "", "integration code")
	fs.StringVar(&f.createdAfter, "created-after", "", "records created after this time")
	fs.StringVar(&f.createdBefore, "created-before", "", "records created before this time")
	fs.StringVar(&f.updatedAfter, "updated-after", "", "records updated after this time")
	fs.StringVar(&f.updatedBefore, "updated-before", "", "records updated before this time")
	fs.StringVar(&f.status, "status", "", "record status, e.g. Success or Error")
	fs.StringVar(&f.resolved, "resolved", "", "true or false")
	fs.StringVar(&f.to, "to", "", "where to write the CSV: a path, - (stdout) or a store URL (required)")
	fs.StringSliceVar(&f.columns, "columns", nil, "columns to write, in order (default: "+strings.Join(exporter.RecordColumns, ",")+")")
	return cmd
}

// query turns the filters into an API query, or a usage error naming the
// flag at fault.
func (f *exportFlags) query() (func() *apiclient.Query, error) {
	type cond struct {
		attr string
		op   apiclient.Op
		val  string
	}
	var conds []cond
	for _, t := range []struct {
		flag, val, attr string
		op              apiclient.Op
	}{
		{"created-after", f.createdAfter, "created-at", apiclient.Gt},
		{"created-before", f.createdBefore, "created-at", apiclient.Lt},
		{"updated-after", f.updatedAfter, "updated-at", apiclient.Gt},
		{"updated-before", f.updatedBefore, "updated-at", apiclient.Lt},
	} {
		if t.val == "" {
			continue
		}
		tm, err := parseTime(t.val)
		if err != nil {
			return nil, usageErr("--%s: %v", t.flag, err)
		}
		conds = append(conds, cond{t.attr, t.op, tm.Format(time.RFC3339)})
	}
	var eq [][2]string
	if f.status != "" {
		eq = append(eq, [2]string{"status", f.status})
	}
	if f.resolved != "" {
		b, err := strconv.ParseBool(f.resolved)
		if err != nil {
			return nil, usageErr("--resolved: %q is not true or false", f.resolved)
		}
		eq = append(eq, [2]string{"resolved", strconv.FormatBool(b)})
	}
	integration := f.integration
	return func() *apiclient.Query {
		q := apiclient.NewQuery()
		if integration != "" {
			q.Integration(integration)
		}
		for _, e := range eq {
			q.Eq(e[0], e[1])
		}
		for _, c := range conds {
			q.Where(c.attr, c.op, c.val)
		}
		return q
	}, nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (want RFC 3339, e.g. 2024-06-01T00:00:00Z, or a date 2024-06-01)", s)
}

// exportResult is export's --json summary.
type exportResult struct {
	Records int64   `json:"records"`
	To      string  `json:"to"`
	Seconds float64 `json:"duration_seconds"`
}

func (g *globals) export(ctx context.Context, cfg *config.Config, log *zap.Logger, newQuery func() *apiclient.Query, f *exportFlags) error {
	api, err := newAPIClient(cfg, log, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	var n int64
	produce := func(w io.Writer) error {
		rw, err := exporter.NewRecordWriter(w, f.columns)
		if err != nil {
			return err
		}
		rw.SetEscapeFormulas(cfg.Report.EscapeFormulas)
		n, err = exporter.Records(ctx, api, newQuery, rw)
		return err
	}
	where := f.to
	if f.to == "-" {
		err = produce(g.st.Out)
	} else {
		where, err = g.exportToStore(ctx, cfg, log, f.to, produce)
	}
	if err != nil {
		var ae *apiclient.Error
		switch {
		case errors.As(err, &ae) && ae.Status == 400:
			return exitErr(ExitUsage, fmt.Errorf("export: the API refused the query: %w", err))
		case errors.As(err, &ae):
			return exitErr(ExitUnreachable, fmt.Errorf("export: %w", err))
		}
		var ee *ExitError
		if errors.As(err, &ee) {
			return err
		}
		return exitErr(ExitUnreachable, fmt.Errorf("export to %s: %w", storeurl.Redact(where), err))
	}
	res := exportResult{Records: n, To: where, Seconds: time.Since(start).Seconds()}
	if g.jsonOut && f.to != "-" {
		return g.printJSON(res)
	}
	g.say("exported %d record(s) to %s\n", n, where)
	return nil
}

// exportToStore writes produce's output as one file on a store, streaming
// through a pipe so memory stays flat; a failure leaves nothing behind
// (Store.Write is atomic and sees the producer's error).
func (g *globals) exportToStore(ctx context.Context, cfg *config.Config, log *zap.Logger, to string, produce func(io.Writer) error) (string, error) {
	src, name, where, err := exportTarget(cfg, to)
	if err != nil {
		return to, err
	}
	// The folder must exist, as a source root must: a typo in --to is a
	// usage error, not a new folder tree.
	if dir, ok := storeurl.LocalPath(src.URL); ok {
		dir = filepath.FromSlash(dir)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return where, usageErr("--to: the folder %s does not exist; create it first", dir)
		}
	}
	store, err := openStore(ctx, src, log)
	if err != nil {
		return where, exitErr(classify(err), err)
	}
	defer store.Close()
	err = exporter.ToStore(ctx, store, name, produce)
	switch {
	case err != nil && errors.Is(err, filestore.ErrNotExist):
		return where, usageErr("--to %s: the folder does not exist on the store; create it first (%v)", where, err)
	case err != nil && setupStoreError(err):
		return where, usageErr("--to %s: %v", where, err)
	}
	return where, err
}

// exportTarget splits --to into a store (a source description reusing the
// settings of a configured source on the same scheme, host and user) and a
// file name in it.
func exportTarget(cfg *config.Config, to string) (*config.Source, string, string, error) {
	if !strings.Contains(to, "://") {
		abs, err := filepath.Abs(to)
		if err != nil {
			return nil, "", to, usageErr("--to: %v", err)
		}
		to = "file://" + filepath.ToSlash(abs)
	}
	u, err := url.Parse(to)
	if err != nil {
		return nil, "", to, usageErr("--to: invalid URL %q", storeurl.Redact(to))
	}
	name := path.Base(u.Path)
	if u.Path == "" || strings.HasSuffix(u.Path, "/") || name == "." || name == "/" {
		return nil, "", to, usageErr("--to: %q must end with a file name", storeurl.Redact(to))
	}
	dir := *u
	dir.Path = path.Dir(u.Path)
	dir.RawPath = ""
	src := &config.Source{Name: "export", URL: dir.String()}
	if _, local := storeurl.LocalPath(to); !local {
		found := false
		for i := range cfg.Sources {
			c := &cfg.Sources[i]
			cu, err := url.Parse(c.URL)
			if err != nil || cu.Scheme != u.Scheme || cu.Host != u.Host || cu.User.Username() != u.User.Username() {
				continue
			}
			cp := *c
			cp.Name, cp.URL = "export", dir.String()
			src, found = &cp, true
			break
		}
		if !found {
			host := u.Host
			if n := u.User.Username(); n != "" {
				host = n + "@" + host
			}
			return nil, "", to, usageErr("--to %s: no configured source is on %s://%s; export writes to a store with the settings (credentials, known_hosts, endpoint …) of a source on the same scheme, host and user. Add such a source, or export to a local path",
				storeurl.Redact(to), u.Scheme, host)
		}
	}
	where := to
	if p, ok := storeurl.LocalPath(to); ok {
		where = filepath.FromSlash(p)
	}
	return src, name, storeurl.Redact(where), nil
}
