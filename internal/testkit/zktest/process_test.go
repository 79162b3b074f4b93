package zktest

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProcess drives a shell program the way the client drivers drive
// theirs: a line in, lines out in order, stderr kept, the exit status
// reported once the output is all read.
func TestProcess(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	prog := `read cmd; echo "got $cmd"; echo second; echo "client log" >&2; exit 3`
	p, err := StartProcess(exec.Command("sh", "-c", prog), func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send("GO"); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	mu.Lock()
	got := slices.Clone(lines)
	mu.Unlock()
	if want := []string{"got GO", "second"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit status %v, want exit code 3", p.Err())
	}
	if p.Stderr() != "client log\n" {
		t.Errorf("stderr %q", p.Stderr())
	}
	p.Kill() // harmless after the exit
}

// TestProcessCloseKillsAProgramThatIgnoresStdin: Close ends a program that
// does not exit when its stdin closes.
func TestProcessCloseKillsAProgramThatIgnoresStdin(t *testing.T) {
	p, err := StartProcess(exec.Command("sh", "-c", "exec sleep 600"), func(string) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Close(10 * time.Millisecond)
	select {
	case <-p.Exited():
	default:
		t.Fatal("Close returned before the program exited")
	}
	if p.Err() == nil {
		t.Error("a killed program reported a clean exit")
	}
}

func TestTailBufferKeepsTheTail(t *testing.T) {
	var also strings.Builder
	b := &tailBuffer{max: 8, also: &also}
	b.Write([]byte("0123456"))
	b.Write([]byte("789abc"))
	if b.String() != "56789abc" {
		t.Errorf("tail %q, want the last 8 bytes", b.String())
	}
	if also.String() != "0123456789abc" {
		t.Errorf("copy %q, want every byte", also.String())
	}
}
