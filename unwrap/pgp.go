package unwrap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// LoadPrivateKeys reads an armored or binary secret key file (as
// `gpg --export-secret-keys` writes it) and unlocks its keys with
// passphrase (nil or empty for keys that have none). Errors name the file
// and key fingerprints, never the passphrase.
func LoadPrivateKeys(r io.Reader, file string, passphrase []byte) (openpgp.EntityList, error) {
	el, err := readKeys(r)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %v", file, err)
	}
	var withSecret openpgp.EntityList
	for _, e := range el {
		if e.PrivateKey == nil {
			continue
		}
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("key file %s: the passphrase does not unlock key %X", file, e.PrimaryKey.Fingerprint)
		}
		withSecret = append(withSecret, e)
	}
	if len(withSecret) == 0 {
		return nil, fmt.Errorf("key file %s holds no private key (export it with gpg --export-secret-keys)", file)
	}
	return withSecret, nil
}

// LoadPublicKeys reads an armored or binary public key file (as
// `gpg --export` writes it).
func LoadPublicKeys(r io.Reader, file string) (openpgp.EntityList, error) {
	el, err := readKeys(r)
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %v", file, err)
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("public key file %s holds no key", file)
	}
	return el, nil
}

func readKeys(r io.Reader) (openpgp.EntityList, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(64)
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(br)
	}
	return openpgp.ReadKeyRing(br)
}

// looksPGP recognises the first packet of a binary OpenPGP message: a
// public- or symmetric-key encrypted session key, a one-pass signature, a
// signature, compressed or literal data, or encrypted data. CSV text never
// starts like that: its first byte is ASCII, a BOM (EF) or a Shift_JIS
// lead byte, and those that have the high bit set fail the tag and
// version checks below.
func looksPGP(b []byte) bool {
	if len(b) < 3 || b[0]&0x80 == 0 {
		return false
	}
	var tag int
	var body []byte
	if b[0]&0x40 != 0 { // new format
		tag = int(b[0] & 0x3f)
		switch l := b[1]; {
		case l < 192:
			body = b[2:]
		case l < 224:
			body = b[3:]
		case l == 255:
			body = b[6:]
		default:
			body = b[2:] // partial length
		}
	} else {
		tag = int(b[0]&0x3c) >> 2
		switch b[0] & 3 {
		case 0:
			body = b[2:]
		case 1:
			body = b[3:]
		case 2:
			body = b[5:]
		default:
			body = b[1:]
		}
	}
	if len(body) == 0 {
		return false
	}
	v := body[0]
	switch tag {
	case 1: // public-key encrypted session key: version 3 or 6
		return v == 3 || v == 6
	case 3: // symmetric-key encrypted session key: 4, 5 or 6
		return v == 4 || v == 5 || v == 6
	case 4: // one-pass signature: 3 or 6
		return v == 3 || v == 6
	case 2: // signature: 3, 4, 5 or 6
		return v >= 3 && v <= 6
	case 8: // compressed: algorithm 0-3
		return v <= 3
	case 11: // literal: format b, t, u, m
		return v == 'b' || v == 't' || v == 'u' || v == 'm'
	case 18: // SEIPD: 1 or 2
		return v == 1 || v == 2
	case 20: // AEAD
		return v == 1
	}
	return false
}

// openPGP starts reading an OpenPGP message.
func openPGP(r io.Reader, armored bool, cfg Config) (io.Reader, error) {
	if armored {
		block, err := armor.Decode(r)
		if err != nil {
			return nil, fmt.Errorf("%w: bad ASCII armor: %v", ErrCorrupt, err)
		}
		if block.Type != "PGP MESSAGE" {
			return nil, fmt.Errorf("%w: armored block is a %q, not a PGP MESSAGE", ErrCorrupt, block.Type)
		}
		r = block.Body
	}
	keyring := append(append(openpgp.EntityList{}, cfg.Decrypt...), cfg.Verify...)
	md, err := openpgp.ReadMessage(r, keyring, nil, &packet.Config{})
	if errors.Is(err, pgperrors.ErrKeyIncorrect) && len(cfg.Decrypt) == 0 {
		return nil, ErrNoKey
	}
	if err != nil {
		return nil, pgpError(err)
	}
	return &pgpReader{md: md, cfg: cfg}, nil
}

func pgpError(err error) error {
	var se pgperrors.SignatureError
	var st pgperrors.StructuralError
	switch {
	case IsFileError(err):
		return err
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		return fmt.Errorf("%w: no key of the source's key_file fits the message", ErrDecrypt)
	case errors.Is(err, pgperrors.ErrMDCHashMismatch), errors.Is(err, pgperrors.ErrMDCMissing),
		errors.As(err, &se), errors.As(err, &st), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var ue pgperrors.UnsupportedError
	var ie pgperrors.InvalidArgumentError
	if errors.As(err, &ue) || errors.As(err, &ie) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if strings.HasPrefix(err.Error(), "openpgp:") {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err // the store's own read error
}

// pgpReader reads the literal data and settles integrity and signature at
// its end.
type pgpReader struct {
	md  *openpgp.MessageDetails
	cfg Config
	end error // sticky: the message must not be read past its end
}

func (p *pgpReader) Read(b []byte) (int, error) {
	if p.end != nil {
		return 0, p.end
	}
	n, err := p.md.UnverifiedBody.Read(b)
	if err != nil {
		err = p.settle(err)
		p.end = err
	}
	return n, err
}

func (p *pgpReader) settle(err error) error {
	if err != io.EOF {
		return pgpError(err)
	}
	if verr := p.verdict(); verr != nil {
		return verr
	}
	return io.EOF
}

// verdict: the message was read whole; is its signature acceptable?
func (p *pgpReader) verdict() error {
	md := p.md
	if len(p.cfg.Verify) == 0 {
		// Not asked to verify: a signature by a key we do not know is
		// fine, but one that is known and bad is not.
		if md.IsSigned && md.SignedBy != nil && md.SignatureError != nil {
			return fmt.Errorf("%w: %v", ErrSignature, md.SignatureError)
		}
		return nil
	}
	switch {
	case !md.IsSigned:
		return fmt.Errorf("%w: the message carries no signature", ErrUnsigned)
	case md.SignedBy == nil || !signedByOneOf(md, p.cfg.Verify):
		return fmt.Errorf("%w: signed by key ID %016X, which is not in the verify key file", ErrUnsigned, md.SignedByKeyId)
	case md.SignatureError != nil:
		return fmt.Errorf("%w: %v", ErrSignature, md.SignatureError)
	case md.Signature == nil:
		return fmt.Errorf("%w: no signature packet after the data", ErrSignature)
	}
	return nil
}

func signedByOneOf(md *openpgp.MessageDetails, el openpgp.EntityList) bool {
	if md.SignedBy == nil || md.SignedBy.Entity == nil {
		return false
	}
	fp := md.SignedBy.Entity.PrimaryKey.Fingerprint
	for _, e := range el {
		if bytes.Equal(e.PrimaryKey.Fingerprint, fp) {
			return true
		}
	}
	return false
}

// EncryptTo returns a writer that encrypts what is written to it for the
// recipients and writes the binary OpenPGP message to w; Close finishes
// the message (it does not close w).
func EncryptTo(w io.Writer, to openpgp.EntityList, name string) (io.WriteCloser, error) {
	return openpgp.Encrypt(w, to, nil, &openpgp.FileHints{IsBinary: true, FileName: name}, &packet.Config{})
}
