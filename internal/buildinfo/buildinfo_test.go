package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestLinkerValuesWin(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v9.9.9"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "fromvcs"}, {Key: "vcs.time", Value: "2000-01-01T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := read("1.2.3", "abc123", "2026-05-01T10:00:00Z", bi)
	if got.Version != "1.2.3" || got.Commit != "abc123" || got.Date != "2026-05-01T10:00:00Z" || got.Go != "go1.26.8" {
		t.Errorf("got %+v", got)
	}
	if s := got.String(); !strings.HasPrefix(s, "1.2.3 (commit abc123, 2026-05-01T10:00:00Z, go1.26.8 ") {
		t.Errorf("String() = %q", s)
	}
}

func TestFallbackToToolchain(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "deadbeef"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := read("", "", "", bi)
	if got.Version != "1.4.0" || got.Commit != "deadbeef-dirty" || got.Date != "2026-01-02T03:04:05Z" {
		t.Errorf("got %+v", got)
	}
	if got := read("", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); got.Version != "dev" || got.Commit != "" {
		t.Errorf("a plain checkout build: got %+v", got)
	}
	if s := read("", "", "", nil).String(); !strings.HasPrefix(s, "dev (go") {
		t.Errorf("no build info: %q", s)
	}
}
