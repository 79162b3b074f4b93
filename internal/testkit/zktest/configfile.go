package zktest

// WithDataDirPattern puts each server's dataDir at pattern with "{id}"
// replaced by its myid (default: a directory under t.TempDir()), so a
// generated zoo.cfg can name the destination's data directories before the
// servers exist (mitosis plan --destination-data-dir). The caller owns
// removing them.
func WithDataDirPattern(pattern string) Option {
	return func(o *options) { o.dataDirPattern = pattern }
}

// ConfigFile returns the zoo.cfg the server's next start writes: the
// generated one, or the one given to UseConfigFile.
func (s *Server) ConfigFile() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfgFile != nil {
		return append([]byte(nil), s.cfgFile...)
	}
	return []byte(s.config())
}

// UseConfigFile makes the next starts write cfg as the server's zoo.cfg
// verbatim (a file from mitosis plan) instead of the generated one. It does
// not restart the server. The file's dataDir must hold this server's myid:
// keep its data directory (WithDataDirPattern) where the file says.
func (s *Server) UseConfigFile(cfg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfgFile = append([]byte(nil), cfg...)
}
