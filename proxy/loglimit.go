package proxy

import (
	"sync"
	"time"
)

// logLimiter lets through at most one line per interval for each kind of
// repeated warning, and counts the lines it held back so the next line
// that passes can say how many there were. An overloaded proxy otherwise
// logs once per rejected connection: 808 retrying clients wrote 39,274
// lines in 90 s. Kinds come from the code and the configuration (a member
// address at most), so the map stays small.
type logLimiter struct {
	interval time.Duration

	mu    sync.Mutex
	now   func() time.Time // time.Now; tests inject a clock
	kinds map[string]*limitedKind
}

type limitedKind struct {
	last       time.Time // when a line of this kind last passed
	suppressed int       // lines held back since then
}

// newLogLimiter returns a limiter letting one line per interval through
// for each kind.
func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, now: time.Now, kinds: map[string]*limitedKind{}}
}

// allow reports whether a line of kind may be logged now and, when it may,
// how many lines of that kind were held back since the last one passed.
func (l *logLimiter) allow(kind string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := l.kinds[kind]
	if k == nil {
		l.kinds[kind] = &limitedKind{last: now}
		return true, 0
	}
	if now.Sub(k.last) < l.interval {
		k.suppressed++
		return false, 0
	}
	suppressed = k.suppressed
	k.last, k.suppressed = now, 0
	return true, suppressed
}

// repeatedWarningInterval is how often a warning that can repeat once per
// connection (a rejected client, a refusing member, a failed accept) is
// logged at most; zkproxy_connections_rejected_total and the other
// counters still count every occurrence.
const repeatedWarningInterval = 10 * time.Second

// warnRepeated logs a warning of kind unless one of that kind was logged
// within repeatedWarningInterval; the line that passes says how many were
// suppressed before it.
func (s *Server) warnRepeated(kind, msg string, args ...any) {
	ok, suppressed := s.warnings.allow(kind)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	s.log.Warn(msg, args...)
}
