// Package scheduler runs the worker's passes in `serve`: each source on its
// cron schedule and/or poll interval, never two passes of one source at
// once, and a graceful stop that waits for the passes in flight.
//
// It knows nothing about sources or files: a Job is a name, when to run and
// a function. The pipeline owns what "finish the rows in flight" means; the
// scheduler only cancels the pass's context and waits for it to return.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
)

// Trigger says why a pass started.
type Trigger string

const (
	// TriggerStart is the pass a poll job runs as soon as serve starts.
	TriggerStart Trigger = "start"
	// TriggerSchedule is a cron schedule firing.
	TriggerSchedule Trigger = "schedule"
	// TriggerPoll is a poll interval elapsing.
	TriggerPoll Trigger = "poll"
)

// Job is one thing to run repeatedly. At least one of Schedule and Poll
// must be set; with both, the job runs whenever either fires.
type Job struct {
	Name     string
	Schedule cron.Schedule // nil: no cron schedule
	Poll     time.Duration // 0: no polling; otherwise also once at start
	// Run performs one pass. Its context is cancelled when the scheduler
	// stops; Run should then finish the work in flight and return.
	Run func(ctx context.Context, why Trigger) error
	// Expected is how long a pass should take at most (0: no bound). A
	// pass still running after it is reported overdue, once, and left to
	// run: stopping it would leave its file to resume, not finish sooner.
	Expected time.Duration
}

// Pass is a pass in flight.
type Pass struct {
	Job      string
	Since    time.Time
	Expected time.Duration // the job's; 0: no bound
}

// Observer is told about every pass, for metrics. Methods are called from
// the job's goroutines and must be safe for concurrent use.
type Observer interface {
	PassStarted(job string, why Trigger)
	PassFinished(job string, why Trigger, err error, took time.Duration)
	// PassSkipped: the job fired while its previous pass was still running.
	PassSkipped(job string, why Trigger)
	// PassOverdue: the pass has been running for longer than the job's
	// Expected time; PassFinished follows when it ends.
	PassOverdue(job string, why Trigger, running time.Duration)
}

// Scheduler runs Jobs until its context is cancelled. Build it with New,
// Add the jobs, then call Run once.
type Scheduler struct {
	log  *zap.Logger
	obs  Observer
	jobs []Job

	mu      sync.Mutex
	running map[string]Pass // by job: a job in it is not fired again
}

// New returns an empty scheduler. obs may be nil.
func New(log *zap.Logger, obs Observer) *Scheduler {
	if log == nil {
		log = zap.NewNop()
	}
	return &Scheduler{log: log, obs: obs, running: map[string]Pass{}}
}

// Running lists the passes in flight, by job name. It is safe to call
// from any goroutine (the dashboard does, while passes run).
func (s *Scheduler) Running() []Pass {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Pass, 0, len(s.running))
	for _, p := range s.running {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Pass) int { return strings.Compare(a.Job, b.Job) })
	return out
}

// Add registers a job. Names must be unique.
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" {
		return errors.New("scheduler: job without a name")
	}
	if j.Run == nil {
		return fmt.Errorf("scheduler: job %q has no Run function", j.Name)
	}
	if j.Schedule == nil && j.Poll <= 0 {
		return fmt.Errorf("scheduler: job %q has neither a schedule nor a poll interval", j.Name)
	}
	for _, o := range s.jobs {
		if o.Name == j.Name {
			return fmt.Errorf("scheduler: duplicate job %q", j.Name)
		}
	}
	s.jobs = append(s.jobs, j)
	return nil
}

// Run schedules every job until ctx is done, then stops firing, waits for
// the passes still running (whose context is ctx, so they see the cancel)
// and returns. It returns nil after a stop; pass errors are logged and
// reported to the Observer, never fatal, since the next pass may succeed.
func (s *Scheduler) Run(ctx context.Context) error {
	if len(s.jobs) == 0 {
		return errors.New("scheduler: no jobs")
	}
	var wg sync.WaitGroup
	for _, j := range s.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, j)
		}()
	}
	wg.Wait()
	return nil
}

// loop fires one job. Passes run in their own goroutine so that the loop
// keeps its timing and can see (and skip) a firing that would overlap.
func (s *Scheduler) loop(ctx context.Context, j Job) {
	log := s.log.With(zap.String("source", j.Name))
	var passes sync.WaitGroup
	defer passes.Wait()

	fire := func(why Trigger) {
		s.mu.Lock()
		if _, busy := s.running[j.Name]; busy {
			s.mu.Unlock()
			log.Info("pass skipped: the previous pass is still running", zap.String("trigger", string(why)))
			if s.obs != nil {
				s.obs.PassSkipped(j.Name, why)
			}
			return
		}
		start := time.Now()
		s.running[j.Name] = Pass{Job: j.Name, Since: start, Expected: j.Expected}
		s.mu.Unlock()
		passes.Add(1)
		go func() {
			defer passes.Done()
			defer func() {
				s.mu.Lock()
				delete(s.running, j.Name)
				s.mu.Unlock()
			}()
			s.runPass(ctx, log, j, why, start)
		}()
	}

	now := time.Now()
	var nextCron, nextPoll time.Time
	if j.Schedule != nil {
		nextCron = j.Schedule.Next(now)
	}
	if j.Poll > 0 {
		fire(TriggerStart)
		nextPoll = now.Add(j.Poll)
	}
	// Since Go 1.23 a stopped timer holds no stale tick, so Reset is safe.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		due, why := earliest(nextCron, nextPoll)
		if due.IsZero() {
			// A cron schedule that stopped firing and no poll: nothing
			// left to do but wait for the stop.
			<-ctx.Done()
			return
		}
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return
		}
		fire(why)
		now := time.Now()
		if why == TriggerSchedule {
			nextCron = j.Schedule.Next(now)
		} else {
			// Fixed rate, but never a burst of catch-up firings after a
			// stall (a suspended laptop, a long GC): skip missed ticks.
			for !nextPoll.After(now) {
				nextPoll = nextPoll.Add(j.Poll)
			}
		}
	}
}

// earliest picks the next firing; a zero time means "not set".
func earliest(cronAt, pollAt time.Time) (time.Time, Trigger) {
	switch {
	case cronAt.IsZero():
		return pollAt, TriggerPoll
	case pollAt.IsZero():
		return cronAt, TriggerSchedule
	case pollAt.Before(cronAt):
		return pollAt, TriggerPoll
	default:
		return cronAt, TriggerSchedule
	}
}

// runPass runs one pass of j, which fire marked running at start.
func (s *Scheduler) runPass(ctx context.Context, log *zap.Logger, j Job, why Trigger, start time.Time) {
	if s.obs != nil {
		s.obs.PassStarted(j.Name, why)
	}
	done := make(chan struct{})
	var watch sync.WaitGroup
	if j.Expected > 0 {
		watch.Go(func() {
			t := time.NewTimer(j.Expected)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				log.Warn("pass running past its expected time; it goes on", zap.String("trigger", string(why)),
					zap.Duration("running", time.Since(start).Round(time.Second)), zap.Duration("expected", j.Expected))
				if s.obs != nil {
					s.obs.PassOverdue(j.Name, why, time.Since(start))
				}
			}
		})
	}
	err := func() (err error) {
		// A panicking pass must not take the whole server down with it,
		// nor leave the job marked as running forever.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("pass panicked: %v", r)
			}
		}()
		return j.Run(ctx, why)
	}()
	close(done)
	watch.Wait()
	took := time.Since(start)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		log.Error("pass failed", zap.String("trigger", string(why)), zap.Duration("took", took), zap.Error(err))
	} else {
		log.Debug("pass finished", zap.String("trigger", string(why)), zap.Duration("took", took))
	}
	if s.obs != nil {
		s.obs.PassFinished(j.Name, why, err, took)
	}
}
