package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadTLSConfig builds the TLS configuration of the AMQPS (and HTTPS)
// listeners from PEM files. With a CA file, client certificates are
// verified against it when a client presents one (required when
// requireClientCert is set), which enables the EXTERNAL mechanism.
func LoadTLSConfig(certFile, keyFile, caFile string, requireClientCert bool) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate and a key are needed")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate found in %s", caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if requireClientCert {
		return nil, errors.New("tls: requiring client certificates needs a CA file to verify them")
	}
	return cfg, nil
}

// peerCertName returns the login name of a verified client certificate
// (for EXTERNAL), or "" when the connection has none.
func (c *conn) peerCertName() string {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	subj := st.PeerCertificates[0].Subject
	if c.s.cfg.CertLoginFrom == "distinguished_name" {
		return subj.String()
	}
	return subj.CommonName
}
