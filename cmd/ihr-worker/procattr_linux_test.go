package main_test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes a child process die with the test binary, so a test
// killed by its timeout leaves no server behind.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
