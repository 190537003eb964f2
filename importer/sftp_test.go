package importer_test

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/fixtures"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// TestThroughSFTP runs the pipeline on a real OpenSSH server: a good file
// is archived, a ragged one rejected, a corrected re-drop completes it.
func TestThroughSFTP(t *testing.T) {
	srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
	e := newEnv(t)
	store, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
		KnownHosts: srv.KnownHostsFile, Root: srv.Root}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e.src.Store = filestore.WithRetry(store, filestore.DefaultRetryPolicy(), zap.NewNop())
	e.root = srv.Root // e.drop, e.exists and e.report now look at the server's folder

	good, ids := csvRows("SF", 1, 30)
	e.drop("good.csv", good)
	ragged, err := os.ReadFile(fixtures.Path("bad", "ragged.csv"))
	if err != nil {
		t.Fatal(err)
	}
	e.drop("ragged.csv", string(ragged))
	sum := e.run()
	if sum.Archived != 1 || sum.Rejected != 1 || sum.Rows.Created != 33 || sum.Rows.Invalid != 2 {
		t.Fatalf("summary: %+v", sum)
	}
	if !e.exists("archive/good.csv") || !e.exists("failed/ragged.csv") || len(e.ls("inbox")) != 0 {
		t.Fatalf("inbox %v archive %v failed %v", e.ls("inbox"), e.ls("archive"), e.ls("failed"))
	}
	if lines := e.report("good.response.csv"); len(lines) != 30 || results(lines)["created"] != 30 {
		t.Fatalf("good report: %v", results(lines))
	}
	e.exactlyOnce("good.csv", ids)

	// The corrected ragged file: the two bad rows fixed.
	fixed := strings.NewReplacer("R-2,InvoiceHeader,2,Success\r\n", "R-2,InvoiceHeader,2,Success,Functional\r\n",
		"R-4,InvoiceHeader,4,Success,Functional,extra\r\n", "R-4,InvoiceHeader,4,Success,Functional\r\n").Replace(string(ragged))
	e.drop("ragged.csv", fixed)
	sum = e.run()
	if sum.Archived != 1 || sum.Rows.Created != 2 || sum.Rows.AlreadyRecorded != 3 {
		t.Fatalf("re-drop: %+v", sum)
	}
	// The second drop's report pairs with its archived name, which has a
	// timestamp since the first drop's report holds ragged.response.csv.
	moved := sum.Files[0].MovedTo
	if !strings.HasPrefix(moved, "archive/ragged.") || !e.exists(moved) || !e.exists("failed/ragged.csv") {
		t.Fatalf("moved to %s; archive %v failed %v", moved, e.ls("archive"), e.ls("failed"))
	}
	stem := strings.TrimSuffix(strings.TrimPrefix(moved, "archive/"), ".csv")
	if rep := sum.Files[0].Report; rep != "reports/"+stem+".response.csv" || len(e.report(stem+".response.csv")) != 5 {
		t.Fatalf("second report %s does not pair with %s", rep, moved)
	}
	if len(e.report("ragged.response.csv")) != 5 || results(e.report("ragged.response.csv"))["invalid"] != 2 {
		t.Fatal("the first drop's report was overwritten")
	}
}
