// Command ihr-worker moves ERP result files into Coupa Integration History
// Records. Everything but signal wiring lives in internal/workercli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ihr-tools/ihr/internal/gcdefault"
	"github.com/ihr-tools/ihr/internal/workercli"
)

func main() {
	gcdefault.Apply()
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
