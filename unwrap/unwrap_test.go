package unwrap_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/unwrap"
)

const csvText = "external-id,document-type,document-id,status,contents\r\n" +
	"A-1,InvoiceHeader,1,Success,ok\r\nA-2,InvoiceHeader,2,Success,ok\r\nA-3,InvoiceHeader,3,Error,bad\r\n"

// keys is a GnuPG keyring with the worker's key ("ihr", the recipient)
// and the ERP's key ("erp", the signer), plus a stranger's key.
type keys struct {
	gpg                 *testservers.GPG
	decrypt, verify     openpgp.EntityList
	strangerDecrypt     openpgp.EntityList
	ihrKind, erpKind    string
	ihrPass, erpPass    string
	ihrUID, erpUID, str string
}

func newKeys(t *testing.T, ihrKind, erpKind string, armoredExport bool) *keys {
	t.Helper()
	g := testservers.StartGPG(t)
	k := &keys{gpg: g, ihrKind: ihrKind, erpKind: erpKind, ihrPass: "worker-secret-7", erpPass: "erp-pass",
		ihrUID: "ihr@example.com", erpUID: "erp@example.com", str: "stranger@example.com"}
	g.GenKey(k.ihrUID, ihrKind, k.ihrPass)
	g.GenKey(k.erpUID, erpKind, k.erpPass)
	g.GenKey(k.str, testservers.KeyCurve25519, "")
	k.decrypt = loadPrivate(t, g.ExportSecret(k.ihrUID, k.ihrPass, armoredExport), k.ihrPass)
	k.verify = loadPublic(t, g.ExportPublic(k.erpUID))
	k.strangerDecrypt = loadPrivate(t, g.ExportSecret(k.str, "", true), "")
	return k
}

func loadPrivate(t testing.TB, path, pass string) openpgp.EntityList {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	el, err := unwrap.LoadPrivateKeys(f, path, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	return el
}

func loadPublic(t *testing.T, path string) openpgp.EntityList {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	el, err := unwrap.LoadPublicKeys(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// readAll opens and reads data whole, as the importer's first pass does.
func readAll(data []byte, cfg unwrap.Config) (string, *unwrap.Content, error) {
	c, err := unwrap.Open(bytes.NewReader(data), cfg)
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	out, err := io.ReadAll(c)
	return string(out), c, err
}

// TestGnuPGMessages decrypts what gpg made: RSA and Curve25519 keys,
// armored and binary, signed and unsigned, with and without verify.
func TestGnuPGMessages(t *testing.T) {
	t.Parallel()
	for _, kinds := range [][2]string{{testservers.KeyRSA, testservers.KeyCurve25519}, {testservers.KeyCurve25519, testservers.KeyRSA}} {
		t.Run("worker-"+kinds[0]+"/erp-"+kinds[1], func(t *testing.T) {
			k := newKeys(t, kinds[0], kinds[1], kinds[0] == testservers.KeyRSA)
			for _, armored := range []bool{false, true} {
				for _, signed := range []bool{false, true} {
					name := fmt.Sprintf("armored=%v/signed=%v", armored, signed)
					signer := ""
					if signed {
						signer = k.erpUID
					}
					msg := k.gpg.Encrypt([]byte(csvText), k.ihrUID, signer, k.erpPass, armored)
					got, c, err := readAll(msg, unwrap.Config{Decrypt: k.decrypt})
					if err != nil || got != csvText || c.Layers[0] != "pgp" {
						t.Fatalf("%s: %q %v", name, got, err)
					}
					// A manifest's SHA-256 of the CSV inside matches.
					sum := sha256.Sum256([]byte(csvText))
					m := &unwrap.Manifest{From: "x.done", Rows: -1, SHA256: hex.EncodeToString(sum[:])}
					if _, _, err := readAll(msg, unwrap.Config{Decrypt: k.decrypt, Manifest: m}); err != nil {
						t.Errorf("%s: manifest of the CSV inside: %v", name, err)
					}
					// With verify: only the signed message passes.
					got, _, err = readAll(msg, unwrap.Config{Decrypt: k.decrypt, Verify: k.verify})
					switch {
					case signed && (err != nil || got != csvText):
						t.Errorf("%s verify: %v", name, err)
					case !signed && !errors.Is(err, unwrap.ErrUnsigned):
						t.Errorf("%s verify: unsigned message accepted: %v", name, err)
					}
				}
			}
			// Signed only (not encrypted), verified.
			msg := k.gpg.Sign([]byte(csvText), k.erpUID, k.erpPass, false)
			if got, _, err := readAll(msg, unwrap.Config{Verify: k.verify}); err != nil || got != csvText {
				t.Errorf("signed-only: %q %v", got, err)
			}
		})
	}
}

// TestGnuPGFailures: a wrong key, a tampered message, a bad signature,
// an unsigned or plain file where a signature is required.
func TestGnuPGFailures(t *testing.T) {
	t.Parallel()
	k := newKeys(t, testservers.KeyRSA, testservers.KeyCurve25519, true)
	t.Run("wrong key", func(t *testing.T) {
		msg := k.gpg.Encrypt([]byte(csvText), k.ihrUID, "", "", false)
		_, _, err := readAll(msg, unwrap.Config{Decrypt: k.strangerDecrypt})
		if !errors.Is(err, unwrap.ErrDecrypt) || !unwrap.IsFileError(err) {
			t.Fatalf("got %v", err)
		}
		_, _, err = readAll(msg, unwrap.Config{})
		if !errors.Is(err, unwrap.ErrNoKey) {
			t.Fatalf("no key configured: %v", err)
		}
	})
	t.Run("wrong passphrase", func(t *testing.T) {
		path := k.gpg.ExportSecret(k.ihrUID, k.ihrPass, true)
		f, _ := os.Open(path)
		defer f.Close()
		_, err := unwrap.LoadPrivateKeys(f, path, []byte("not-the-passphrase"))
		if err == nil || strings.Contains(err.Error(), "not-the-passphrase") || strings.Contains(err.Error(), k.ihrPass) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		big := []byte(strings.Repeat(csvText, 2000))
		for _, signed := range []bool{false, true} {
			signer := ""
			if signed {
				signer = k.erpUID
			}
			msg := k.gpg.Encrypt(big, k.ihrUID, signer, k.erpPass, false)
			msg[len(msg)/2] ^= 0x20
			got, _, err := readAll(msg, unwrap.Config{Decrypt: k.decrypt})
			if err == nil || !unwrap.IsFileError(err) {
				t.Fatalf("signed=%v: tampered message read without a file error (%d bytes, %v)", signed, len(got), err)
			}
			t.Logf("signed=%v: %v", signed, err)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		// A signed message whose data was changed after signing: no
		// compression, so the flipped byte is in the literal data itself.
		msg := k.gpg.Sign([]byte(csvText), k.erpUID, k.erpPass, false, "--compress-algo", "none")
		i := bytes.Index(msg, []byte("A-2"))
		if i < 0 {
			t.Fatal("literal data not found in the message")
		}
		msg[i] = 'B'
		_, _, err := readAll(msg, unwrap.Config{Verify: k.verify})
		if !errors.Is(err, unwrap.ErrSignature) {
			t.Fatalf("got %v", err)
		}
		// Signed by a key that is not in the verify file.
		msg = k.gpg.Encrypt([]byte(csvText), k.ihrUID, k.str, "", true)
		_, _, err = readAll(msg, unwrap.Config{Decrypt: k.decrypt, Verify: k.verify})
		if !errors.Is(err, unwrap.ErrUnsigned) {
			t.Fatalf("stranger's signature: %v", err)
		}
		// A plain CSV where a signature is required.
		_, _, err = readAll([]byte(csvText), unwrap.Config{Verify: k.verify})
		if !errors.Is(err, unwrap.ErrUnsigned) {
			t.Fatalf("plain file: %v", err)
		}
	})
}

// TestReportEncryptedBack: what EncryptTo writes, gpg decrypts.
func TestReportEncryptedBack(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{testservers.KeyRSA, testservers.KeyCurve25519} {
		t.Run(kind, func(t *testing.T) {
			g := testservers.StartGPG(t)
			g.GenKey("erp@example.com", kind, "erp-pass")
			to := loadPublic(t, g.ExportPublic("erp@example.com"))
			var buf bytes.Buffer
			w, err := unwrap.EncryptTo(&buf, to, "a.response.csv")
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, csvText)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := g.Decrypt(buf.Bytes(), "erp-pass")
			if err != nil || string(got) != csvText {
				t.Fatalf("gpg -d: %q %v", got, err)
			}
		})
	}
}

func gz(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// TestGzip: found by its magic bytes, also inside an encrypted message;
// corrupt and bomb streams fail with file errors.
func TestGzip(t *testing.T) {
	t.Parallel()
	got, c, err := readAll(gz(t, []byte(csvText)), unwrap.Config{})
	if err != nil || got != csvText || strings.Join(c.Layers, ",") != "gzip" {
		t.Fatalf("%q %v %v", got, c, err)
	}
	k := newKeys(t, testservers.KeyCurve25519, testservers.KeyCurve25519, true)
	msg := k.gpg.Encrypt(gz(t, []byte(csvText)), k.ihrUID, k.erpUID, k.erpPass, true)
	got, c, err = readAll(msg, unwrap.Config{Decrypt: k.decrypt, Verify: k.verify})
	if err != nil || got != csvText || strings.Join(c.Layers, ",") != "pgp,gzip" {
		t.Fatalf("pgp+gzip: %q %v %v", got, c, err)
	}
	bad := gz(t, []byte(strings.Repeat(csvText, 100)))
	bad[len(bad)-6] ^= 0xff // the CRC
	if _, _, err := readAll(bad, unwrap.Config{}); !errors.Is(err, unwrap.ErrGzip) {
		t.Fatalf("corrupt gzip: %v", err)
	}
	bomb := gz(t, make([]byte, 64<<20))
	_, _, err = readAll(bomb, unwrap.Config{})
	if !errors.Is(err, unwrap.ErrBomb) || !strings.Contains(err.Error(), "max_ratio") {
		t.Fatalf("bomb: %v", err)
	}
	t.Logf("bomb: %v", err)
	_, _, err = readAll(gz(t, []byte(strings.Repeat(csvText, 1000))), unwrap.Config{Limits: unwrap.Limits{MaxSize: 10000}})
	if !errors.Is(err, unwrap.ErrBomb) || !strings.Contains(err.Error(), "max_size") {
		t.Fatalf("size: %v", err)
	}
}

func zipOf(t testing.TB, entries ...[2]string) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, e := range entries {
		f, err := w.Create(e[0])
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(f, e[1])
	}
	w.Close()
	return b.Bytes()
}

// TestZip: CSV entries in name order, others ignored; a name clash, too
// many entries and a bomb are refused before any entry is read.
func TestZip(t *testing.T) {
	open := func(data []byte, lim unwrap.Limits) (*unwrap.Archive, error) {
		c, err := unwrap.Open(bytes.NewReader(data), unwrap.Config{})
		if err != nil {
			return nil, err
		}
		if !c.Archive {
			t.Fatal("not seen as an archive")
		}
		return unwrap.OpenArchive(c, t.TempDir(), lim)
	}
	a, err := open(zipOf(t, [2]string{"b.csv", csvText}, [2]string{"dir/a.CSV", "x\r\n"}, [2]string{"readme.txt", "hi"}), unwrap.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	es := a.Entries()
	if len(es) != 2 || es[0].Name != "a.CSV" || es[0].Path != "dir/a.CSV" || es[1].Name != "b.csv" || len(a.Ignored) != 1 {
		t.Fatalf("entries %+v ignored %v", es, a.Ignored)
	}
	rc, _ := a.Open(es[1])
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != csvText {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := open(zipOf(t, [2]string{"x/a.csv", csvText}, [2]string{"y/a.csv", csvText}), unwrap.Limits{}); !errors.Is(err, unwrap.ErrArchive) || !strings.Contains(err.Error(), "same file name") {
		t.Fatalf("clash: %v", err)
	}
	if _, err := open(zipOf(t, [2]string{"a.csv", "1"}, [2]string{"b.csv", "2"}, [2]string{"c.csv", "3"}), unwrap.Limits{MaxEntries: 2}); !errors.Is(err, unwrap.ErrBomb) {
		t.Fatalf("entries: %v", err)
	}
	_, err = open(zipOf(t, [2]string{"bomb.csv", strings.Repeat("0", 50<<20)}), unwrap.Limits{})
	if !errors.Is(err, unwrap.ErrBomb) {
		t.Fatalf("bomb: %v", err)
	}
	t.Logf("bomb: %v", err)
}

// TestCompleteness: manifest rows and SHA-256, trailer rows.
func TestCompleteness(t *testing.T) {
	sum := sha256.Sum256([]byte(csvText))
	hexSum := hex.EncodeToString(sum[:])
	m, err := unwrap.ParseManifest(strings.NewReader("rows=3 sha256="+hexSum+"\n"), "a.csv.done")
	if err != nil || m.Rows != 3 || m.SHA256 != hexSum {
		t.Fatalf("%+v %v", m, err)
	}
	if m, err := unwrap.ParseManifest(strings.NewReader(" \n"), "a.done"); m != nil || err != nil {
		t.Fatalf("empty marker: %+v %v", m, err)
	}
	if _, err := unwrap.ParseManifest(strings.NewReader("rows=x"), "a.done"); !errors.Is(err, unwrap.ErrIncomplete) {
		t.Fatalf("bad rows: %v", err)
	}
	_, c, err := readAll([]byte(csvText), unwrap.Config{Manifest: m})
	if err != nil || c.CheckRows(3) != nil {
		t.Fatalf("%v %v", err, c.CheckRows(3))
	}
	if err := c.CheckRows(2); !errors.Is(err, unwrap.ErrIncomplete) || !strings.Contains(err.Error(), "expects 3 data rows, found 2") {
		t.Fatalf("rows: %v", err)
	}
	m2 := *m
	m2.SHA256 = strings.Repeat("0", 64)
	if _, _, err := readAll([]byte(csvText), unwrap.Config{Manifest: &m2}); !errors.Is(err, unwrap.ErrIncomplete) || !strings.Contains(err.Error(), hexSum) {
		t.Fatalf("sha: %v", err)
	}
	// The manifest may give the hash of the stored (compressed) file.
	z := gz(t, []byte(csvText))
	zs := sha256.Sum256(z)
	m2.SHA256 = hex.EncodeToString(zs[:])
	if _, _, err := readAll(z, unwrap.Config{Manifest: &m2}); err != nil {
		t.Fatalf("stored hash: %v", err)
	}

	tr, err := unwrap.ParseTrailer("TRAILER,{rows}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tail := range []string{"TRAILER,3\r\n", "TRAILER,3", "\"TRAILER\",\"3\"\n"} {
		got, c, err := readAll([]byte(csvText+tail), unwrap.Config{Trailer: tr})
		if err != nil || got != csvText || c.CheckRows(3) != nil {
			t.Fatalf("%q: %q %v", tail, got, err)
		}
		if err := c.CheckRows(4); !errors.Is(err, unwrap.ErrIncomplete) {
			t.Fatalf("%q: %v", tail, err)
		}
	}
	if _, _, err := readAll([]byte(csvText), unwrap.Config{Trailer: tr}); !errors.Is(err, unwrap.ErrIncomplete) || !strings.Contains(err.Error(), "not a trailer") {
		t.Fatalf("missing trailer: %v", err)
	}
	// Through a reader that returns one byte at a time.
	c, _ = unwrap.Open(io.MultiReader(strings.NewReader(csvText), strings.NewReader("TRAILER,3\n")), unwrap.Config{Trailer: tr})
	got, err := io.ReadAll(oneByte{c})
	if err != nil || string(got) != csvText {
		t.Fatalf("one byte: %q %v", got, err)
	}
	// Over many reads of odd sizes, with a line longer than any trailer
	// in the middle: every byte before the trailer is passed on, in order.
	var big strings.Builder
	for i := 0; big.Len() < 300<<10; i++ {
		fmt.Fprintf(&big, "R-%d,InvoiceHeader,%d,Success,Functional,m\r\n", i, i)
		if i == 2000 {
			big.WriteString(strings.Repeat("x", 10<<10) + "\r\n")
		}
	}
	c, _ = unwrap.Open(iotest.HalfReader(strings.NewReader(big.String()+"TRAILER,7\r\n")), unwrap.Config{Trailer: tr})
	got, err = io.ReadAll(c)
	if err != nil || string(got) != big.String() || c.CheckRows(7) != nil {
		t.Fatalf("many reads: %d bytes of %d, %v", len(got), big.Len(), err)
	}
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// TestReadPastEOF: readers (bufio, parsers) may call Read again after
// io.EOF; a signed message must still end cleanly.
func TestReadPastEOF(t *testing.T) {
	t.Parallel()
	k := newKeys(t, testservers.KeyCurve25519, testservers.KeyCurve25519, true)
	msg := k.gpg.Encrypt([]byte(csvText), k.ihrUID, k.erpUID, k.erpPass, false)
	c, err := unwrap.Open(bytes.NewReader(msg), unwrap.Config{Decrypt: k.decrypt, Verify: k.verify})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(c); err != nil || string(got) != csvText {
		t.Fatalf("%q %v", got, err)
	}
	for range 3 {
		if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("after EOF: %d %v", n, err)
		}
	}
}
