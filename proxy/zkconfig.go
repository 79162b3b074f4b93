package proxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/zkproxy/zkproxy/jute"
)

// What clients learn about the ensemble's membership.
//
// ZooKeeper 3.5+ publishes its membership in the /zookeeper/config znode
// (ZooDefs.CONFIG_NODE): "server.<id>=<host>:<quorum>:<election>:<role>;
// <clientHost>:<clientPort>" lines and a "version=<hex>" line
// (QuorumVerifier.toString). Apache Curator's EnsembleTracker reads it at
// start and at every change and replaces the client's connection string with
// the members' client addresses, so the client's next reconnect would bypass
// the proxy. The proxy therefore rewrites every reply carrying that data —
// getData of the node (the Java client's ZooKeeper.getConfig is a getData of
// the node, sent without the chroot prefix: the server knows no chroots and
// getConfig does not call prependChroot), each such getData inside a
// multiRead, and a reconfig's reply when reconfig is allowed — into a config
// naming the proxies (Config.Advertise), and keeps the version line, so
// change detection still works. A chrooted client's getData("/zookeeper/config")
// asks for "<chroot>/zookeeper/config", another znode, which is left alone.

// configNode is the znode ZooKeeper publishes its membership in.
const configNode = "/zookeeper/config"

// placeholderQuorumPorts stand in for the quorum and election ports in the
// rewritten server lines. Clients use only the client address, but the
// line must parse as a QuorumServer (QuorumMaj(Properties), which Curator
// calls), which requires two distinct ports; ZooKeeper's documented ports
// say "placeholder" to a human reader better than anything invented.
const placeholderQuorumPorts = "2888:3888"

// configReply says how the reply to a request must be changed before the
// client sees it. Nil (on pendingRequest) means not at all.
type configReply struct {
	// refuseReconfig: the client sent reconfig, the member got a harmless
	// stand-in (refusedReconfigStandIn) so the refusal keeps its place in
	// the reply order, and the client gets ReconfigDisabled.
	refuseReconfig bool
	// data: the reply body is a GetDataResponse holding the config (a
	// getData of configNode, or an allowed reconfig's new config).
	data bool
	// multiOps are the indices of the multiRead results answering a
	// getData of configNode.
	multiOps []int
}

// configRequest decides, from a client request, what its reply needs
// (nil: nothing) and whether the request itself must be replaced before it
// is forwarded (standIn non-nil). rewrite is Config.RewriteConfig's
// effective value, allowReconfig Config.AllowReconfig.
func configRequest(op jute.Op, xid jute.Xid, body []byte, rewrite, allowReconfig bool) (cr *configReply, standIn []byte) {
	switch op {
	case jute.OpReconfig:
		if !allowReconfig {
			return &configReply{refuseReconfig: true}, refusedReconfigStandIn(xid)
		}
		if rewrite {
			return &configReply{data: true}, nil
		}
	case jute.OpGetData:
		if !rewrite {
			return nil, nil
		}
		if path, _, _, err := peekPathRequest(body, false); err == nil && string(path) == configNode {
			return &configReply{data: true}, nil
		}
	case jute.OpMultiRead:
		// Only a multiRead naming the node is decoded; the others are
		// forwarded on their header alone, like every other request.
		if !rewrite || !bytes.Contains(body, []byte(configNode)) {
			return nil, nil
		}
		var req jute.MultiRequest
		if err := jute.Unmarshal(body, &req); err != nil {
			return nil, nil // the member judges it
		}
		var ops []int
		for i, op := range req.Ops {
			if g, ok := op.Request.(*jute.GetDataRequest); ok && op.Header.Type == jute.OpGetData && g.Path == configNode {
				ops = append(ops, i)
			}
		}
		if ops != nil {
			return &configReply{multiOps: ops}, nil
		}
	}
	return nil, nil
}

// refusedReconfigStandIn is what the member gets in place of a refused
// reconfig: exists("/") without a watch under the client's xid. A member
// answers a session's requests in order (FinalRequestProcessor), and the
// Java client drops the connection on a reply out of order (ClientCnxn
// "Xid out of order"), so the refusal must not overtake replies still due;
// the stand-in's reply marks its place and is replaced by the refusal.
func refusedReconfigStandIn(xid jute.Xid) []byte {
	return appendRequestFrame(nil, jute.RequestHeader{Xid: xid, Op: jute.OpExists}, &jute.ExistsRequest{Path: "/"})
}

// rewriteConfigReply returns the reply payload (header included) the client
// sees in place of payload, a member's reply to a request cr describes.
// Replies with an error pass unchanged (the same slice), except a refused
// reconfig's.
func rewriteConfigReply(cr *configReply, payload []byte, advertise []string) ([]byte, error) {
	var h jute.ReplyHeader
	if err := jute.Unmarshal(payload[:jute.ReplyHeaderSize], &h); err != nil {
		return nil, err
	}
	body := payload[jute.ReplyHeaderSize:]
	switch {
	case cr.refuseReconfig:
		// What a member with reconfigEnabled=false answers
		// (PrepRequestProcessor: ReconfigDisabledException), so clients
		// show "Reconfig is disabled" as for any such ensemble.
		h.Err = jute.ErrReconfigDisabled
		return jute.AppendRecord(nil, &h), nil
	case h.Err != jute.ErrOK:
		return payload, nil
	case cr.data:
		var r jute.GetDataResponse
		if err := jute.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("decoding the %s reply: %w", configNode, err)
		}
		rewriteGetData(&r, advertise)
		return jute.AppendRecord(jute.AppendRecord(nil, &h), &r), nil
	case cr.multiOps != nil:
		var r jute.MultiResponse
		if err := jute.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("decoding the multiRead reply naming %s: %w", configNode, err)
		}
		for _, i := range cr.multiOps {
			if i < len(r.Results) {
				if g, ok := r.Results[i].Response.(*jute.GetDataResponse); ok {
					rewriteGetData(g, advertise)
				}
			}
		}
		return jute.AppendRecord(jute.AppendRecord(nil, &h), &r), nil
	}
	return payload, nil
}

// rewriteGetData replaces the config in r and keeps its Stat consistent.
func rewriteGetData(r *jute.GetDataResponse, advertise []string) {
	r.Data = rewriteConfigData(r.Data, advertise)
	r.Stat.DataLength = int32(len(r.Data))
}

// rewriteConfigData returns the config (QuorumVerifier.toString format) with
// its membership replaced by advertise: one participant line per proxy
// address, ids from 1, then the original version line. Group and weight
// lines (hierarchical quorums) name member ids and go too. Data without
// any server line (a standalone server, no dynamic config) is returned as
// it is: there is no membership to hide, and Curator ignores it.
func rewriteConfigData(data []byte, advertise []string) []byte {
	var version string
	hasServers := false
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch {
		case strings.HasPrefix(k, "server."):
			hasServers = true
		case k == "version":
			version = v
		}
	}
	if !hasServers {
		return data
	}
	var b strings.Builder
	writeServerLines(&b, advertise)
	if version != "" {
		fmt.Fprintf(&b, "version=%s\n", version)
	}
	return []byte(b.String())
}

// writeServerLines writes one server line per advertised address, in the
// form QuorumServer parses: host:quorum:election:participant;host:port.
func writeServerLines(b *strings.Builder, advertise []string) {
	for i, addr := range advertise {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			continue // Validate refused it; never reached
		}
		h := host
		if strings.Contains(host, ":") {
			h = "[" + host + "]"
		}
		fmt.Fprintf(b, "server.%d=%s:%s:participant;%s\n", i+1, h, placeholderQuorumPorts, net.JoinHostPort(host, port))
	}
}

// confKeptKeys are the conf lines the proxy's own conf answer keeps from a
// member's: what a client's behaviour depends on (the tick and the session
// timeout bounds the server clamps to), nothing about the host (dataDir,
// dataLogDir, addresses, ports, server id).
var confKeptKeys = []string{"tickTime", "minSessionTimeout", "maxSessionTimeout"}

// rewriteConfAnswer returns the proxy's conf answer made from a member's
// (ConfCommand: ZKConfig and QuorumPeerConfig printed as key=value, then
// "membership:" and the dynamic config): the proxy's client port, the kept
// settings, and the membership rewritten as in rewriteConfigData. member
// may be empty (no member answered): the answer then holds what the proxy
// knows by itself.
func rewriteConfAnswer(member string, advertise []string) string {
	settings := map[string]string{}
	var version string
	for _, line := range strings.Split(member, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if k == "version" {
			version = v
		}
		settings[k] = v
	}
	var b strings.Builder
	if len(advertise) > 0 {
		if _, port, err := net.SplitHostPort(advertise[0]); err == nil {
			fmt.Fprintf(&b, "clientPort=%s\n", port)
		}
	}
	for _, k := range confKeptKeys {
		if v, ok := settings[k]; ok {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	b.WriteString("membership: \n")
	writeServerLines(&b, advertise)
	if version != "" {
		fmt.Fprintf(&b, "version=%s\n", version)
	}
	return b.String()
}

// DefaultAdvertise derives the address clients are told to use from the
// address the proxy listens on: that address itself, or, when it listens on
// every interface (":2181", "0.0.0.0:2181", "[::]:2181"), the machine's
// host name with the port — a wildcard address would make a client that
// follows the config (Curator) connect to itself.
func DefaultAdvertise(listen string) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("advertise: deriving from listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		name, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("advertise: listen %q is every interface and the host name is unknown: %w", listen, err)
		}
		host = name
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("advertise: listen %q has no fixed port; set advertise", listen)
	}
	return []string{net.JoinHostPort(host, port)}, nil
}

// advertise returns the proxies' client addresses clients are shown:
// Config.Advertise, or else DefaultAdvertise of the first listener served.
func (s *Server) advertise() []string {
	if len(s.cfg.Advertise) > 0 {
		return s.cfg.Advertise
	}
	if a := s.advertised.Load(); a != nil {
		return *a
	}
	return nil
}

// deriveAdvertise records DefaultAdvertise(addr) when Config.Advertise is
// empty and no listener was served before.
func (s *Server) deriveAdvertise(addr net.Addr) {
	if len(s.cfg.Advertise) > 0 || s.advertised.Load() != nil {
		return
	}
	a, err := DefaultAdvertise(addr.String())
	if err != nil {
		s.log.Warn("cannot derive the address clients are shown as the ensemble's members; set advertise", "err", err)
		return
	}
	if s.advertised.CompareAndSwap(nil, &a) {
		s.log.Info("clients reading the ensemble's membership are shown this proxy", "advertise", a)
	}
}

// screenConfigRequest looks at a client request before it is forwarded:
// it marks req when its reply must be rewritten, and returns the frame to
// forward — raw, or the stand-in of a refused reconfig (logged and counted).
func (s *Session) screenConfigRequest(raw, payload []byte, req *pendingRequest) []byte {
	switch req.op {
	case jute.OpGetData, jute.OpMultiRead, jute.OpReconfig:
	default:
		return raw
	}
	cr, standIn := configRequest(req.op, req.xid, payload[jute.RequestHeaderSize:], !s.srv.cfg.PassConfigThrough, s.srv.cfg.AllowReconfig)
	if cr == nil {
		return raw
	}
	req.config = cr
	if cr.refuseReconfig {
		s.srv.m.reconfigRefused.Inc()
		s.logger().Warn("reconfig refused: the ensemble's membership is changed on its members, not through zkproxy (allow-reconfig)",
			"xid", req.xid)
	}
	if standIn != nil {
		return standIn
	}
	return raw
}

// configReplyFrame returns the frame the client gets for a member's reply
// (payload, header included) to a request screenConfigRequest marked.
func (s *Session) configReplyFrame(cr *configReply, payload []byte) ([]byte, error) {
	out, err := rewriteConfigReply(cr, payload, s.srv.advertise())
	if err != nil {
		s.srv.m.decodeErrors.WithLabelValues("config_reply").Inc()
		return nil, err
	}
	if !cr.refuseReconfig && len(out) > 0 && len(payload) > 0 && &out[0] != &payload[0] {
		s.srv.m.configRewrites.Inc()
	}
	return jute.AppendFrame(nil, out), nil
}
