package sla_test

import (
	"testing"
	"time"

	"github.com/ihr-tools/ihr/scheduler"
	"github.com/ihr-tools/ihr/sla"
)

func TestLastWindow(t *testing.T) {
	sched, err := scheduler.ParseSchedule("CRON_TZ=UTC 0 2 * * 1-5")
	if err != nil {
		t.Fatal(err)
	}
	e := sla.Expect{Schedule: sched, Within: 2 * time.Hour}
	at := func(s string) time.Time {
		x, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	// Tuesday 03:00: Tuesday's window is still open, so Monday's is last.
	w, ok := e.Last(at("2026-12-01T03:00:00Z"))
	if !ok || !w.Due.Equal(at("2026-11-30T02:00:00Z")) || !w.To.Equal(at("2026-11-30T04:00:00Z")) || !w.From.Equal(at("2026-11-30T00:00:00Z")) {
		t.Fatalf("window %+v", w)
	}
	// Monday after the weekend: Friday's.
	if w, _ := e.Last(at("2026-11-30T01:00:00Z")); !w.Due.Equal(at("2026-11-27T02:00:00Z")) {
		t.Fatalf("monday: %+v", w)
	}
	w, _ = e.Last(at("2026-12-01T05:00:00Z"))
	for _, c := range []struct {
		arrived string
		met     bool
	}{
		{"2026-12-01T01:58:00Z", true}, // early, same night
		{"2026-12-01T03:59:00Z", true},
		{"2026-12-01T04:00:00Z", false}, // late
		{"2026-11-30T23:00:00Z", false}, // the evening before
	} {
		a := at(c.arrived)
		if got := !a.Before(w.From) && a.Before(w.To); got != c.met {
			t.Errorf("arrival %s: met=%v, want %v", c.arrived, got, c.met)
		}
	}
	// Every 2 s, within 1 s: the early allowance stops at the previous
	// window's end.
	fast, _ := scheduler.ParseSchedule("*/2 * * * * *")
	w, ok = sla.Expect{Schedule: fast, Within: 1500 * time.Millisecond}.Last(at("2026-12-01T00:00:05Z"))
	if !ok || !w.Due.Equal(at("2026-12-01T00:00:02Z")) || !w.From.Equal(at("2026-12-01T00:00:01.5Z")) {
		t.Fatalf("fast: %+v", w)
	}
}
