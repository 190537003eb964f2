// Package launch builds the project's commands and runs ihr-api as a
// child process: build, pick a free loopback port, wait until the API
// answers, stop it. The test harness (internal/binharness) and the demo
// (cmd/ihr-demo) share it, so the two cannot drift apart.
package launch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Module is the import path of this module's commands' parent.
const Module = "github.com/ihr-tools/ihr"

// Build compiles cmd/name into the file out with `go build`, run in dir
// (a folder of this module; "" is the working directory). The compiler's
// output goes to output.
func Build(ctx context.Context, dir, name, out string, output io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, Module+"/cmd/"+name)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/%s: %w", name, err)
	}
	return nil
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitAPI polls the records index of the API at baseURL with key until it
// answers 200, the process ends (exited is closed), ctx ends or timeout
// passes.
func WaitAPI(ctx context.Context, baseURL, key string, exited <-chan struct{}, timeout time.Duration) error {
	return WaitAPIWith(ctx, &http.Client{Timeout: 2 * time.Second}, baseURL, key, exited, timeout)
}

// WaitAPIWith is WaitAPI through hc (e.g. one trusting an ihr-api's own
// CA); hc should have a timeout.
func WaitAPIWith(ctx context.Context, hc *http.Client, baseURL, key string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/api/integration_history_records?limit=1", nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-COUPA-API-KEY", key)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-exited:
			return fmt.Errorf("ihr-api exited before it answered (last try: %v)", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ihr-api did not answer within %s: %v", timeout, err)
		}
	}
}

// Stop asks the process to end (SIGTERM), waits up to grace for done to
// close, then kills it and waits. A process that already ended is left
// alone.
func Stop(p *os.Process, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}
