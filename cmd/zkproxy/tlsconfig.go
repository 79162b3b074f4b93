package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/zkproxy/zkproxy/internal/certfile"
	"github.com/zkproxy/zkproxy/internal/membertls"
)

// listenerTLS builds the client listener's TLS configuration from PEM
// files: the proxy's certificate chain and key, and, when clientCA is set,
// the CAs client certificates must chain to (then every client must present
// one, like a ZooKeeper secure port with ssl.clientAuth=need). All three
// empty means no TLS. The certificate is read again when its files change
// (certfile); its reloader is stored in *reloader. Problems are reported
// through bad, each naming its key.
func listenerTLS(certFile, keyFile, clientCAFile string, reloader **certfile.Reloader, bad func(key, format string, args ...any)) *tls.Config {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil
	case certFile == "":
		bad(keyTLSCert, "required with %s and %s", keyTLSKey, keyTLSClientCA)
		return nil
	case keyFile == "":
		bad(keyTLSKey, "required with %s", keyTLSCert)
		return nil
	}
	// Both checked, so one start reports both problems.
	certs, certErr := certfile.New(certFile, keyFile)
	if certErr != nil {
		bad(keyTLSCert, "loading %s with the key in %s: %v", certFile, keyFile, certErr)
	}
	var pool *x509.CertPool
	var caErr error
	if clientCAFile != "" {
		if pool, caErr = loadCertPool(clientCAFile); caErr != nil {
			bad(keyTLSClientCA, "%v", caErr)
		}
	}
	if certErr != nil || caErr != nil {
		return nil
	}
	*reloader = certs
	cfg := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	if pool != nil {
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// adminTLS builds the admin listener's TLS configuration from PEM files
// (both empty: plain HTTP). The certificate is read again when its files
// change; its reloader is stored in *reloader. Problems are reported through
// bad, each naming its key.
func adminTLS(adminListen, certFile, keyFile string, reloader **certfile.Reloader, bad func(key, format string, args ...any)) *tls.Config {
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case adminListen == "":
		bad(keyAdminTLSCert, "has no effect without %s", keyAdminListen)
		return nil
	case certFile == "":
		bad(keyAdminTLSCert, "required with %s", keyAdminTLSKey)
		return nil
	case keyFile == "":
		bad(keyAdminTLSKey, "required with %s", keyAdminTLSCert)
		return nil
	}
	certs, err := certfile.New(certFile, keyFile)
	if err != nil {
		bad(keyAdminTLSCert, "loading %s with the key in %s: %v", certFile, keyFile, err)
		return nil
	}
	*reloader = certs
	return &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
}

// describeTLS is the listener's TLS mode for the start-up log line.
func describeTLS(cfg *tls.Config) string {
	switch {
	case cfg == nil:
		return "off"
	case cfg.ClientAuth == tls.RequireAndVerifyClientCert:
		return "on, client certificates required"
	}
	return "on"
}

// describeMemberTLS is one ensemble's TLS mode for the start-up log line.
func describeMemberTLS(p *membertls.Policy, members []string) string {
	if len(members) == 0 {
		return "-"
	}
	cfg := p.For(members[0])
	switch {
	case cfg == nil:
		return "off"
	case cfg.GetClientCertificate != nil:
		return "on, with a client certificate"
	}
	return "on"
}

// memberTLSKeys are the keys of TLS towards one ensemble's members, e.g.
// source-tls, source-tls-ca, ...
type memberTLSKeys struct {
	on, ca, cert, key, serverName string
}

func memberTLSKeysOf(ensembleKey string) memberTLSKeys {
	p := ensembleKey + "-tls"
	return memberTLSKeys{on: p, ca: p + "-ca", cert: p + "-cert", key: p + "-key", serverName: p + "-server-name"}
}

// memberTLS builds the TLS configuration for one ensemble's members (nil:
// plain TCP) from its keys' values: the CAs that verify the members'
// certificates (empty: the system's roots), the client certificate and key
// (ZooKeeper's secure port requires one unless the ensemble set
// ssl.clientAuth=none), and a server name to verify instead of each
// member's host. The client certificate is read again when its files
// change (certfile); its reloader is stored in *reloader. Every problem is
// reported through bad, naming its key.
func memberTLS(k memberTLSKeys, on bool, caFile, certFile, keyFile, serverName string, reloader **certfile.Reloader, bad func(key, format string, args ...any)) *tls.Config {
	if !on {
		for _, kv := range [][2]string{{k.ca, caFile}, {k.cert, certFile}, {k.key, keyFile}, {k.serverName, serverName}} {
			if kv[1] != "" {
				bad(kv[0], "has no effect without %s=true", k.on)
			}
		}
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	ok := true
	if caFile != "" {
		pool, err := loadCertPool(caFile)
		if err != nil {
			bad(k.ca, "%v", err)
			ok = false
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "":
		bad(k.cert, "required with %s", k.key)
		ok = false
	case keyFile == "":
		bad(k.key, "required with %s", k.cert)
		ok = false
	default:
		certs, err := certfile.New(certFile, keyFile)
		if err != nil {
			bad(k.cert, "loading %s with the key in %s: %v", certFile, keyFile, err)
			ok = false
			break
		}
		*reloader = certs
		cfg.GetClientCertificate = certs.GetClientCertificate
	}
	if !ok {
		return nil
	}
	return cfg
}

// loadCertPool reads PEM CA certificates from file.
func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
