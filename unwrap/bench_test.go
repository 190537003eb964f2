package unwrap_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/unwrap"
)

// BenchmarkLayers: MB/s of plain CSV out of each layer combination, on
// files GnuPG made (Curve25519, no OpenPGP compression): where an
// encrypted drop's time goes before the parser.
func BenchmarkLayers(b *testing.B) {
	var csv bytes.Buffer
	for i := 0; csv.Len() < 32<<20; i++ {
		fmt.Fprintf(&csv, "R-%d,InvoiceHeader,%d,Success,Functional,message %x%x\r\n", i, i, i*7919, i*104729)
	}
	g := testservers.StartGPG(b)
	g.GenKey("ihr@example.com", testservers.KeyCurve25519, "")
	keys := loadPrivate(b, g.ExportSecret("ihr@example.com", "", true), "")
	gzipped := gz(b, csv.Bytes())
	files := map[string][]byte{
		"plain":    csv.Bytes(),
		"gzip":     gzipped,
		"pgp":      g.Encrypt(csv.Bytes(), "ihr@example.com", "", "", false),
		"pgp+gzip": g.Encrypt(gzipped, "ihr@example.com", "", "", false),
	}
	for _, name := range []string{"plain", "gzip", "pgp", "pgp+gzip"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(csv.Len()))
			for b.Loop() {
				c, err := unwrap.Open(bytes.NewReader(files[name]), unwrap.Config{Decrypt: keys})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, c); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
