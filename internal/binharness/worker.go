package binharness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Header is the benchmark file's header (canonical layout).
const Header = "external-id,document-type,document-id,status,contact-alert-type,response-message\r\n"

// WriteCSV streams an n-row benchmark file to path: row i is the record
// ihr-loadgen posts as row i (external-id PREFIX-i, InvoiceHeader, document
// id i, Success or every 5th row Error, Functional, "message i"). It
// returns the file's size.
func WriteCSV(path, prefix string, n int) (int64, error) {
	return WritePaddedCSV(path, prefix, n, 0)
}

// WritePaddedCSV is WriteCSV with pad extra bytes of text in every row's
// response-message, to reach a file size (a 2 GB file of 10M rows) without
// changing the number of rows.
func WritePaddedCSV(path, prefix string, n, pad int) (int64, error) {
	padding := strings.Repeat("x", pad)
	return writeRows(path, prefix, n, func(b []byte, i int) []byte {
		b = strconv.AppendInt(b, int64(i), 10)
		return append(b, padding...)
	})
}

// WriteRandomPaddedCSV is WriteCSV whose rows' response-message is
// "message " and pad bytes of random hex (no row number), so that gzip
// cannot shrink the file much more than real ERP exports compress. The
// random source has a fixed seed: the same call writes the same file.
func WriteRandomPaddedCSV(path, prefix string, n, pad int) (int64, error) {
	rnd := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, (pad+1)/2)
	hx := make([]byte, len(raw)*2)
	return writeRows(path, prefix, n, func(b []byte, _ int) []byte {
		for j := range raw {
			raw[j] = byte(rnd.Uint32())
		}
		hex.Encode(hx, raw)
		return append(b, hx[:pad]...)
	})
}

// writeRows streams the header and n rows to path; message appends what
// follows "message " in row i's response-message.
func writeRows(path, prefix string, n int, message func(b []byte, i int) []byte) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(Header)
	var b []byte
	for i := 1; i <= n; i++ {
		status := "Success"
		if i%5 == 0 {
			status = "Error"
		}
		b = b[:0]
		b = append(b, prefix...)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ",InvoiceHeader,"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, ',')
		b = append(b, status...)
		b = append(b, ",Functional,message "...)
		b = message(b, i)
		b = append(b, '\r', '\n')
		w.Write(b)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}

// CSV returns an n-row benchmark file as a string and its external-ids.
func CSV(prefix string, n int) (string, []string) {
	var b bytes.Buffer
	b.WriteString(Header)
	ids := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		status := "Success"
		if i%5 == 0 {
			status = "Error"
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		fmt.Fprintf(&b, "%s,InvoiceHeader,%d,%s,Functional,message %d\r\n", id, i, status, i)
		ids = append(ids, id)
	}
	return b.String(), ids
}

// Run is one finished process.
type Run struct {
	Code           int
	Stdout, Stderr string
	Elapsed        time.Duration
	// MaxRSS is the process's peak resident set (getrusage ru_maxrss,
	// the same figure as /proc/PID/status VmHWM at exit), in bytes.
	MaxRSS int64
	// CPU is the process's user plus system time.
	CPU time.Duration
}

// Exec runs bin with args and extra environment, waits at most timeout
// and measures it. A process still running at the timeout is killed and
// fails the test.
func Exec(t testing.TB, timeout time.Duration, env []string, bin string, args ...string) Run {
	t.Helper()
	return ExecTo(t, timeout, env, nil, bin, args...)
}

// ExecTo is Exec with stdout sent to w instead of Run.Stdout (e.g.
// io.Discard for a report of millions of lines).
func ExecTo(t testing.TB, timeout time.Duration, env []string, w io.Writer, bin string, args ...string) Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	DieWithTest(cmd)
	var out, errb SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if w != nil {
		cmd.Stdout = w
	}
	start := time.Now()
	err := cmd.Run()
	r := Run{Elapsed: time.Since(start), Stdout: out.String(), Stderr: errb.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: still running after %v\nstderr (tail):\n%s", bin, args, timeout, tail(r.Stderr, 4000))
	}
	if cmd.ProcessState == nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	r.Code = cmd.ProcessState.ExitCode()
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return r
}
