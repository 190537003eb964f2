package mapping

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/ihr-tools/ihr/parse"
)

// benchRows is the size of the generated file (IHR_BENCH_ROWS overrides).
func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("IHR_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// benchFile writes (once, reused across runs) a canonical result file of
// n rows with realistic values: ERP ids, a mix of Success/Error, quoted
// messages with commas on error rows. ~120 bytes a row.
func benchFile(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("ihr-bench-%d.csv", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprint(w, "external-id,document-type,document-id,document-revision,status,contact-alert-type,integration,response-code,response-message\r\n")
	for i := 1; i <= n; i++ {
		if i%10 == 0 {
			fmt.Fprintf(w, "AP-2024-%09d,InvoiceHeader,%d,%d,Error,Functional,ERP-INVOICES,E-%d,\"Supplier %d is on hold, invoice not posted\"\r\n", i, 100000+i, i%3, i%500, i%9000)
		} else {
			fmt.Fprintf(w, "AP-2024-%09d,InvoiceHeader,%d,%d,Success,Functional,ERP-INVOICES,OK,Posted to GL as voucher %d\r\n", i, 100000+i, i%3, 880000+i)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// measure runs fn over the file b.N times and reports rows/s, MB/s,
// allocations and bytes per row.
func measure(b *testing.B, fn func(r io.Reader) int) {
	n := benchRows()
	path := benchFile(b, n)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	rows := 0
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rows += fn(f)
		f.Close()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if rows != n*b.N {
		b.Fatalf("read %d rows, want %d", rows, n*b.N)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(rows), "allocs/row")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(rows), "B/row")
}

// BenchmarkEncodingCSV is the baseline: encoding/csv reading every record
// (a fresh slice per record, as a pipeline that keeps rows needs).
func BenchmarkEncodingCSV(b *testing.B) {
	measure(b, func(r io.Reader) int {
		cr := csv.NewReader(r)
		n := -1 // header
		for {
			_, err := cr.Read()
			if err == io.EOF {
				return n
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	})
}

// BenchmarkParse: parse.Reader alone (UTF-8 validation, positions, limits).
func BenchmarkParse(b *testing.B) {
	measure(b, func(r io.Reader) int {
		rd, err := parse.NewReader(r, "auto", parse.Options{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := rd.Read()
			if err == io.EOF {
				return n
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	})
}

// BenchmarkParseMapValidate: what the worker does before posting a row:
// parse, map to a record and an action, validate, check duplicates, key.
func BenchmarkParseMapValidate(b *testing.B) {
	measure(b, func(r io.Reader) int {
		rd, err := parse.NewReader(r, "auto", parse.Options{File: "bench.csv"})
		if err != nil {
			b.Fatal(err)
		}
		m, err := New(Config{}, rd.Header(), "ERP-INVOICES")
		if err != nil {
			b.Fatal(err)
		}
		dups := NewDupTracker(0)
		n := 0
		for {
			row, err := rd.Read()
			if err == io.EOF {
				return n
			}
			if err != nil {
				b.Fatal(err)
			}
			mp, errs := m.Map(row, "/inbox/bench.csv")
			if errs != nil {
				b.Fatal(errs)
			}
			if fe := dups.Check(mp); fe != nil {
				b.Fatal(fe)
			}
			n++
		}
	})
}
