package zktest

// QuietLogger discards a ZooKeeper client library's log lines (go-zookeeper's
// zk.WithLogger): tests that expect reconnects would otherwise flood the
// output with them.
type QuietLogger struct{}

// Printf discards the line.
func (QuietLogger) Printf(string, ...any) {}
