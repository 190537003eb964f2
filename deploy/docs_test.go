package deploy

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ihr-tools/ihr/config"
	"github.com/ihr-tools/ihr/internal/workercli"
)

// configKeys lists every key the decoder accepts, from the yaml tags of
// the configuration's structs; secret keys also accept KEY_file.
func configKeys() (keys []string, fileForms []string) {
	secret := reflect.TypeOf(config.Secret(""))
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			keys = append(keys, name)
			if f.Type == secret {
				fileForms = append(fileForms, name+"_file")
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(config.Config{}))
	return keys, fileForms
}

// TestConfigKeysDocumented keeps the decoder, docs/configuration.md and
// config.example.yaml in step: every key the decoder accepts is written
// as `key` in the docs and appears (set or commented out) in the example.
func TestConfigKeysDocumented(t *testing.T) {
	docs, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys, fileForms := configKeys()
	if len(keys) < 40 {
		t.Fatalf("found only %d keys; is the reflection walk broken?", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(docs), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
		if !regexp.MustCompile(`(^|[\s{,#])` + regexp.QuoteMeta(k) + `:`).Match(example) {
			t.Errorf("deploy/config.example.yaml does not show %s:", k)
		}
	}
	for _, k := range fileForms {
		if !strings.Contains(string(docs), "`"+k+"`") {
			t.Errorf("docs/configuration.md does not mention `%s`", k)
		}
	}
}

// TestCommandsDocumented: every ihr-worker command and flag appears in
// docs/commands.md (as `ihr-worker NAME` and `--flag`).
func TestCommandsDocumented(t *testing.T) {
	docs, err := os.ReadFile("../docs/commands.md")
	if err != nil {
		t.Fatal(err)
	}
	root := workercli.NewCommand(workercli.Streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	check := func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			if !strings.Contains(string(docs), "`--"+f.Name) {
				t.Errorf("docs/commands.md does not document %s --%s", c.CommandPath(), f.Name)
			}
		})
	}
	check(root)
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		if !strings.Contains(string(docs), "## `ihr-worker "+c.Name()) {
			t.Errorf("docs/commands.md has no section \"## `ihr-worker %s …`\"", c.Name())
		}
		check(c)
	}
}

// TestDocsStayInsideTheRepository: user docs never point outside the
// repository (a user has only the repository), and every relative link
// resolves to a file in it.
func TestDocsStayInsideTheRepository(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md", "README.md", "../apiserver/README.md", "../tests/README.md")
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	root, _ := filepath.Abs("..")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "shared/spec") || strings.Contains(string(data), "../shared") {
			t.Errorf("%s points at ../shared, which users do not have", f)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			p, _ := filepath.Abs(filepath.Join(filepath.Dir(f), target))
			if !strings.HasPrefix(p, root+string(filepath.Separator)) {
				t.Errorf("%s: link %s leaves the repository", f, target)
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: link %s: %v", f, target, err)
			}
		}
	}
}

// TestLayoutMatchesTree keeps the README's layout section ("The path of a
// file" and "Around them") in step with the tree: it names every top-level
// folder holding Go code, and every folder under cmd/, internal/ and
// tests/; and every path it names exists.
func TestLayoutMatchesTree(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := layoutSection(t, string(readme))
	for _, dir := range goFolders(t, "..") {
		named := regexp.MustCompile("(^|[\\s`(])" + regexp.QuoteMeta(dir) + "(/|[\\s`),]|$)")
		if !named.MatchString(section) {
			t.Errorf("README.md's layout section does not name %s/", dir)
		}
	}
	for _, p := range layoutPaths(section) {
		if _, err := os.Stat(filepath.Join("..", filepath.FromSlash(p))); err != nil {
			t.Errorf("README.md's layout section names %s, which is not in the tree", p)
		}
	}
}

// layoutSection is the README from "## The path of a file" to the next
// second-level heading.
func layoutSection(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n## The path of a file\n")
	if !ok {
		t.Fatal(`README.md has no "## The path of a file" section`)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// goFolders lists the folders the layout must name: each top-level folder
// with a .go file anywhere below it, and each such folder directly under
// cmd/, internal/ and tests/. It skips what the go tool ignores (hidden
// folders, _folders, testdata).
func goFolders(t *testing.T, root string) []string {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root {
			if n := d.Name(); strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" {
				return filepath.SkipDir
			}
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil || rel == "." {
			return err
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		seen[parts[0]] = true
		if len(parts) > 1 && (parts[0] == "cmd" || parts[0] == "internal" || parts[0] == "tests") {
			seen[parts[0]+"/"+parts[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 10 {
		t.Fatalf("found only %d folders with Go code; is the walk broken?", len(seen))
	}
	dirs := make([]string, 0, len(seen))
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// layoutPaths is every path the section names: the first column of its
// code blocks, and each `quoted` word with a slash in it.
func layoutPaths(section string) []string {
	var paths []string
	inBlock := false
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			if f := strings.Fields(line); len(f) > 0 {
				paths = append(paths, f[0])
			}
		}
	}
	for _, m := range regexp.MustCompile("`([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*)`").FindAllStringSubmatch(section, -1) {
		paths = append(paths, m[1])
	}
	return paths
}
