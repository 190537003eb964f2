package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts the standard 5-field cron expressions (minute hour
// day-of-month month day-of-week), the @daily/@hourly/@every descriptors,
// and the CRON_TZ=/TZ= prefixes. As a documented extension it also accepts
// a 6th, leading seconds field ("*/5 * * * * *"): nightly jobs never need
// it, but it lets tests and demos see several passes within seconds.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a cron expression as the worker's configuration
// accepts it (see parser). Times are in the server's local time zone unless
// the expression starts with CRON_TZ=Zone or TZ=Zone.
func ParseSchedule(expr string) (cron.Schedule, error) {
	spec := strings.TrimSpace(expr)
	if spec == "" {
		return nil, fmt.Errorf("empty cron expression")
	}
	// cron.Parser slices up to the first space after a TZ prefix and panics
	// when there is none; refuse that shape before it gets there.
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		if !strings.Contains(spec, " ") {
			return nil, fmt.Errorf("time zone prefix without a schedule")
		}
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	// A schedule that never fires (e.g. "0 0 30 2 *") is almost certainly a
	// mistake; robfig returns the zero time for it.
	if s.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("schedule never fires")
	}
	return s, nil
}
