package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newHealthCommand is `zkproxy health`: one GET of the admin /healthz (or
// /readyz), exit 0 or 1 with a one-line reason. It is the container's
// HEALTHCHECK: the distroless image has no shell and no curl.
func newHealthCommand() *cobra.Command {
	var (
		adminURL, token, caFile, serverName string
		ready                               bool
		timeout                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Ask a running zkproxy's admin /healthz (--ready: /readyz); exit 0 when it answers 200, else 1",
		Long: `Ask the admin API of a running zkproxy whether it is alive (/healthz) or, with
--ready, ready for clients (/readyz: a source member answers). Prints one line
and exits 0 when the answer is 200, 1 otherwise.

Without --admin, the address comes from the serve configuration this process
sees (ZKPROXY_ADMIN_LISTEN, or admin-listen in the ZKPROXY_CONFIG file; default
127.0.0.1:9181), a wildcard host asked on loopback, over https when
admin-tls-cert is set, so inside the container it needs no arguments. An https
certificate is verified against --ca (default: the system's roots) and
--server-name (default: the URL's host). The token (--token,
ZKPROXY_ADMIN_TOKEN or the file's admin-token) is sent when one is configured.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if adminURL == "" || token == "" {
				serveSide, err := serveAdminSettings()
				if adminURL == "" {
					if err != nil {
						return fmt.Errorf("unhealthy: %w", err)
					}
					adminURL = serveSide.url
				}
				if token == "" {
					token = serveSide.token
				}
			}
			client, err := healthClient(adminURL, caFile, serverName, timeout)
			if err != nil {
				return err
			}
			path := "/healthz"
			if ready {
				path = "/readyz"
			}
			line, err := checkHealth(cmd.Context(), client, adminURL, path, token)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin", os.Getenv("ZKPROXY_ADMIN_URL"), "admin API base URL, http:// or https:// (env ZKPROXY_ADMIN_URL; default: from the serve configuration)")
	cmd.Flags().StringVar(&token, "token", "", "bearer token sent with the request (default: ZKPROXY_ADMIN_TOKEN or the config file's admin-token)")
	cmd.Flags().StringVar(&caFile, "ca", os.Getenv("ZKPROXY_ADMIN_CA"), "PEM CA certificates an https admin certificate must chain to (env ZKPROXY_ADMIN_CA; default: the system's roots)")
	cmd.Flags().StringVar(&serverName, "server-name", os.Getenv("ZKPROXY_ADMIN_SERVER_NAME"), "name the https admin certificate is verified against (env ZKPROXY_ADMIN_SERVER_NAME; default: the URL's host)")
	cmd.Flags().BoolVar(&ready, "ready", false, "ask /readyz (ready for clients) instead of /healthz (alive)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long (keep it under the HEALTHCHECK --timeout)")
	return cmd
}

// adminSettings are what `zkproxy health` learns from the serve
// configuration: where the admin API listens and its token.
type adminSettings struct {
	url, token string
}

// serveAdminSettings reads admin-listen and admin-token the way serve does
// (defaults, ZKPROXY_* env, the ZKPROXY_CONFIG file), without validating
// the rest: a health check must not fail over an unrelated key. The error
// says why there is no URL; the token is filled in regardless when the
// configuration could be read.
func serveAdminSettings() (adminSettings, error) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	bindServeFlags(fs)
	v, err := newViper(fs)
	if err != nil {
		return adminSettings{}, err
	}
	s := adminSettings{token: strings.TrimSpace(v.GetString(keyAdminToken))}
	listen := strings.TrimSpace(v.GetString(keyAdminListen))
	if listen == "" {
		return s, fmt.Errorf("%s is empty, the admin API is off: pass --admin", keyAdminListen)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return s, fmt.Errorf("%s %q is not host:port: %w", keyAdminListen, listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // a wildcard listener answers on loopback too
	}
	scheme := "http"
	if strings.TrimSpace(v.GetString(keyAdminTLSCert)) != "" {
		scheme = "https"
	}
	s.url = scheme + "://" + net.JoinHostPort(host, port)
	return s, nil
}

// healthClient is an HTTP client giving up after timeout; for https it
// verifies the admin certificate against caFile (default: the system's
// roots) and serverName (default: the URL's host).
func healthClient(base, caFile, serverName string, timeout time.Duration) (*http.Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q is not http(s)://host:port", base)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Timeout: timeout, Transport: transport}, nil
}

// checkHealth GETs path and returns a one-line verdict: nil error for a
// 200, otherwise an error saying why, the server's own reason included
// (/readyz answers {"status": "not ready", "error": ...}).
func checkHealth(ctx context.Context, client *http.Client, base, path, token string) (string, error) {
	target := strings.TrimSuffix(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is said once, below
		}
		return "", fmt.Errorf("unhealthy: GET %s: %s", target, oneLine(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	_ = json.Unmarshal(body, &ans) // a non-JSON answer is shown as text
	reason := strings.TrimSpace(strings.Join([]string{ans.Status, ans.Error}, ": "))
	reason = strings.Trim(reason, ": ")
	if reason == "" {
		reason = strings.TrimSpace(string(body))
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("unhealthy: GET %s: HTTP %d: %s", target, resp.StatusCode, oneLine(reason))
	}
	return fmt.Sprintf("healthy: GET %s: %s", target, oneLine(reason)), nil
}

// oneLine folds s onto one line, short enough for `docker inspect`.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
