package benchmarks_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
)

// BenchmarkEncryptedDrop: peak RSS and rows/s of the built ihr-worker's
// `validate` (the whole path decrypt → gunzip → parse → map → validate,
// no API) on a GnuPG-encrypted gzip file, against the same CSV plain, in
// the same run. Rows carry IHR_BENCH_DROP_PAD (64) bytes of random hex so
// the file does not compress away: IHR_BENCH_DROP_ROWS=5500000
// IHR_BENCH_DROP_PAD=320 makes an encrypted gzip file of about 1 GB
// (default 200,000 rows).
func BenchmarkEncryptedDrop(b *testing.B) {
	bins := binharness.Binaries(b)
	n := envInt("IHR_BENCH_DROP_ROWS", 200000)
	pad := envInt("IHR_BENCH_DROP_PAD", 64)
	dir := b.TempDir()
	plain := filepath.Join(dir, "drop.csv")
	size, err := binharness.WriteRandomPaddedCSV(plain, "R", n, pad)
	if err != nil {
		b.Fatal(err)
	}
	gz := plain + ".gz"
	if err := gzipFile(plain, gz); err != nil {
		b.Fatal(err)
	}
	g := testservers.StartGPG(b)
	g.GenKey("ihr@example.com", testservers.KeyCurve25519, "bench-pass")
	keyFile := g.ExportSecret("ihr@example.com", "bench-pass", true)
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, []byte("bench-pass\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	enc := gz + ".pgp"
	g.EncryptFile(gz, enc, "ihr@example.com", "--compress-algo", "none")
	os.Remove(gz)
	fi, err := os.Stat(enc)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows: CSV %.0f MiB, encrypted gzip %.0f MiB", n, float64(size)/(1<<20), float64(fi.Size())/(1<<20))

	extra := fmt.Sprintf("    include: \"*\"\n    decrypt:\n      key_file: %s\n      passphrase_file: %s\n", keyFile, passFile)
	for _, c := range []struct{ name, file string }{{"plain", plain}, {"pgp+gzip", enc}} {
		b.Run(c.name, func(b *testing.B) {
			var r binharness.Run
			for b.Loop() {
				src, env := binharness.NewSource(b, "local")
				cfg := binharness.WorkerConfig(b, b.TempDir(), "http://127.0.0.1:1", "  api_key: unused\n", src, extra)
				r = binharness.ExecTo(b, 2*time.Hour, env, io.Discard, bins.Worker, "validate", "--config", cfg, "--source", "bench", c.file)
				if r.Code != 0 {
					b.Fatalf("validate exit %d:\n%s", r.Code, binharness.Tail(r.Stderr, 2000))
				}
				// rows/s below is n over the run: every row must have been read.
				if want := fmt.Sprintf(": %d row(s), %d valid, 0 invalid", n, n); !strings.Contains(r.Stderr, want) {
					b.Fatalf("validate did not read all %d rows (want %q):\n%s", n, want, binharness.Tail(r.Stderr, 2000))
				}
			}
			st, _ := os.Stat(c.file)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(r.MaxRSS)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(n)/r.Elapsed.Seconds(), "rows/s")
			b.ReportMetric(float64(st.Size())/(1<<20), "file-MiB")
		})
	}
}

func gzipFile(in, out string) error {
	r, err := os.Open(in)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if _, err := io.Copy(zw, r); err != nil {
		w.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
