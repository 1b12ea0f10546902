package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// defaultGrace is how long a process gets between SIGTERM and SIGKILL.
	defaultGrace = 5 * time.Second
	// logTailLines is how much of a process log a start error carries.
	logTailLines = 30
)

// spec says how to run one binary.
type spec struct {
	name string
	bin  string
	dir  string // working directory; also receives <name>.log
	args []string
	env  []string // added to a minimal environment
	// grace overrides defaultGrace.
	grace time.Duration
}

// process is one child started by the control plane. Its log file collects
// stdout and stderr, and it runs in its own process group so that a stop
// also reaches anything it forked.
type process struct {
	name    string
	grace   time.Duration
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once Wait has returned
	waitErr error         // valid after done is closed
	// stopping is set before we signal the process, so that whatever exit
	// status it then chooses is not reported as a crash.
	stopping atomic.Bool
}

// startProcess starts s.bin in a minimal environment (so a developer's ETCD_*
// or KUBECONFIG cannot leak in). The process is stopped when ctx ends.
func startProcess(ctx context.Context, s spec) (*process, error) {
	name, bin, args := s.name, s.bin, s.args
	logPath := filepath.Join(s.dir, name+".log")
	logFile, err := os.OpenFile(filepath.Clean(logPath), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	// A restart appends to the same log; mark where the new run begins.
	fmt.Fprintf(logFile, "--- %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(append([]string{bin}, args...), " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(baseEnv(), s.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, grace: s.grace, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if p.grace == 0 {
		p.grace = defaultGrace
	}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = p.stop()
		case <-p.done:
		}
	}()
	return p, nil
}

// baseEnv passes on only what a binary needs to run at all.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOMEMLIMIT", "GOGC"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after its grace, and
// waits until the process is reaped. Exiting because of our signal is not an
// error; having died before is.
func (p *process) stop() error {
	if p.exited() {
		return p.exitError()
	}
	p.stopping.Store(true)
	pgid := -p.pid()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	// The leader may be gone while a child it forked lingers in the group.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	return nil
}

// exitError describes an exit that we did not cause.
func (p *process) exitError() error {
	if p.waitErr == nil || p.stopping.Load() {
		return nil
	}
	return fmt.Errorf("%s exited on its own: %w\n%s", p.name, p.waitErr, p.logTail())
}

// logTail returns the last lines of the process log, for error messages.
func (p *process) logTail() string {
	data, err := os.ReadFile(filepath.Clean(p.logPath))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("last lines of %s:\n%s", p.logPath, bytes.Join(lines, []byte("\n")))
}

// waitReady calls ready every 100ms until it returns nil, the process exits,
// ctx ends or timeout passes. The error carries the log tail.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = ready(attemptCtx)
		attemptCancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%w): last check: %w\n%s", p.name, p.waitErr, lastErr, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (%w): last check: %w\n%s",
				p.name, time.Since(begin).Round(time.Millisecond), ctx.Err(), lastErr, p.logTail())
		case <-tick.C:
		}
	}
}

// stopAfter stops a process whose start failed and returns the start error,
// which already carries the log tail.
func stopAfter(err error, p *process) error {
	_ = p.stop()
	return err
}
