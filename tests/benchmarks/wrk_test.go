package benchmarks_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/binharness"
)

// BenchmarkCreateWrk: creates/s of the built ihr-api (SQLite, no rate
// limit) under wrk, the HTTP load generator (Debian's wrk; make servers
// installs it), at 8 and 32 keep-alive connections for IHR_BENCH_WRK_SECONDS
// (10) each, posting testdata/create.lua's bodies. Unlike apiserver's
// BenchmarkCreate, whose net/http clients share the process and about a
// fifth of its CPU, the client here is a separate C program that takes
// little of the two cores, so the figure is the server's. It also reports
// the server's own CPU per create (/proc/PID/stat) and creates per SQLite
// commit (/metrics).
//
//	go test ./tests/benchmarks -run '^$' -bench CreateWrk -benchtime 1x
func BenchmarkCreateWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (make servers, or apt-get install wrk)")
	}
	secs := envInt("IHR_BENCH_WRK_SECONDS", 10)
	for _, conns := range []int{8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			var rate, cpu, perCommit float64
			for b.Loop() {
				api := binharness.StartAPI(b, binharness.APIOptions{})
				c0 := apitest.Commits(b, http.DefaultClient, api.URL)
				cpu0 := procCPU(b, api.Pid())
				cmd := exec.Command(wrk, "-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs),
					"-s", "testdata/create.lua", api.URL)
				cmd.Env = append(os.Environ(), "IHR_WRK_KEY="+api.Key)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("wrk: %v\n%s", err, out)
				}
				spent := procCPU(b, api.Pid()) - cpu0
				d := apitest.Commits(b, http.DefaultClient, api.URL).Since(c0)
				api.Stop()
				if bad := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out); bad != nil {
					b.Fatalf("wrk: %s answers were not 201\n%s", bad[1], out)
				}
				m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
				if m == nil {
					b.Fatalf("wrk printed no Requests/sec:\n%s", out)
				}
				rate, _ = strconv.ParseFloat(string(m[1]), 64)
				if d.Writes > 0 {
					cpu = float64(spent.Microseconds()) / float64(d.Writes)
				}
				perCommit = d.PerCommit()
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(rate, "creates/s")
			b.ReportMetric(cpu, "server-cpu-µs/create")
			b.ReportMetric(perCommit, "creates/commit")
			if conns == 8 && rate < 10000 {
				b.Logf("TARGET MISSED: %.0f creates/s at 8 connections (want >= 10,000)", rate)
			}
		})
	}
}

// procCPU is a process's user and system time so far, from /proc/PID/stat
// (in the kernel's USER_HZ ticks, 100 a second on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from after it.
	_, rest, _ := strings.Cut(string(raw), ") ")
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
