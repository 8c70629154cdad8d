package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// testPKI is a CA with a server and a client certificate, made in the test.
type testPKI struct {
	dir                   string
	caFile                string
	serverCert, serverKey string
	clientTLS             tls.Certificate
	pool                  *x509.CertPool
}

func newCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func newTestPKI(t *testing.T, clientCN string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, caKey, caPEM, _ := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	_, _, srvPEM, srvKey := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	_, _, cliPEM, cliKey := newCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: clientCN, Organization: []string{"test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	p := &testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server.key")}
	for f, b := range map[string][]byte{p.caFile: caPEM, p.serverCert: srvPEM, p.serverKey: srvKey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if p.clientTLS, err = tls.X509KeyPair(cliPEM, cliKey); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AppendCertsFromPEM(caPEM)
	return p
}

// startTLSBroker starts a broker with an AMQPS listener and returns its
// amqps:// address (host:port).
func startTLSBroker(t *testing.T, p *testPKI, requireClientCert bool) (*testBroker, string) {
	t.Helper()
	cfg, err := LoadTLSConfig(p.serverCert, p.serverKey, p.caFile, requireClientCert)
	if err != nil {
		t.Fatal(err)
	}
	b := startBrokerConfig(t, Config{TLS: cfg})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.srv.Serve(tls.NewListener(ln, cfg))
	return b, ln.Addr().String()
}

func TestAMQPSWithPassword(t *testing.T) {
	p := newTestPKI(t, "guest")
	_, addr := startTLSBroker(t, p, false)
	conn, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.ConnectionState().HandshakeComplete {
		t.Fatal("not a TLS connection")
	}
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare("tlsq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "tlsq", amqp.Publishing{Body: []byte("secret")})
	m, ok, err := ch.Get("tlsq", true)
	if err != nil || !ok || string(m.Body) != "secret" {
		t.Fatalf("get over TLS: %q %v %v", m.Body, ok, err)
	}
	// A wrong password is still refused over TLS.
	if c, err := amqp.DialTLS("amqps://guest:wrong@"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("wrong password accepted")
	}
}

func TestAMQPSExternalAuth(t *testing.T) {
	p := newTestPKI(t, "guest")
	_, addr := startTLSBroker(t, p, false)
	conn, err := amqp.DialTLS_ExternalAuth("amqps://"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost",
		Certificates: []tls.Certificate{p.clientTLS}})
	if err != nil {
		t.Fatalf("EXTERNAL with a client certificate: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// Without a certificate EXTERNAL is not offered.
	if c, err := amqp.DialTLS_ExternalAuth("amqps://"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("EXTERNAL accepted without a client certificate")
	}
}

func TestAMQPSExternalUnknownUser(t *testing.T) {
	p := newTestPKI(t, "mallory")
	_, addr := startTLSBroker(t, p, false)
	if c, err := amqp.DialTLS_ExternalAuth("amqps://"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost",
		Certificates: []tls.Certificate{p.clientTLS}}); err == nil {
		c.Close()
		t.Fatal("a certificate naming no user logged in")
	}
}

func TestAMQPSRequiresClientCertificate(t *testing.T) {
	p := newTestPKI(t, "guest")
	_, addr := startTLSBroker(t, p, true)
	if c, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("connection without a client certificate accepted")
	}
	other := newTestPKI(t, "guest") // a certificate from another CA
	if c, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost",
		Certificates: []tls.Certificate{other.clientTLS}}); err == nil {
		c.Close()
		t.Fatal("client certificate of an unknown CA accepted")
	}
	c, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool, ServerName: "localhost",
		Certificates: []tls.Certificate{p.clientTLS}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
