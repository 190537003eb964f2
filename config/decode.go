package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks the YAML node tree itself rather than calling
// yaml.Unmarshal, so that every error (unknown key, wrong type, missing
// environment variable, unreadable secret file) can name its key path, and
// so that ${VAR} expansion happens on values only, before typing.
type decoder struct {
	opt   Options
	lines map[string]int
	errs  Errors
}

var (
	secretType   = reflect.TypeOf(Secret(""))
	durationType = reflect.TypeOf(time.Duration(0))
	sourceType   = reflect.TypeOf(Source{})
)

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{Key: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) decodeDocument(data []byte, c *Config) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.errs = append(d.errs, &Error{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		d.errs = append(d.errs, &Error{Msg: "the file is empty"})
		return
	}
	d.value(doc.Content[0], reflect.ValueOf(c).Elem(), "")
}

// value decodes n into v; path names n for messages ("" is the root).
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		// "key:" with no value: leave the default in place.
		return
	}
	switch {
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case v.Kind() == reflect.Struct:
		d.structure(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	case v.Kind() == reflect.Map:
		d.mapping(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// field is one accepted key of a struct.
type field struct {
	index  int
	isFile bool // the *_file spelling of a Secret field
	isPath bool // a file path, resolved against Options.Dir
}

func structFields(t reflect.Type) (map[string]field, []string) {
	m := map[string]field{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = field{index: i, isPath: f.Tag.Get("path") == "true"}
		names = append(names, name)
		if f.Type == secretType {
			m[name+"_file"] = field{index: i, isFile: true}
			names = append(names, name+"_file")
		}
	}
	return m, names
}

// mappingPairs flattens a mapping's key/value pairs, applying YAML merge
// keys ("<<: *common") so that sources can share store settings; explicit
// keys win over merged ones.
func mappingPairs(n *yaml.Node) (pairs [][2]*yaml.Node) {
	var merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			v = resolveAlias(v)
			var srcs []*yaml.Node
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			} else {
				srcs = []*yaml.Node{v}
			}
			for _, s := range srcs {
				if s = resolveAlias(s); s.Kind == yaml.MappingNode {
					merged = append(merged, mappingPairs(s)...)
				}
			}
			continue
		}
		pairs = append(pairs, [2]*yaml.Node{k, v})
	}
	explicit := map[string]bool{}
	for _, p := range pairs {
		explicit[p[0].Value] = true
	}
	for _, p := range merged {
		if !explicit[p[0].Value] {
			pairs = append(pairs, p)
			explicit[p[0].Value] = true
		}
	}
	return pairs
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	fields, names := structFields(v.Type())
	seen := map[string]*yaml.Node{}
	setBy := map[int]string{} // field index → key that set it
	for _, p := range mappingPairs(n) {
		k, val := p[0], p[1]
		key := k.Value
		kp := join(path, key)
		if prev, dup := seen[key]; dup {
			d.fail(kp, k, "repeated key (first at line %d)", prev.Line)
			continue
		}
		seen[key] = k
		f, ok := fields[key]
		if !ok {
			msg := "unknown key"
			if s := suggest(key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.fail(kp, k, "%s", msg)
			continue
		}
		if other, dup := setBy[f.index]; dup {
			d.fail(kp, k, "set either %s or %s, not both", other, key)
			continue
		}
		setBy[f.index] = key
		fv := v.Field(f.index)
		switch {
		case f.isFile:
			d.lines[kp] = val.Line
			d.lines[join(path, strings.TrimSuffix(key, "_file"))] = val.Line
			name, ok := d.text(val, kp)
			if !ok {
				continue
			}
			secret, err := d.readSecretFile(name)
			if err != nil {
				d.fail(kp, val, "%v", err)
				continue
			}
			fv.SetString(secret)
		case f.isPath:
			d.value(val, fv, kp)
			if p := fv.String(); p != "" && !filepath.IsAbs(p) && d.opt.Dir != "" {
				fv.SetString(filepath.Join(d.opt.Dir, p))
			}
		default:
			if fv.Kind() == reflect.Slice && fv.Type().Elem() == sourceType {
				d.sources(val, fv, kp)
				continue
			}
			d.value(val, fv, kp)
		}
	}
}

// sources decodes the list of sources, each starting from its defaults.
func (d *decoder) sources(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	d.lines[path] = n.Line
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n, "expected a list of sources, got %s", kindName(n))
		return
	}
	out := make([]Source, len(n.Content))
	for i, e := range n.Content {
		out[i] = newSource()
		d.value(e, reflect.ValueOf(&out[i]).Elem(), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(reflect.ValueOf(out))
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
		// scopes: "a b" — OAuth's own space-separated form.
		s, ok := d.text(n, path)
		if !ok {
			return
		}
		v.Set(reflect.ValueOf(strings.Fields(s)))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n, "expected a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		d.value(e, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: only string-keyed maps are supported")
	}
	out := reflect.MakeMap(v.Type())
	seen := map[string]int{}
	for _, p := range mappingPairs(n) {
		k, val := p[0], p[1]
		kp := fmt.Sprintf("%s[%q]", path, k.Value)
		if line, dup := seen[k.Value]; dup {
			d.fail(kp, k, "repeated key (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, kp)
		out.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(out)
}

// text returns a scalar's value with ${VAR} expanded.
func (d *decoder) text(n *yaml.Node, path string) (string, bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n, "expected a single value, got %s", kindName(n))
		return "", false
	}
	s, err := expand(n.Value, d.opt.LookupEnv)
	if err != nil {
		d.fail(path, n, "%v", err)
		return "", false
	}
	return s, true
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.text(n, path)
	if !ok {
		return
	}
	// Values are typed from their (expanded) text, so "rate_limit: ${RATE}"
	// and the quoted numbers of a JSON-minded author both work.
	switch {
	case v.Type() == durationType:
		dur, err := parseDuration(s)
		if err != nil {
			d.fail(path, n, "invalid duration %q (want a Go duration such as 30s, 5m or 1h30m, or days such as 90d)", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			d.fail(path, n, "expected true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			d.fail(path, n, "expected a whole number, got %q", s)
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			d.fail(path, n, "expected a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// readSecretFile reads a *_file secret. One trailing newline (as editors
// and `echo` leave it, or a Kubernetes Secret created from a file) is not
// part of the secret.
func (d *decoder) readSecretFile(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty file name")
	}
	if !filepath.IsAbs(name) && d.opt.Dir != "" {
		name = filepath.Join(d.opt.Dir, name)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}

// expand replaces ${VAR} and ${VAR:-default} from the environment. A bare
// $ is left alone (passwords contain them); "$${" is a literal "${".
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i]) // keeps one '$' of "$$", then the literal "{"
			b.WriteString("{")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s[i:])
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		val, ok := lookup(name)
		switch {
		case ok && (val != "" || !hasDef):
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		s = s[i+end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// suggest returns the known key closest to key, if it is a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dd := distance(strings.ToLower(key), k); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best == "" && strings.Contains(key, "-") {
		// api-key for api_key: the spec's keys use underscores.
		u := strings.ReplaceAll(key, "-", "_")
		for _, k := range known {
			if k == u {
				return k
			}
		}
	}
	return best
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
