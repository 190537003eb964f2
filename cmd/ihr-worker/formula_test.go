package main_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestFormulaCellsInReportAndExport: the built worker writes input cells a
// spreadsheet would run with a leading ' in the response report and in
// export output, and verbatim with report.escape_formulas: false.
func TestFormulaCellsInReportAndExport(t *testing.T) {
	api := startAPI(t, "ERP-INVOICES")
	e := newEnv(t, api, "", "")
	e.drop("f.csv", header()+
		"=2+5,InvoiceHeader,1,Success,Functional,,ok\n"+
		"@SUM(A1),InvoiceHeader,2,Success,Functional,,ok\n"+
		"plain,InvoiceHeader,3,Success,Functional,,ok\n")
	e.worker("run", "--config", e.config).expect(t, 0)
	rep := readCSV(t, filepath.Join(e.src, "reports", "f.response.csv"))
	if rep[1][1] != "'=2+5" || rep[2][1] != "'@SUM(A1)" || rep[3][1] != "plain" {
		t.Fatalf("report: %q", rep)
	}
	r := e.worker("export", "--config", e.config, "--columns", "external-id", "--to", "-").expect(t, 0)
	if !strings.Contains(r.stdout, "'=2+5\r\n") || !strings.Contains(r.stdout, "'@SUM(A1)\r\n") || !strings.Contains(r.stdout, "\r\nplain\r\n") {
		t.Fatalf("escaped export:\n%s", r.stdout)
	}

	off := newEnv(t, api, "", "report:\n  escape_formulas: false\n")
	r = off.worker("export", "--config", off.config, "--columns", "external-id", "--to", "-").expect(t, 0)
	if !strings.Contains(r.stdout, "\r\n=2+5\r\n") || strings.Contains(r.stdout, "'") {
		t.Fatalf("verbatim export:\n%s", r.stdout)
	}
	off.drop("g.csv", header()+"-1,InvoiceHeader,4,Success,Functional,,ok\n")
	off.worker("run", "--config", off.config).expect(t, 0)
	if rep := readCSV(t, filepath.Join(off.src, "reports", "g.response.csv")); rep[1][1] != "-1" {
		t.Fatalf("verbatim report: %q", rep)
	}
}
