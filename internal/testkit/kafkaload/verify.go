package kafkaload

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// The serial layout every workload (Go and Java) writes, so one verifier
// reads them all back:
//
//	<root>/serial/<writer>/<bucket>/s<serial>-<sequence>
//
// serial counts from 1 and is zero-padded to 9 digits; bucket is
// (serial-1)/size (DefaultBucketSize unless configured), 4 digits; <sequence> is the server's 10-digit
// sequence suffix (CreateMode.PERSISTENT_SEQUENTIAL), which orders the
// creates under one bucket as the leader applied them (the parent's cversion,
// PrepRequestProcessor.pRequest2TxnCreate). Buckets keep a getChildren reply
// small (the Java client refuses replies above jute.maxbuffer,
// ClientCnxnSocket.readLength).
const DefaultBucketSize = 5000

// BucketPath is the parent of serial's node with buckets of size serials.
func BucketPath(root, writer string, serial, size int) string {
	return fmt.Sprintf("%s/serial/%s/%04d", root, writer, (serial-1)/size)
}

// SerialPrefix is the path a writer creates, sequentially, for serial.
func SerialPrefix(root, writer string, serial, size int) string {
	return fmt.Sprintf("%s/s%09d-", BucketPath(root, writer, serial, size), serial)
}

// Ledger is what a workload's clients were told by ZooKeeper: the input of
// CheckLedger.
type Ledger struct {
	// Root is the path the workload's tree lives under, as seen without a
	// chroot.
	Root string
	// Acked maps each writer to its highest acknowledged serial; writers
	// write serials 1..n one after another, so 1..Acked were all
	// acknowledged.
	Acked map[string]int
	// Uncertain maps each writer to the serials whose create got an error
	// whose outcome is unknown (connection loss) and was retried: the only
	// serials that may legitimately appear twice, as with Kafka's
	// retryRequestsUntilConnected.
	Uncertain map[string]map[int]bool
	// Consumed maps each writer to the serials consumers read through
	// zkproxy. Each must still exist at read-back (a read that vanished is
	// a write the cluster showed and then lost), and they must form a prefix
	// 1..n: ZooKeeper's ordering never shows serial n+1 without n.
	Consumed map[string]map[int]bool
	// Owners maps ephemeral paths (under Root) to the session that must
	// still own them.
	Owners map[string]int64
}

// Verification is the read-back of every acknowledged write.
type Verification struct {
	Acked, Found, Lost int
	// Duplicates counts serials present more than once; Unexplained those
	// among them that no error ever made uncertain.
	Duplicates, UnexplainedDuplicates int
	// OutOfOrder counts serials applied before a lower serial of the same
	// writer.
	OutOfOrder int
	// Unexpected counts nodes that should not exist: serials beyond the one
	// in flight when the writer stopped, and unparsable names.
	Unexpected int
	// Consumed counts serials consumers read; Phantom those among them
	// missing at read-back; ConsumerGaps serials below the highest one read
	// that no consumer read.
	Consumed, Phantom, ConsumerGaps int
	// OwnersIntact: every ephemeral of Ledger.Owners exists and is owned by
	// its session.
	OwnersIntact bool
	Problems     []string
}

// OK reports whether nothing acknowledged was lost, duplicated without
// cause, or reordered, and the ephemerals kept their owners.
func (v Verification) OK() bool {
	return v.Acked > 0 && v.Lost == 0 && v.UnexplainedDuplicates == 0 && v.OutOfOrder == 0 &&
		v.Unexpected == 0 && v.Phantom == 0 && v.ConsumerGaps == 0 && v.OwnersIntact
}

func (v Verification) String() string {
	return fmt.Sprintf("acked %d, found %d, lost %d, duplicates %d (unexplained %d), out of order %d, unexpected %d, consumed %d (phantom %d, gaps %d), ephemeral owners intact %t",
		v.Acked, v.Found, v.Lost, v.Duplicates, v.UnexplainedDuplicates, v.OutOfOrder, v.Unexpected,
		v.Consumed, v.Phantom, v.ConsumerGaps, v.OwnersIntact)
}

func (v *Verification) problem(format string, args ...any) {
	if len(v.Problems) < 30 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// serialNode is one child of a bucket.
type serialNode struct {
	serial int
	seq    int64
}

func parseSerialNode(name string) (serialNode, bool) {
	s, seq, ok := strings.Cut(strings.TrimPrefix(name, "s"), "-")
	if !ok || !strings.HasPrefix(name, "s") {
		return serialNode{}, false
	}
	serial, err1 := strconv.Atoi(s)
	n, err2 := strconv.ParseInt(seq, 10, 64)
	if err1 != nil || err2 != nil || serial < 1 {
		return serialNode{}, false
	}
	return serialNode{serial: serial, seq: n}, true
}

// CheckLedger reads the tree back from addr (typically a destination member,
// directly, not through zkproxy) and checks l against it: every acknowledged
// serial is there, once unless it was retried, in the order written, nothing
// beyond the serial in flight at the end, and every ephemeral has its owner.
func CheckLedger(ctx context.Context, addr string, l Ledger) (Verification, error) {
	s, err := dial(ctx, "verifier", addr, 10*time.Second)
	if err != nil {
		return Verification{}, err
	}
	defer s.conn.Close()
	v := Verification{OwnersIntact: true}
	writers := make([]string, 0, len(l.Acked))
	for w := range l.Acked {
		writers = append(writers, w)
	}
	sort.Strings(writers)
	for _, w := range writers {
		if err := checkWriter(s.conn, l, w, &v); err != nil {
			return v, err
		}
	}
	paths := make([]string, 0, len(l.Owners))
	for p := range l.Owners {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		_, stat, err := s.conn.Get(l.Root + p)
		if err != nil {
			v.OwnersIntact = false
			v.problem("%s%s: %v", l.Root, p, err)
			continue
		}
		if stat.EphemeralOwner != l.Owners[p] {
			v.OwnersIntact = false
			v.problem("%s%s owned by 0x%x, want session 0x%x", l.Root, p, stat.EphemeralOwner, l.Owners[p])
		}
	}
	return v, nil
}

// checkWriter reads one writer's buckets in order and walks its serials in
// the order the leader applied them.
func checkWriter(c *zk.Conn, l Ledger, w string, v *Verification) error {
	last := l.Acked[w]
	v.Acked += last
	parent := l.Root + "/serial/" + w
	buckets, _, err := c.Children(parent)
	if err != nil {
		if err == zk.ErrNoNode && last == 0 {
			return nil
		}
		return fmt.Errorf("listing %s: %w", parent, err)
	}
	slices.Sort(buckets) // zero-padded: lexical order is numeric order
	count := map[int]int{}
	prev := 0
	for _, b := range buckets {
		children, _, err := c.Children(parent + "/" + b)
		if err != nil {
			return fmt.Errorf("listing %s/%s: %w", parent, b, err)
		}
		nodes := make([]serialNode, 0, len(children))
		for _, name := range children {
			n, ok := parseSerialNode(name)
			if !ok {
				v.Unexpected++
				v.problem("unparsable serial node %s/%s/%s", parent, b, name)
				continue
			}
			nodes = append(nodes, n)
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].seq < nodes[j].seq })
		for _, n := range nodes {
			count[n.serial]++
			if n.serial < prev {
				v.OutOfOrder++
				v.problem("%s: serial %d applied after serial %d", w, n.serial, prev)
			}
			prev = max(prev, n.serial)
		}
	}
	consumed := l.Consumed[w]
	highest := 0
	for serial := range consumed {
		v.Consumed++
		highest = max(highest, serial)
		if count[serial] == 0 {
			v.Phantom++
			v.problem("%s: serial %d was read by a consumer but is gone", w, serial)
		}
	}
	for serial := 1; serial < highest; serial++ {
		if !consumed[serial] {
			v.ConsumerGaps++
			v.problem("%s: consumers read serial %d but never %d", w, highest, serial)
		}
	}
	for serial := 1; serial <= last; serial++ {
		if count[serial] == 0 {
			v.Lost++
			v.problem("lost acknowledged write %s serial %d", w, serial)
		}
	}
	for serial, n := range count {
		if serial <= last {
			v.Found++
		}
		if serial > last+1 {
			// Only the write in flight when the writer stopped may exist
			// beyond the last acknowledgement.
			v.Unexpected += n
			v.problem("%s: serial %d exists beyond the last acknowledged %d", w, serial, last)
			continue
		}
		if n > 1 {
			v.Duplicates += n - 1
			if !l.Uncertain[w][serial] {
				v.UnexplainedDuplicates += n - 1
				v.problem("%s: serial %d written %d times without an error that made it uncertain", w, serial, n)
			}
		}
	}
	return nil
}

func cloneLedgerMaps(acked map[string]int, uncertain map[string]map[int]bool) (map[string]int, map[string]map[int]bool) {
	a := make(map[string]int, len(acked))
	for k, n := range acked {
		a[k] = n
	}
	u := make(map[string]map[int]bool, len(uncertain))
	for k, m := range uncertain {
		c := make(map[int]bool, len(m))
		for s := range m {
			c[s] = true
		}
		u[k] = c
	}
	return a, u
}
