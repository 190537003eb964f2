package importer_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/s3store"
	"github.com/ihr-tools/ihr/filestore/sftpstore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
	"github.com/ihr-tools/ihr/unwrap"
)

// The worker's own key pair and the ERP's, made by GnuPG.
const (
	ihrUID, ihrPass = "ihr@example.com", "worker-pass-4711"
	erpUID, erpPass = "erp@example.com", "erp-pass"
)

type pgpKeys struct {
	gpg       *testservers.GPG
	secFile   string // the worker's secret key, exported by gpg
	decrypt   openpgp.EntityList
	erpPublic openpgp.EntityList
}

func newPGPKeys(t *testing.T, ihrKind, erpKind string) *pgpKeys {
	t.Helper()
	g := testservers.StartGPG(t)
	g.GenKey(ihrUID, ihrKind, ihrPass)
	g.GenKey(erpUID, erpKind, erpPass)
	g.GenKey("stranger@example.com", testservers.KeyCurve25519, "")
	k := &pgpKeys{gpg: g, secFile: g.ExportSecret(ihrUID, ihrPass, true)}
	f, err := os.Open(k.secFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if k.decrypt, err = unwrap.LoadPrivateKeys(f, k.secFile, []byte(ihrPass)); err != nil {
		t.Fatal(err)
	}
	pub := g.ExportPublic(erpUID)
	pf, err := os.Open(pub)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	if k.erpPublic, err = unwrap.LoadPublicKeys(pf, pub); err != nil {
		t.Fatal(err)
	}
	return k
}

// storeEnv is env on any store: files are put and read through it.
type storeEnv struct {
	*env
	store filestore.Store
}

func (s storeEnv) put(name string, data []byte) {
	s.t.Helper()
	if err := s.store.MkdirAll(context.Background(), path.Dir(name)); err != nil {
		s.t.Fatal(err)
	}
	if err := s.store.Write(context.Background(), name, bytes.NewReader(data)); err != nil {
		s.t.Fatal(err)
	}
}

func (s storeEnv) get(name string) []byte {
	s.t.Helper()
	rc, err := s.store.Open(context.Background(), name, 0)
	if err != nil {
		s.t.Fatalf("open %s: %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s storeEnv) has(name string) bool {
	_, err := s.store.Stat(context.Background(), name)
	return err == nil
}

// reportFor is where a file's report is written.
func reportFor(name string) string {
	return "reports/" + strings.TrimSuffix(name, ".csv") + ".response.csv"
}

// lines parses a report (header dropped).
func lines(t *testing.T, b []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("report: %v %q", err, b)
	}
	return recs[1:]
}

func gzipped(data string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.WriteString(w, data)
	w.Close()
	return b.Bytes()
}

func zipped(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, e := range entries {
		f, err := w.Create(e[0])
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(f, e[1])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestEncryptedDrops: files GnuPG encrypted (RSA and Curve25519, armored
// and binary, signed and unsigned) are decrypted, verified and posted;
// a wrong key, a tampered message and a bad or missing signature send
// the file to failed/ with one report line saying why and no record; the
// reports are encrypted back and gpg decrypts them; the passphrase is
// never logged.
func TestEncryptedDrops(t *testing.T) {
	for _, kinds := range [][2]string{{testservers.KeyRSA, testservers.KeyCurve25519}, {testservers.KeyCurve25519, testservers.KeyRSA}} {
		t.Run("worker-"+kinds[0]+"/erp-"+kinds[1], func(t *testing.T) {
			t.Parallel()
			k := newPGPKeys(t, kinds[0], kinds[1])
			e := newEnv(t)
			s := storeEnv{e, e.store}
			var logs bytes.Buffer
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.DebugLevel))
			e.src.Include = "*"
			e.src.Unwrap = unwrap.Config{Decrypt: k.decrypt, Verify: k.erpPublic}
			e.src.EncryptReportsTo = k.erpPublic
			g := k.gpg

			type drop struct {
				name string
				data []byte
				ids  []string
				why  string // "": archived; else a word of the failure's report line
			}
			var drops []drop
			add := func(name string, data []byte, ids []string, why string) {
				drops = append(drops, drop{name, data, ids, why})
			}
			plain1, ids1 := csvRows("BS", 1, 20)
			add("binary-signed.csv.pgp", g.Encrypt([]byte(plain1), ihrUID, erpUID, erpPass, false), ids1, "")
			plain2, ids2 := csvRows("AS", 1, 15)
			add("armored-signed.csv.asc", g.Encrypt([]byte(plain2), ihrUID, erpUID, erpPass, true), ids2, "")
			plain3, ids3 := csvRows("GZ", 1, 12)
			add("gzip-signed.csv.gz.pgp", g.Encrypt(gzipped(plain3), ihrUID, erpUID, erpPass, false), ids3, "")
			plain4, _ := csvRows("UN", 1, 5)
			add("unsigned.csv.pgp", g.Encrypt([]byte(plain4), ihrUID, "", "", false), nil, "not signed")
			add("armored-unsigned.csv.asc", g.Encrypt([]byte(plain4), ihrUID, "", "", true), nil, "not signed")
			plain5, _ := csvRows("WK", 1, 5)
			add("wrong-key.csv.pgp", g.Encrypt([]byte(plain5), "stranger@example.com", erpUID, erpPass, false), nil, "no key")
			plain6, _ := csvRows("TM", 1, 400)
			tampered := g.Encrypt([]byte(plain6), ihrUID, erpUID, erpPass, false)
			tampered[len(tampered)/2] ^= 0x01
			add("tampered.csv.pgp", tampered, nil, "OpenPGP")
			plain7, _ := csvRows("SS", 1, 5)
			add("stranger-signed.csv.pgp", g.Encrypt([]byte(plain7), ihrUID, "stranger@example.com", "", false), nil, "not signed")
			add("plain.csv", []byte(plain7), nil, "not an OpenPGP message")
			for _, d := range drops {
				s.put("inbox/"+d.name, d.data)
			}

			sum, err := importer.New(e.cfg, e.api, e.ledger, log, nil).RunSource(context.Background(), e.src)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Archived != 3 || sum.Rejected != len(drops)-3 || sum.Rows.Created != 47 {
				t.Fatalf("summary %+v", sum)
			}
			for _, d := range drops {
				rp := reportFor(d.name) + ".pgp"
				plain, err := g.Decrypt(s.get(rp), erpPass)
				if err != nil {
					t.Fatalf("%s: gpg cannot decrypt the report: %v", d.name, err)
				}
				ls := lines(t, plain)
				if d.why == "" {
					if !s.has("archive/"+d.name) || len(ls) != len(d.ids) || results(ls)["created"] != len(d.ids) {
						t.Errorf("%s: %v %v", d.name, results(ls), s.has("archive/"+d.name))
					}
					e.exactlyOnce(d.name, d.ids)
					continue
				}
				if !s.has("failed/"+d.name) || len(ls) != 1 || !strings.Contains(ls[0][8], d.why) {
					t.Errorf("%s: in failed/ %v, report %v", d.name, s.has("failed/"+d.name), ls)
				}
				if n := len(e.records(d.name)); n != 0 {
					t.Errorf("%s: %d records posted from a file that does not decrypt and verify", d.name, n)
				}
				t.Logf("%s: %s", d.name, ls[0][8])
			}
			if strings.Contains(logs.String(), ihrPass) || strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Error("the passphrase or key reached the log")
			}

			// The same CSV encrypted again is the same content: skipped.
			s.put("inbox/again.csv.pgp", g.Encrypt([]byte(plain1), ihrUID, erpUID, erpPass, false))
			sum = e.run()
			if sum.Skipped != 1 || sum.Rows.Created != 0 {
				t.Fatalf("re-encrypted copy: %+v", sum)
			}
		})
	}
}

// dropStores runs f on a local folder, SFTP and S3.
func dropStores(t *testing.T, f func(t *testing.T, s storeEnv)) {
	t.Run("local", func(t *testing.T) {
		e := newEnv(t)
		f(t, storeEnv{e, e.store})
	})
	t.Run("sftp", func(t *testing.T) {
		srv := testservers.StartSFTP(t, testservers.SFTPOptions{})
		e := newEnv(t)
		st, err := sftpstore.New(sftpstore.Config{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile,
			KnownHosts: srv.KnownHostsFile, Root: srv.Root}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e.src.Store = filestore.WithRetry(st, filestore.DefaultRetryPolicy(), zap.NewNop())
		f(t, storeEnv{e, e.src.Store})
	})
	t.Run("s3", func(t *testing.T) {
		srv := testservers.StartS3(t)
		e := newEnv(t)
		st, err := s3store.New(context.Background(), s3store.Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint,
			Region: srv.Region, PathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
			Timeout: 10 * time.Second}, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e.src.Store = filestore.WithRetry(st, filestore.DefaultRetryPolicy(), zap.NewNop())
		f(t, storeEnv{e, e.src.Store})
	})
}

// TestCompressedDrops: gzip found by its magic bytes (whatever the name),
// zip archives whose CSV entries are files of their own (several entries;
// one bad entry; a zip bomb), on local, SFTP and S3.
func TestCompressedDrops(t *testing.T) {
	dropStores(t, func(t *testing.T, s storeEnv) {
		s.src.Include = "*"
		gz, gzIDs := csvRows("GZ", 1, 10)
		s.put("inbox/a.csv.gz", gzipped(gz))
		hidden, hiddenIDs := csvRows("HG", 1, 7)
		s.put("inbox/b.csv", gzipped(hidden)) // gzip under a .csv name
		one, oneIDs := csvRows("Z1", 1, 6)
		two, twoIDs := csvRows("Z2", 1, 4)
		three, threeIDs := csvRows("Z3", 1, 3)
		s.put("inbox/bundle.zip", zipped(t, [2]string{"one.csv", one}, [2]string{"two.csv", two},
			[2]string{"sub/three.csv", three}, [2]string{"readme.txt", "not a CSV"}))
		good, goodIDs := csvRows("BE", 1, 5)
		bad := header + "BX-1,InvoiceHeader,1,Success,Functional,fine\r\nBX-2,InvoiceHeader,2,Success\r\n"
		s.put("inbox/mixed.zip", zipped(t, [2]string{"good.csv", good}, [2]string{"bad.csv", bad}))
		s.put("inbox/bomb.zip", zipped(t, [2]string{"bomb.csv", header + strings.Repeat("0", 60<<20)}))

		sum := s.run()
		if sum.Archived != 3 || sum.Rejected != 2 {
			t.Fatalf("summary %+v", sum)
		}
		for _, n := range []string{"archive/a.csv.gz", "archive/b.csv", "archive/bundle.zip", "failed/mixed.zip", "failed/bomb.zip"} {
			if !s.has(n) {
				t.Errorf("%s missing", n)
			}
		}
		s.exactlyOnce("a.csv.gz", gzIDs)
		s.exactlyOnce("b.csv", hiddenIDs)
		// Each entry: its own integration_filename and report.
		for name, ids := range map[string][]string{"one.csv": oneIDs, "two.csv": twoIDs, "three.csv": threeIDs, "good.csv": goodIDs} {
			s.exactlyOnce(name, ids)
			dir := "bundle.zip"
			if name == "good.csv" {
				dir = "mixed.zip"
			}
			ls := lines(t, s.get("reports/"+dir+"/"+strings.TrimSuffix(name, ".csv")+".response.csv"))
			if len(ls) != len(ids) || results(ls)["created"] != len(ids) {
				t.Errorf("%s report: %v", name, results(ls))
			}
		}
		ls := lines(t, s.get("reports/mixed.zip/bad.response.csv"))
		if r := results(ls); r["created"] != 1 || r["invalid"] != 1 {
			t.Errorf("bad entry report: %v", ls)
		}
		ls = lines(t, s.get("reports/bomb.zip.response.csv"))
		if len(ls) != 1 || !strings.Contains(ls[0][8], "decompression bomb") {
			t.Errorf("bomb report: %v", ls)
		}
		t.Logf("bomb: %s", ls[0][8])
		if n := len(s.records("bomb.csv")); n != 0 {
			t.Errorf("bomb: %d records", n)
		}

		// The archive with the bad entry, corrected and dropped again:
		// the good entry's rows are already recorded, the fixed row posted.
		fixed := strings.Replace(bad, "BX-2,InvoiceHeader,2,Success\r\n", "BX-2,InvoiceHeader,2,Success,Functional,fixed\r\n", 1)
		s.put("inbox/mixed.zip", zipped(t, [2]string{"good.csv", good}, [2]string{"bad.csv", fixed}))
		sum = s.run()
		if sum.Archived != 1 || sum.Rows.Created != 1 || sum.Rows.AlreadyRecorded != 6 {
			t.Fatalf("corrected archive: %+v", sum)
		}
		s.exactlyOnce("bad.csv", []string{"BX-1", "BX-2"})
	})
}

// TestCheckedDrops: a NAME.done manifest (rows=, sha256=) and a trailer
// row; a file that does not match is not posted, goes to failed/, and its
// report says what was expected and what was found. Local, SFTP and S3.
func TestCheckedDrops(t *testing.T) {
	dropStores(t, func(t *testing.T, s storeEnv) {
		s.src.Include = "*"
		ok, okIDs := csvRows("MOK", 1, 8)
		sum := sha256.Sum256([]byte(ok))
		s.put("inbox/ok.csv", []byte(ok))
		s.put("inbox/ok.csv.done", []byte(fmt.Sprintf("rows=8 sha256=%s\n", hex.EncodeToString(sum[:]))))
		short, _ := csvRows("MSH", 1, 7)
		s.put("inbox/short.csv", []byte(short))
		s.put("inbox/short.csv.done", []byte("rows=8\n"))
		s.put("inbox/hash.csv", []byte(short))
		s.put("inbox/hash.done", []byte("sha256="+hex.EncodeToString(sum[:])+"\n"))
		za, _ := csvRows("MZA", 1, 3)
		zb, _ := csvRows("MZB", 1, 4)
		s.put("inbox/z.zip", zipped(t, [2]string{"za.csv", za}, [2]string{"zb.csv", zb}))
		s.put("inbox/z.zip.done", []byte("rows=8\n"))
		res := s.run()
		if res.Archived != 1 || res.Rejected != 3 {
			t.Fatalf("manifest summary %+v", res)
		}
		s.exactlyOnce("ok.csv", okIDs)
		for name, want := range map[string]string{
			"short": "short.csv.done expects 8 data rows, found 7",
			"hash":  "hash.done expects SHA-256 " + hex.EncodeToString(sum[:]) + ", found ",
		} {
			ls := lines(t, s.get("reports/"+name+".response.csv"))
			if !s.has("failed/"+name+".csv") || len(ls) != 1 || !strings.Contains(ls[0][8], want) {
				t.Errorf("%s: %v", name, ls)
			}
			if n := len(s.records(name + ".csv")); n != 0 {
				t.Errorf("%s: %d records", name, n)
			}
		}
		ls := lines(t, s.get("reports/z.zip.response.csv"))
		if !s.has("failed/z.zip") || len(ls) != 1 || !strings.Contains(ls[0][8], "z.zip.done expects 8 data rows in the archive's CSV entries, found 7") {
			t.Errorf("z.zip: %v", ls)
		}
		if n := len(s.records("za.csv")) + len(s.records("zb.csv")); n != 0 {
			t.Errorf("z.zip: %d records", n)
		}

		// A trailer row, on another inbox of the same store.
		tr, err := unwrap.ParseTrailer("TRAILER,{rows}")
		if err != nil {
			t.Fatal(err)
		}
		src := s.src
		src.Folders.Inbox = "trailer-inbox"
		src.Unwrap.Trailer = tr
		good, goodIDs := csvRows("TOK", 1, 9)
		s.put("trailer-inbox/t-good.csv", []byte(good+"TRAILER,9\r\n"))
		wrong, _ := csvRows("TWR", 1, 9)
		s.put("trailer-inbox/t-wrong.csv", []byte(wrong+"TRAILER,10\r\n"))
		missing, _ := csvRows("TMI", 1, 9)
		s.put("trailer-inbox/t-missing.csv", []byte(missing))
		res, err = s.importer().RunSource(context.Background(), src)
		if err != nil {
			t.Fatal(err)
		}
		if res.Archived != 1 || res.Rejected != 2 {
			t.Fatalf("trailer summary %+v", res)
		}
		s.exactlyOnce("t-good.csv", goodIDs)
		if ls := lines(t, s.get("reports/t-good.response.csv")); len(ls) != 9 {
			t.Errorf("the trailer became a row: %d lines", len(ls))
		}
		for name, want := range map[string]string{
			"t-wrong":   `trailer row "TRAILER,10" expects 10 data rows, found 9`,
			"t-missing": `the last line is not a trailer row "TRAILER,{rows}"`,
		} {
			ls := lines(t, s.get("reports/"+name+".response.csv"))
			if len(ls) != 1 || !strings.Contains(ls[0][8], want) || !s.has("failed/"+name+".csv") {
				t.Errorf("%s: %v", name, ls)
			}
			if n := len(s.records(name + ".csv")); n != 0 {
				t.Errorf("%s: %d records", name, n)
			}
		}
	})
}

// TestValidateDrops: the dry run reads what the pipeline reads.
func TestValidateDrops(t *testing.T) {
	t.Parallel()
	k := newPGPKeys(t, testservers.KeyCurve25519, testservers.KeyRSA)
	e := newEnv(t)
	e.src.Unwrap = unwrap.Config{Decrypt: k.decrypt, Verify: k.erpPublic}
	im := e.importer()
	plain, _ := csvRows("V", 1, 6)
	check := func(name string, data []byte, wantStatus state.Status, want string) {
		t.Helper()
		e.drop(name, string(data))
		var out bytes.Buffer
		res, err := im.Validate(context.Background(), e.src, e.store, "inbox/"+name, &out)
		if err != nil || res.Status != wantStatus || !strings.Contains(out.String(), want) {
			t.Errorf("%s: %+v %v\n%s", name, res, err, out.String())
		}
	}
	check("v.csv.pgp", k.gpg.Encrypt([]byte(plain), ihrUID, erpUID, erpPass, false), state.Done, "V-6")
	check("u.csv.pgp", k.gpg.Encrypt([]byte(plain), ihrUID, "", "", true), state.Failed, "not signed")
	e.src.Unwrap.Verify = nil
	check("v.zip", zipped(t, [2]string{"x.csv", plain}, [2]string{"y.csv", header + "Y-1,InvoiceHeader,1,Success\r\n"}), state.Failed, "y.csv: ")
	check("w.csv.gz", gzipped(plain), state.Done, "V-6")
	e.drop("z.zip.done", "rows=13")
	check("z.zip", zipped(t, [2]string{"x.csv", plain}, [2]string{"y.csv", plain}), state.Failed, "expects 13 data rows in the archive's CSV entries, found 12")
	e.drop("short.csv.done", "rows=7")
	check("short.csv", []byte(plain), state.Failed, "expects 7 data rows, found 6")
	tr, err := unwrap.ParseTrailer("TRAILER,{rows}")
	if err != nil {
		t.Fatal(err)
	}
	e.src.Unwrap.Trailer = tr
	check("t-ok.csv", []byte(plain+"TRAILER,6\r\n"), state.Done, "V-6")
	check("t-bad.csv", []byte(plain+"TRAILER,5\r\n"), state.Failed, "expects 5 data rows, found 6")
	check("t-zip.zip", zipped(t, [2]string{"x.csv", plain + "TRAILER,6\r\n"}, [2]string{"y.csv", plain}), state.Failed, "y.csv: file is incomplete: the last line is not a trailer row")
}

// TestArchiveResumes: a run over a zip stopped in its second entry
// resumes with the entries not yet done; every row ends with exactly one
// record and the archive moves once, at the end.
func TestArchiveResumes(t *testing.T) {
	e := newEnv(t)
	e.src.Include = "*"
	a, aIDs := csvRows("RA", 1, 40)
	b, bIDs := csvRows("RB", 1, 40)
	c, cIDs := csvRows("RC", 1, 40)
	e.drop("resume.zip", string(zipped(t, [2]string{"a.csv", a}, [2]string{"b.csv", b}, [2]string{"c.csv", c})))
	ctx, cancel := context.WithCancel(context.Background())
	api := &countingAPI{API: e.api, onCreate: func(n int) {
		if n == 55 {
			cancel()
		}
	}}
	e.api = api
	sum, err := e.importer().RunSource(ctx, e.src)
	if err == nil || sum.Pending != 1 || !e.exists("inbox/resume.zip") {
		t.Fatalf("interrupted run: %+v %v", sum, err)
	}
	if f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "a.csv"}); err != nil || f.Status != state.Done {
		t.Fatalf("a.csv after the stop: %+v %v", f, err)
	}
	sum = e.run()
	if sum.Archived != 1 || !e.exists("archive/resume.zip") || e.exists("inbox/resume.zip") {
		t.Fatalf("resumed run: %+v", sum)
	}
	for name, ids := range map[string][]string{"a.csv": aIDs, "b.csv": bIDs, "c.csv": cIDs} {
		e.exactlyOnce(name, ids)
		ls := e.report("resume.zip/" + strings.TrimSuffix(name, ".csv") + ".response.csv")
		if r := results(ls); len(ls) != 40 || r["created"]+r["already-recorded"] != 40 {
			t.Errorf("%s report: %v", name, r)
		}
	}
	if creates, _ := api.counts(); creates != 120 {
		t.Errorf("%d creates for 120 rows", creates)
	}
}

// TestEncryptedDropsOnStores: an encrypted, signed gzip file and an
// encrypted zip are posted, and a tampered message is rejected, through
// SFTP and S3 as through a local folder; reports come back encrypted.
func TestEncryptedDropsOnStores(t *testing.T) {
	k := newPGPKeys(t, testservers.KeyCurve25519, testservers.KeyRSA)
	g := k.gpg
	dropStores(t, func(t *testing.T, s storeEnv) {
		s.src.Include = "*"
		s.src.Unwrap = unwrap.Config{Decrypt: k.decrypt, Verify: k.erpPublic}
		s.src.EncryptReportsTo = k.erpPublic
		plain, ids := csvRows("ES", 1, 25)
		s.put("inbox/e.csv.gz.pgp", g.Encrypt(gzipped(plain), ihrUID, erpUID, erpPass, false))
		one, oneIDs := csvRows("EZ", 1, 5)
		s.put("inbox/e.zip.asc", g.Encrypt(zipped(t, [2]string{"ez.csv", one}), ihrUID, erpUID, erpPass, true))
		bad := g.Encrypt([]byte(plain), ihrUID, erpUID, erpPass, false)
		bad[len(bad)/2] ^= 0x04
		s.put("inbox/t.csv.pgp", bad)
		sum := s.run()
		if sum.Archived != 2 || sum.Rejected != 1 {
			t.Fatalf("summary %+v", sum)
		}
		s.exactlyOnce("e.csv.gz.pgp", ids)
		s.exactlyOnce("ez.csv", oneIDs)
		for rp, want := range map[string]string{
			reportFor("e.csv.gz.pgp") + ".pgp":      "created",
			"reports/e.zip.asc/ez.response.csv.pgp": "created",
			reportFor("t.csv.pgp") + ".pgp":         "OpenPGP message",
		} {
			plain, err := g.Decrypt(s.get(rp), erpPass)
			if err != nil || !strings.Contains(string(plain), want) {
				t.Errorf("%s: %v %q", rp, err, plain)
			}
		}
		if !s.has("failed/t.csv.pgp") || len(s.records("t.csv.pgp")) != 0 {
			t.Error("the tampered file was not rejected whole")
		}
	})
}

// TestRequiredManifest: with completeness.manifest required a file waits
// for its control file; an empty one (a bare marker) rejects it; an entry
// name clash in a zip rejects the archive before anything is posted.
func TestRequiredManifest(t *testing.T) {
	e := newEnv(t)
	e.src.Include = "*"
	e.src.RequireManifest = true
	plain, ids := csvRows("RM", 1, 5)
	e.drop("r.csv", plain)
	if sum := e.run(); len(sum.Files) != 0 || !e.exists("inbox/r.csv") {
		t.Fatalf("taken without its control file: %+v", sum)
	}
	e.drop("r.csv.done", "rows=5\n")
	e.drop("m.csv", plain)
	e.drop("m.csv.done", "")
	sum := e.run()
	if sum.Archived != 1 || sum.Rejected != 1 {
		t.Fatalf("%+v", sum)
	}
	e.exactlyOnce("r.csv", ids)
	if ls := e.report("m.response.csv"); len(ls) != 1 || !strings.Contains(ls[0][8], "no control file m.csv.done") {
		t.Errorf("bare marker: %v", ls)
	}

	e.src.RequireManifest = false
	a, _ := csvRows("CL", 1, 3)
	e.drop("clash.zip", string(zipped(t, [2]string{"x/orders.csv", a}, [2]string{"y/Orders.csv", a})))
	sum = e.run()
	if sum.Rejected != 1 || !e.exists("failed/clash.zip") {
		t.Fatalf("clash: %+v", sum)
	}
	if ls := e.report("clash.zip.response.csv"); len(ls) != 1 || !strings.Contains(ls[0][8], `entries "x/orders.csv" and "y/Orders.csv" have the same file name`) {
		t.Errorf("clash report: %v", ls)
	}
	if n := len(e.records("orders.csv")) + len(e.records("Orders.csv")); n != 0 {
		t.Errorf("clash: %d records", n)
	}
}

// TestManyUnclosedQuotesStillChecked: a file full of quotes left open,
// with a manifest, is rejected whole at its first open quote (row 3, line
// 4): nothing is posted, and its one line names that quote.
func TestManyUnclosedQuotesStillChecked(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString(header)
	const n = 40
	for i := 1; i <= n; i++ {
		if i%3 == 0 {
			fmt.Fprintf(&b, "Q-%d,InvoiceHeader,%d,Success,Functional,\"open %d\r\n", i, i, i)
			continue
		}
		fmt.Fprintf(&b, "Q-%d,InvoiceHeader,%d,Success,Functional,ok\r\n", i, i)
	}
	e.drop("q.csv", b.String())
	e.drop("q.csv.done", fmt.Sprintf("rows=%d\n", n))
	sum := e.run()
	t.Logf("summary: %+v", sum)
	if sum.Rejected != 1 || !e.exists("failed/q.csv") {
		t.Fatalf("want q.csv rejected: %+v", sum)
	}
	if got := len(e.records("q.csv")); got != 0 {
		t.Errorf("%d records posted from a file whose row count does not match its manifest", got)
	}
	ls := e.report("q.response.csv")
	t.Logf("report: %v", ls)
	if len(ls) != 1 || !strings.Contains(ls[0][8], "unclosed quote") || !strings.Contains(ls[0][8], "line 4") {
		t.Errorf("want one line naming the first unclosed quote, got %v", ls)
	}
}
