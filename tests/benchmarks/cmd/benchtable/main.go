// Command benchtable turns `go test -bench` output on stdin into the
// Markdown tables `make bench` prints and BENCHMARKS.md keeps: one table
// per benchmark function, one row per sub-benchmark, one column per unit it
// reports (ns/op, B/op and allocs/op are left out; MB/s kept). The parse ratio against encoding/csv is derived
// when both BenchmarkEncodingCSV and BenchmarkParse are in the input.
//
//	go test ./tests/benchmarks -run '^$' -bench . -benchtime 1x | go run ./tests/benchmarks/cmd/benchtable
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type row struct {
	name   string
	values map[string]float64
}

var cpuSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	rows, units := parse(os.Stdin)
	write(os.Stdout, rows, units)
}

// parse reads benchmark lines ("BenchmarkX-2  1  123 unit  4.5 unit2 …");
// everything else is ignored. A benchmark seen twice keeps its last run.
func parse(r io.Reader) ([]*row, []string) {
	var rows []*row
	byName := map[string]*row{}
	var units []string
	seen := map[string]bool{"ns/op": true, "B/op": true, "allocs/op": true}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := cpuSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		rw, ok := byName[name]
		if !ok {
			rw = &row{name: name, values: map[string]float64{}}
			byName[name] = rw
			rows = append(rows, rw)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			u := f[i+1]
			if u == "ns/op" && v == 0 {
				continue
			}
			rw.values[u] = v
			if !seen[u] {
				seen[u] = true
				units = append(units, u)
			}
		}
	}
	if csv, p := findRow(rows, "EncodingCSV"), findRow(rows, "Parse"); csv != nil && p != nil &&
		csv.values["rows/s"] > 0 && p.values["rows/s"] > 0 {
		p.values["×encoding/csv"] = p.values["rows/s"] / csv.values["rows/s"]
		units = append(units, "×encoding/csv")
	}
	return rows, units
}

func findRow(rows []*row, name string) *row {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	return nil
}

func write(w io.Writer, rows []*row, units []string) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "benchtable: no benchmark results in the input")
		return
	}
	// Group by function (the name before the first "/"), in input order;
	// the parse benchmarks share one table.
	group := func(name string) string {
		g, _, _ := strings.Cut(name, "/")
		if g == "EncodingCSV" || g == "Parse" {
			return "Parse"
		}
		return g
	}
	var order []string
	members := map[string][]*row{}
	for _, r := range rows {
		g := group(r.name)
		if _, ok := members[g]; !ok {
			order = append(order, g)
		}
		members[g] = append(members[g], r)
	}
	for i, g := range order {
		var cols []string
		for _, u := range units {
			for _, r := range members[g] {
				if _, ok := r.values[u]; ok {
					cols = append(cols, u)
					break
				}
			}
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "| %s | %s |\n|---|%s\n", g, strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, r := range members[g] {
			cells := make([]string, len(cols))
			for j, u := range cols {
				if v, ok := r.values[u]; ok {
					cells[j] = format(v)
				}
			}
			fmt.Fprintf(w, "| %s | %s |\n", r.name, strings.Join(cells, " | "))
		}
	}
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
