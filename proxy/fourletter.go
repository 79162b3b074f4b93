package proxy

import (
	"context"
	"io"
	"time"
)

// fourLetterAnswerLimit bounds a relayed four-letter answer (`dump` or
// `cons` on a busy member can be large).
const fourLetterAnswerLimit = 4 << 20

// answerFourLetterWord answers a four-letter word sent on the client port.
//
// `ruok` is answered by the proxy ("imok"): it asks whether the process
// behind this port is alive, and a member answers imok even when it is not
// serving (FourLetterCommands / RuokCommand), so relaying it would only add
// a dependency on some member being reachable.
//
// Every other word is relayed to one member of the target ensemble and its
// answer copied back. Those words (srvr, stat, mntr, cons, conf, ...)
// describe a ZooKeeper server — zxid, mode, node count — which the proxy
// does not have; monitoring and operators that probe the client port get
// the truthful answer of a server the proxy would send them to, and the
// member's own 4lw.commands.whitelist still decides what is allowed, so the
// proxy never exposes a command the operator disabled. As on a server, the
// connection is closed after the answer.
func (s *Session) answerFourLetterWord(cmd string, deadline time.Time) {
	s.srv.m.fourLetterWords.WithLabelValues(fourLetterLabel(cmd)).Inc()
	switch cmd {
	case "ruok":
		io.WriteString(s.client, "imok")
		return
	case "telnet close":
		return
	}
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	for _, member := range s.srv.members.order(s.srv.Target()) {
		out, err := s.srv.fourLetter(ctx, member, cmd, fourLetterAnswerLimit)
		if err != nil && len(out) == 0 {
			s.log.Debug("four-letter word relay failed", "command", cmd, "member", member, "err", err)
			continue
		}
		s.client.Write(out)
		return
	}
}
