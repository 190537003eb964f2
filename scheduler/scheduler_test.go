package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestParseSchedule(t *testing.T) {
	good := []string{
		"0 2 * * *",
		"*/15 * * * 1-5",
		"CRON_TZ=Europe/Berlin 0 2 * * *",
		"TZ=UTC 30 1 * * *",
		"@daily",
		"@every 90s",
		"* * * * * *", // seconds extension
	}
	for _, e := range good {
		if _, err := ParseSchedule(e); err != nil {
			t.Errorf("ParseSchedule(%q): %v", e, err)
		}
	}
	bad := []string{"", "0 2 * *", "61 * * * *", "CRON_TZ=Nowhere/Town 0 2 * * *", "TZ=UTC", "0 0 30 2 *", "1 2 3 4 5 6 7"}
	for _, e := range bad {
		if _, err := ParseSchedule(e); err == nil {
			t.Errorf("ParseSchedule(%q) accepted a bad expression", e)
		}
	}
}

func TestParseScheduleTimeZone(t *testing.T) {
	s, err := ParseSchedule("CRON_TZ=Asia/Tokyo 0 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	next := s.Next(from)
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	if got := next.In(tokyo); got.Hour() != 2 || got.Minute() != 0 {
		t.Fatalf("next = %v, want 02:00 Tokyo time", got)
	}
}

type recorder struct {
	mu                               sync.Mutex
	started, finished, skip, overdue map[string]int
	triggers                         []Trigger
}

func newRecorder() *recorder {
	return &recorder{started: map[string]int{}, finished: map[string]int{}, skip: map[string]int{}, overdue: map[string]int{}}
}
func (r *recorder) PassOverdue(job string, _ Trigger, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.overdue[job]++
}
func (r *recorder) PassStarted(job string, why Trigger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started[job]++
	r.triggers = append(r.triggers, why)
}
func (r *recorder) PassFinished(job string, _ Trigger, _ error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished[job]++
}
func (r *recorder) PassSkipped(job string, _ Trigger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skip[job]++
}

func everySecond(t *testing.T) Job {
	s, err := ParseSchedule("* * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	return Job{Name: "j", Schedule: s}
}

func TestCronFiresRepeatedly(t *testing.T) {
	var n atomic.Int32
	j := everySecond(t)
	j.Run = func(context.Context, Trigger) error { n.Add(1); return nil }
	rec := newRecorder()
	s := New(zaptest.NewLogger(t), rec)
	if err := s.Add(j); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got < 2 || got > 3 {
		t.Fatalf("ran %d passes in 2.5 s with a per-second schedule, want 2 or 3", got)
	}
	if rec.started["j"] != rec.finished["j"] {
		t.Fatalf("started %d, finished %d", rec.started["j"], rec.finished["j"])
	}
}

func TestNoOverlapAndGracefulStop(t *testing.T) {
	var active, maxActive, completed atomic.Int32
	j := everySecond(t)
	stopSeen := make(chan struct{})
	j.Run = func(ctx context.Context, _ Trigger) error {
		a := active.Add(1)
		defer active.Add(-1)
		for {
			m := maxActive.Load()
			if a <= m || maxActive.CompareAndSwap(m, a) {
				break
			}
		}
		// A long pass: outlives two firings, then on cancel "finishes the
		// rows in flight" for a moment before returning.
		select {
		case <-time.After(2200 * time.Millisecond):
		case <-ctx.Done():
			close(stopSeen)
			time.Sleep(300 * time.Millisecond)
		}
		completed.Add(1)
		return ctx.Err()
	}
	rec := newRecorder()
	s := New(zaptest.NewLogger(t), rec)
	if err := s.Add(j); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(3500 * time.Millisecond) // the first pass (from <=1 s) outlives the next two firings
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if active.Load() != 0 {
		t.Fatal("Run returned while a pass was still running")
	}
	if maxActive.Load() != 1 {
		t.Fatalf("%d passes of one job ran at once", maxActive.Load())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.skip["j"] < 1 {
		t.Fatalf("no firing was skipped while the pass was running (skips=%d)", rec.skip["j"])
	}
	if rec.started["j"] != rec.finished["j"] {
		t.Fatalf("started %d, finished %d", rec.started["j"], rec.finished["j"])
	}
}

func TestStopWaitsForPassInFlight(t *testing.T) {
	j := Job{Name: "p", Poll: time.Hour}
	entered := make(chan struct{})
	var finished atomic.Bool
	j.Run = func(ctx context.Context, why Trigger) error {
		if why != TriggerStart {
			t.Errorf("first poll trigger = %q, want %q", why, TriggerStart)
		}
		close(entered)
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // the rows in flight
		finished.Store(true)
		return nil
	}
	s := New(zaptest.NewLogger(t), nil)
	if err := s.Add(j); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-entered
	cancel()
	<-done
	if !finished.Load() {
		t.Fatal("Run returned before the pass in flight finished")
	}
}

func TestPollRunsAtStartAndEveryInterval(t *testing.T) {
	var n atomic.Int32
	s := New(zaptest.NewLogger(t), nil)
	err := s.Add(Job{Name: "p", Poll: 300 * time.Millisecond, Run: func(context.Context, Trigger) error {
		n.Add(1)
		return errors.New("source unreachable") // errors never stop the loop
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1000*time.Millisecond)
	defer cancel()
	_ = s.Run(ctx)
	if got := n.Load(); got < 3 || got > 5 {
		t.Fatalf("polled %d times in 1 s at 300 ms, want 3-5 (one at start)", got)
	}
}

func TestPanickingPassDoesNotStopTheJob(t *testing.T) {
	var n atomic.Int32
	s := New(zaptest.NewLogger(t), nil)
	_ = s.Add(Job{Name: "p", Poll: 200 * time.Millisecond, Run: func(context.Context, Trigger) error {
		n.Add(1)
		panic("boom")
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = s.Run(ctx)
	if n.Load() < 2 {
		t.Fatalf("job ran %d times; a panic must not stop it", n.Load())
	}
}

func TestAddRejects(t *testing.T) {
	s := New(nil, nil)
	run := func(context.Context, Trigger) error { return nil }
	if err := s.Add(Job{Run: run, Poll: time.Second}); err == nil {
		t.Error("accepted a job without a name")
	}
	if err := s.Add(Job{Name: "a", Run: run}); err == nil {
		t.Error("accepted a job with neither schedule nor poll")
	}
	if err := s.Add(Job{Name: "a", Poll: time.Second}); err == nil {
		t.Error("accepted a job without Run")
	}
	if err := s.Add(Job{Name: "a", Run: run, Poll: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Job{Name: "a", Run: run, Poll: time.Second}); err == nil {
		t.Error("accepted a duplicate name")
	}
	if err := New(nil, nil).Run(context.Background()); err == nil {
		t.Error("Run without jobs succeeded")
	}
}

// TestOverduePass: a pass that runs past its job's Expected time is
// reported once, shows as overdue in Running while it goes on, and is
// neither stopped nor reported again; a quick pass is never overdue.
func TestOverduePass(t *testing.T) {
	rec := newRecorder()
	s := New(zaptest.NewLogger(t), rec)
	release := make(chan struct{})
	slowRunning := make(chan struct{})
	var once sync.Once
	slow := Job{Name: "slow", Poll: time.Hour, Expected: 100 * time.Millisecond, Run: func(ctx context.Context, _ Trigger) error {
		once.Do(func() { close(slowRunning) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	quick := Job{Name: "quick", Poll: time.Hour, Expected: time.Minute, Run: func(context.Context, Trigger) error { return nil }}
	for _, j := range []Job{slow, quick} {
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	<-slowRunning
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		n := rec.overdue["slow"]
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a pass running past its expected time was not reported")
		}
		time.Sleep(20 * time.Millisecond)
	}
	running := s.Running()
	if len(running) != 1 || running[0].Job != "slow" || time.Since(running[0].Since) <= running[0].Expected {
		t.Fatalf("running: %+v", running)
	}
	time.Sleep(300 * time.Millisecond) // more time past the bound: still one report
	close(release)
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if rec.overdue["slow"] != 1 || rec.overdue["quick"] != 0 || rec.finished["slow"] != 1 {
		t.Fatalf("overdue %v, finished %v", rec.overdue, rec.finished)
	}
	if r := s.Running(); len(r) != 0 {
		t.Fatalf("still running after the stop: %+v", r)
	}
}
