// Package buildinfo says which build a binary is: its version, the commit it
// was built from and that commit's date. Release builds (make release) set
// them with -ldflags "-X"; any other build falls back to what the Go
// toolchain recorded (the module version under `go install module@version`,
// the VCS revision and time when built in a checkout with -buildvcs).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker in release builds:
//
//	-X github.com/ihr-tools/ihr/internal/buildinfo.version=1.2.3
//	-X github.com/ihr-tools/ihr/internal/buildinfo.commit=<sha>
//	-X github.com/ihr-tools/ihr/internal/buildinfo.date=<RFC 3339, the commit's time>
var version, commit, date string

// Info describes one build. Empty Commit or Date means unknown.
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Date     string `json:"date"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// Read returns this binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return read(version, commit, date, bi)
}

func read(v, c, d string, bi *debug.BuildInfo) Info {
	info := Info{Version: v, Commit: c, Date: d, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = strings.TrimPrefix(bi.Main.Version, "v")
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && c == "" && info.Commit != "" {
			info.Commit += "-dirty"
		}
		if bi.GoVersion != "" {
			info.Go = bi.GoVersion
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is the one line `ihr-worker version` and `ihr-api --version` print
// after the program's name: "1.2.3 (commit 0123abcd…, 2026-05-01T10:00:00Z,
// go1.26.8 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if i.Commit != "" {
		parts = append(parts, "commit "+i.Commit)
	}
	if i.Date != "" {
		parts = append(parts, i.Date)
	}
	parts = append(parts, i.Go+" "+i.Platform)
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}
