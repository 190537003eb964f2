package workercli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// TestSummaryPrintsNamesSafely: a file name carrying a terminal escape, a
// newline or invalid bytes reaches the terminal escaped, in the file line,
// the reason, the error and the report path.
func TestSummaryPrintsNamesSafely(t *testing.T) {
	var out bytes.Buffer
	g := &globals{st: Streams{Err: &out}}
	evil := "x\x1b]0;pwned\x07\n\xff.csv"
	g.printSourceRun(&sourceRun{Name: "erp", src: &config.Source{URL: "file:///srv/drop"}, Summary: importer.Summary{
		Rejected: 1,
		Files: []importer.FileResult{{Name: evil, Status: state.Failed, Reason: evil + ": file is binary",
			Report: "reports/" + evil, Err: errors.New("move " + evil + ": boom")}},
	}})
	s := out.String()
	if strings.ContainsAny(s, "\x1b\x07\xff") || strings.Count(s, "\n") != 3 {
		t.Fatalf("unsafe summary:\n%q", s)
	}
	if !strings.Contains(s, `x\x1b]0;pwned\a\n\xff.csv`) {
		t.Fatalf("name not shown escaped:\n%s", s)
	}
	t.Logf("summary:\n%s", s)
}
