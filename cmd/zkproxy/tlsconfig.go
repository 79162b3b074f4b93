package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// listenerTLS builds the client listener's TLS configuration from PEM
// files: the proxy's certificate chain and key, and, when clientCA is set,
// the CAs client certificates must chain to (then every client must present
// one, like a ZooKeeper secure port with ssl.clientAuth=need). All three
// empty means no TLS. Problems are reported through bad, each naming its
// key.
func listenerTLS(certFile, keyFile, clientCAFile string, bad func(key, format string, args ...any)) *tls.Config {
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
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		bad(keyTLSCert, "loading %s with the key in %s: %v", certFile, keyFile, err)
		return nil
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			bad(keyTLSClientCA, "%v", err)
			return nil
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			bad(keyTLSClientCA, "%s holds no PEM certificate", clientCAFile)
			return nil
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
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
