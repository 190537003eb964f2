package config

import (
	"fmt"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/ihr-tools/ihr/unwrap"
)

// Decrypt names the private key a source's OpenPGP files are decrypted
// with (as `gpg --export-secret-keys` writes it, armored or binary) and
// the passphrase that unlocks it (passphrase or passphrase_file; none for
// a key without one).
type Decrypt struct {
	KeyFile    string `yaml:"key_file" path:"true"`
	Passphrase Secret `yaml:"passphrase"`
}

// PublicKey names a public key file (as `gpg --export` writes it).
type PublicKey struct {
	PublicKeyFile string `yaml:"public_key_file" path:"true"`
}

// Completeness says how a source's files prove they arrived whole.
type Completeness struct {
	// Manifest: "optional" (default: a NAME.done control file with rows=
	// and/or sha256= is checked when present) or "required" (a file is
	// taken only once its control file exists, and it must give them).
	Manifest string `yaml:"manifest"`
	// Trailer: the layout of a last row every file must end with, such as
	// "TRAILER,{rows}" ({rows}: the data row count; {*}: anything).
	Trailer string `yaml:"trailer"`
}

// Decompression bounds gzip streams and zip archives (zip bombs).
type Decompression struct {
	MaxRatio   float64 `yaml:"max_ratio"`   // decompressed/compressed bytes (200)
	MaxSizeMB  int     `yaml:"max_size_mb"` // decompressed MiB of one stream or entry (16384)
	MaxEntries int     `yaml:"max_entries"` // entries of one zip (1000)
}

// Manifest values.
const (
	ManifestOptional = "optional"
	ManifestRequired = "required"
)

// Keys are a source's OpenPGP keys, loaded and unlocked.
type Keys struct {
	Decrypt, Verify, ReportsTo openpgp.EntityList
}

// LoadKeys reads the source's decrypt, verify and encrypt_reports_to key
// files. The passphrase never appears in an error.
func (s *Source) LoadKeys() (Keys, error) {
	var k Keys
	var err error
	if s.Decrypt != nil {
		if k.Decrypt, err = s.loadDecrypt(); err != nil {
			return k, err
		}
	}
	if v := s.Verify; v != nil {
		if k.Verify, err = loadPublic(v.PublicKeyFile, false); err != nil {
			return k, err
		}
	}
	if r := s.EncryptReportsTo; r != nil {
		if k.ReportsTo, err = loadPublic(r.PublicKeyFile, true); err != nil {
			return k, err
		}
	}
	return k, nil
}

func (s *Source) loadDecrypt() (openpgp.EntityList, error) {
	d := s.Decrypt
	return loadKeyFile(d.KeyFile, func(f *os.File) (openpgp.EntityList, error) {
		return unwrap.LoadPrivateKeys(f, d.KeyFile, []byte(d.Passphrase.Reveal()))
	})
}

// loadPublic reads a public key file; forEncryption also requires every
// key in it to have a valid encryption key.
func loadPublic(file string, forEncryption bool) (openpgp.EntityList, error) {
	el, err := loadKeyFile(file, func(f *os.File) (openpgp.EntityList, error) { return unwrap.LoadPublicKeys(f, file) })
	if err != nil || !forEncryption {
		return el, err
	}
	for _, e := range el {
		if _, ok := e.EncryptionKey(time.Now()); !ok {
			return nil, fmt.Errorf("public key file %s: key %X has no valid encryption key", file, e.PrimaryKey.Fingerprint)
		}
	}
	return el, nil
}

func loadKeyFile(file string, load func(*os.File) (openpgp.EntityList, error)) (openpgp.EntityList, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return load(f)
}

// Limits converts decompression to unwrap's limits (zero: defaults).
func (s *Source) Limits() unwrap.Limits {
	d := s.Decompression
	if d == nil {
		return unwrap.Limits{}
	}
	return unwrap.Limits{MaxRatio: d.MaxRatio, MaxSize: int64(d.MaxSizeMB) << 20, MaxEntries: d.MaxEntries}
}

func (s *Source) validateUnwrap(v *validator, p string) {
	if d := s.Decrypt; d != nil && d.KeyFile == "" {
		v.add(p+".decrypt.key_file", "is required")
	}
	if s.Verify != nil && s.Verify.PublicKeyFile == "" {
		v.add(p+".verify.public_key_file", "is required")
	}
	if s.EncryptReportsTo != nil && s.EncryptReportsTo.PublicKeyFile == "" {
		v.add(p+".encrypt_reports_to.public_key_file", "is required")
	}
	if c := s.Completeness; c != nil {
		switch c.Manifest {
		case "", ManifestOptional, ManifestRequired:
		default:
			v.add(p+".completeness.manifest", "must be %q or %q, got %q", ManifestOptional, ManifestRequired, c.Manifest)
		}
		if c.Trailer != "" {
			if _, err := unwrap.ParseTrailer(c.Trailer); err != nil {
				v.add(p+".completeness.trailer", "%v", err)
			}
		}
	}
	if d := s.Decompression; d != nil {
		if d.MaxRatio < 0 {
			v.add(p+".decompression.max_ratio", "must not be negative")
		}
		if d.MaxSizeMB < 0 {
			v.add(p+".decompression.max_size_mb", "must not be negative")
		}
		if d.MaxEntries < 0 {
			v.add(p+".decompression.max_entries", "must not be negative")
		}
	}
}
