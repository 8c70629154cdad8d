package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client calls a management HTTP API (Warren's, or RabbitMQ's for migrate).
type client struct {
	base       string
	user, pass string
	hc         *http.Client
}

func newClient(base, user, pass string) *client {
	return &client{base: strings.TrimRight(base, "/"), user: user, pass: pass, hc: &http.Client{Timeout: 5 * time.Minute}}
}

// esc escapes one path segment: the vhost "/" is "%2F".
func esc(s string) string { return url.PathEscape(s) }

// do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to ignore it). API refusals become errors carrying
// the API's reason.
func (c *client) do(method, path string, body, out any, header ...string) error {
	var rd io.Reader
	if body != nil {
		if raw, ok := body.([]byte); ok {
			rd = bytes.NewReader(raw)
		} else {
			js, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(js)
		}
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return &cliError{exitUsage, fmt.Sprintf("bad URL %q: %v", c.base, err)}
	}
	req.SetBasicAuth(c.user, c.pass)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
			return &cliError{exitUnavailable, fmt.Sprintf("unable to reach the management API at %s: %v", c.base, err)}
		}
		return &cliError{exitUnavailable, fmt.Sprintf("management API at %s: %v", c.base, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Reason string }
		json.Unmarshal(raw, &e)
		reason := e.Reason
		if reason == "" {
			reason = strings.TrimSpace(string(raw))
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return &cliError{exitNoPerm, fmt.Sprintf("authentication as '%s' refused by %s: %s", c.user, c.base, reason)}
		case http.StatusForbidden:
			return &cliError{exitNoPerm, fmt.Sprintf("'%s' may not do this: %s", c.user, reason)}
		}
		return &cliError{exitFailed, reason}
	}
	if out != nil && len(raw) > 0 {
		if raw2, ok := out.(*[]byte); ok {
			*raw2 = raw
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

func (c *client) get(path string, out any) error { return c.do(http.MethodGet, path, nil, out) }

func (c *client) list(path string) ([]map[string]any, error) {
	var out []map[string]any
	return out, c.get(path, &out)
}
