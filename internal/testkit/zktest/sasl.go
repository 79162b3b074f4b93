package zktest

import (
	"os"
	"path/filepath"
)

// digestJAAS configures SASL DIGEST-MD5: the "Server" section is what
// ZooKeeper servers read (one user, bob), "SaslClient" what clients name
// with ZKClientConfig.LOGIN_CONTEXT_NAME_KEY.
const digestJAAS = `Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret";
};
SaslClient {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="bob"
    password="bobsecret";
};
`

// DigestSASL writes a JAAS file for SASL DIGEST-MD5 (user bob; client
// section "SaslClient") and returns its path and the server options that
// turn SASL authentication on (the JAAS file, SASLAuthenticationProvider).
// Clients authenticate as sasl:bob.
func DigestSASL(t TB) (jaas string, opts []Option) {
	t.Helper()
	jaas = filepath.Join(t.TempDir(), "jaas.conf")
	if err := os.WriteFile(jaas, []byte(digestJAAS), 0o644); err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return jaas, []Option{
		WithJVMFlags("-Djava.security.auth.login.config=" + jaas),
		WithConfig("authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
	}
}
