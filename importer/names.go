package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ihr-tools/ihr/filestore"
)

// maxNameBytes is the longest base name the importer writes: what most
// file systems and SFTP/FTP servers allow. A longer derived name (a
// report, a timestamped archive name) is shortened by fitName, so a file
// whose own name is already at the limit is never stuck in inbox/.
const maxNameBytes = 255

// reportSuffix ends every report name.
const reportSuffix = ".response.csv"

// reportParts splits the report name for a file named name (its name in
// archive/ or failed/) into stem and suffix: NAME.csv → NAME + .response.csv.
// Only a lower-case .csv is dropped: a.CSV gives a.CSV.response.csv, so
// that names differing only in case never share a report name.
func reportParts(name string) (stem, ext string) {
	return strings.TrimSuffix(name, ".csv"), reportSuffix
}

// fitName joins stem and ext, shortening stem (at a character boundary)
// and ending it with ~ and a hash of the whole name when the result would
// exceed maxNameBytes. Distinct long names keep distinct short ones.
func fitName(stem, ext string) string {
	name := stem + ext
	if len(name) <= maxNameBytes {
		return name
	}
	if len(ext) > maxNameBytes/4 {
		stem, ext = name, "" // an "extension" that long is part of the name
	}
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:5])
	keep := max(0, min(maxNameBytes-len(ext)-len(tag), len(stem)))
	for keep > 0 && keep < len(stem) && !utf8.RuneStart(stem[keep]) {
		keep-- // never cut a character in half
	}
	cut := stem[:keep]
	return cut + tag + ext
}

// freeName returns dir/name, or, when taken, dir/STEM.<UTC time>EXT, with
// a counter if even that is taken; names are fitted to maxNameBytes.
func (im *Importer) freeName(ctx context.Context, src Source, dir, name string) (string, error) {
	stem, ext := splitExt(name)
	base, err := im.freeBase(ctx, src, stem, ext, func(base string) []string { return []string{path.Join(dir, base)} })
	return path.Join(dir, base), err
}

func splitExt(name string) (stem, ext string) {
	ext = path.Ext(name)
	if ext == name {
		ext = "" // ".csv" alone is a stem, not an extension
	}
	return strings.TrimSuffix(name, ext), ext
}

// freeBase returns the first of stem+ext, stem.<UTC time>+ext,
// stem.<UTC time>-2+ext, … (each fitted to maxNameBytes) for which every
// path of places(base) is free. Asking for several paths at once lets a
// file and its report get names that pair.
func (im *Importer) freeBase(ctx context.Context, src Source, stem, ext string, places func(base string) []string) (string, error) {
	free := func(base string) (bool, error) {
		for _, p := range places(base) {
			_, err := src.Store.Stat(ctx, p)
			switch {
			case err == nil:
				return false, nil
			case !errors.Is(err, filestore.ErrNotExist):
				return false, fmt.Errorf("%w: %s: stat %s: %w", ErrSourceUnavailable, src.Name, SafeName(p), err)
			}
		}
		return true, nil
	}
	base := fitName(stem, ext)
	if ok, err := free(base); err != nil || ok {
		return base, err
	}
	ts := im.cfg.Now().UTC().Format("20060102T150405Z")
	for i := 1; i < 1000; i++ {
		cand := stem + "." + ts
		if i > 1 {
			cand += "-" + strconv.Itoa(i)
		}
		base := fitName(cand, ext)
		if ok, err := free(base); err != nil || ok {
			return base, err
		}
	}
	return "", fmt.Errorf("importer: %s: no free name for %s", src.Name, SafeName(stem+ext))
}

// reportFor is the report path that pairs with a file named base in
// archive/ or failed/.
func reportFor(src Source, base string) string {
	stem, ext := src.reportParts(base)
	return path.Join(src.Folders.Reports, fitName(stem, ext))
}

// SafeName is a file name as it may be printed on a terminal or in a log:
// unchanged when it is printable UTF-8 without quotes or backslashes,
// otherwise Go-quoted, so control characters, terminal escapes and
// invalid bytes show as escapes (\x1b, \n, \xff) and two different names
// never print alike.
func SafeName(name string) string {
	for _, r := range name {
		if r == utf8.RuneError || r == '"' || r == '\\' || !strconv.IsPrint(r) {
			return strconv.Quote(name)
		}
	}
	return name
}

// SafeText is free text (a reason, an error) that may carry file names or
// input, made safe for a terminal: printable characters stay as they are,
// control characters, terminal escapes and invalid bytes become Go escapes
// (\x1b, \n, \xff).
func SafeText(s string) string {
	safe := true
	for _, r := range s {
		if r == utf8.RuneError || (!strconv.IsPrint(r) && r != ' ') {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsPrint(r) || r == ' ':
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// recordName is the integration_filename for a file named name. A valid
// UTF-8 name is itself; the API speaks JSON, which cannot carry invalid
// bytes (they would all become U+FFFD, and two files one name), so in an
// invalid name each invalid byte is written %XX and a hash of the bytes
// is added: two different names never share an integration_filename.
func recordName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&b, "%%%02X", name[i])
		} else {
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	sum := sha256.Sum256([]byte(name))
	return b.String() + "~" + hex.EncodeToString(sum[:4])
}
