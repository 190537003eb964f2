// Command ihr-worker moves ERP result files into Coupa Integration History
// Records. Everything but signal wiring lives in internal/workercli.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ihr-tools/ihr/internal/workercli"
)

func main() {
	// The worker's live heap is a few MiB, so at Go's default (GOGC=100)
	// it collects every 150 rows or so; at 400 it collects a quarter as
	// often, for about 10 MiB more RSS (BENCHMARKS.md, "At the ceiling").
	// GOGC in the environment still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful stop, a second one
		// kills the process the default way.
		<-ctx.Done()
		stop()
	}()
	code := workercli.Main(ctx, os.Args[1:], workercli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
