package zktest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// Process is a client program run as a child and driven over its standard
// streams: lines go to its stdin, every line it prints is handed to a
// callback, and the tail of its stderr (where the clients log) is kept for
// failure messages. The Java client driver (JavaClient), the Java Kafka-like
// workload and the idle clients in Java, C and kazoo (package kafkaload) all
// run this way.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	exited chan struct{}
	err    error // the exit status; written before exited is closed
}

// processStderrTail is how much of a program's stderr a Process keeps.
const processStderrTail = 64 << 10

// StartProcess starts cmd (from JavaProgram, CProgram or PythonCommand; its
// Stdin, Stdout and Stderr unset) and reads its stdout line by line on one
// goroutine, handing each line to onLine in order until the program exits;
// a line longer than 4 MiB ends the reading. The last 64 KiB of stderr are
// kept for Stderr and, when alsoStderr is not nil, copied to it as they
// come. The caller ends the program with Kill or Close.
func StartProcess(cmd *exec.Cmd, onLine func(line string), alsoStderr io.Writer) (*Process, error) {
	p := &Process{cmd: cmd, stderr: &tailBuffer{max: processStderrTail, also: alsoStderr}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go p.readOutput(stdout, onLine)
	return p, nil
}

// readOutput hands stdout to onLine, then reaps the program (Wait must
// follow the last read from the pipe).
func (p *Process) readOutput(stdout io.Reader, onLine func(string)) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		onLine(sc.Text())
	}
	if err := sc.Err(); err != nil {
		// Drain, so that the program is not stuck writing to a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

// Send writes line and a newline to the program's stdin.
func (p *Process) Send(line string) error {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		return fmt.Errorf("send %q: %w", line, err)
	}
	return nil
}

// Exited is closed once the program has exited and its output has been
// handed to onLine.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the program's exit status (nil for exit code 0); only meaningful
// once Exited is closed.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Stderr returns the last 64 KiB the program wrote to stderr.
func (p *Process) Stderr() string { return p.stderr.String() }

// PID is the program's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Kill kills the program (harmless after it exited) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Close closes the program's stdin, which tells the programs here to end,
// waits up to grace for it to exit, and then kills it.
func (p *Process) Close(grace time.Duration) {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.Kill()
	}
}

// exitStderr is the stderr exec.Cmd.Output kept (its first and last bytes)
// when err is the program's non-zero exit.
func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it, and copies every write
// to also when set. Safe for one writer and concurrent readers.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	also io.Writer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = slices.Clone(b.buf[len(b.buf)-b.max:])
	}
	if b.also != nil {
		_, _ = b.also.Write(p)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
