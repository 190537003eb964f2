package config

import (
	"fmt"
	"strings"
)

// Error is one problem with the configuration, at a key.
type Error struct {
	File string // the configuration file, when loaded from one
	Line int    // 1-based; 0 when unknown (a key that is missing)
	Key  string // path such as "sources[1].schedule"; "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found, in file order; Load reports them all at
// once so that a user fixes a file in one round.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) withFile(file string) Errors {
	for _, e := range es {
		e.File = file
	}
	return es
}

// withoutAPI drops the problems under the api key.
func (es Errors) withoutAPI() Errors {
	var out Errors
	for _, e := range es {
		if e.Key == "api" || strings.HasPrefix(e.Key, "api.") {
			continue
		}
		out = append(out, e)
	}
	return out
}
