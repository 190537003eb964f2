package config

import "encoding/json"

// Redacted is what a Secret shows everywhere except Reveal.
const Redacted = "***"

// Secret is a credential read from the configuration. It prints, logs
// (fmt, zap reflection, JSON, YAML) and marshals as "***" so that dumping a
// Config never leaks it; an empty Secret shows as "" so that "not set"
// stays visible.
type Secret string

// Reveal returns the secret itself, for the one place it is sent.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a value was given.
func (s Secret) IsSet() bool { return s != "" }

func (s Secret) show() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.show() }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return `config.Secret("` + s.show() + `")` }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.show()) }

// MarshalText implements encoding.TextMarshaler (zap, text encoders, map keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.show()), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.show(), nil }
