package webui

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, req)
	return w
}

func TestServesThePageAndItsAssets(t *testing.T) {
	w := get(t, "/", nil)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("no CSP on the page: %v", w.Header())
	}
	page := w.Body.String()
	// Every asset the page names is embedded and served, with no host of
	// its own (nothing from a CDN).
	for _, ref := range []string{"app.css", "js/app.js", "js/lib.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"} {
		if !strings.Contains(page, `"`+ref+`"`) {
			t.Errorf("page does not load %s", ref)
		}
		if r := get(t, "/"+ref, nil); r.Code != 200 || r.Body.Len() == 0 {
			t.Errorf("GET /%s: %d", ref, r.Code)
		}
	}
	if strings.Contains(page, "//cdn") || strings.Contains(page, "https://") {
		t.Error("the page loads something from another host")
	}
	if r := get(t, "/js/app.js", nil); r.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("app.js served as %q", r.Header().Get("Content-Type"))
	}
	if r := get(t, "/no-such-file.js", nil); r.Code != 404 {
		t.Errorf("missing file: %d", r.Code)
	}
	// uPlot ships with its licence.
	if lic, err := fs.ReadFile(Assets, "vendor/uplot/LICENSE"); err != nil || !bytes.Contains(lic, []byte("MIT License")) {
		t.Errorf("uPlot licence: %v", err)
	}
}

func TestGzipAndRevalidation(t *testing.T) {
	plain := get(t, "/js/lib.js", nil)
	zipped := get(t, "/js/lib.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if zipped.Header().Get("Content-Encoding") != "gzip" || plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("encodings: %q and %q", zipped.Header().Get("Content-Encoding"), plain.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if !bytes.Equal(body, plain.Body.Bytes()) || zipped.Body.Len() >= plain.Body.Len() {
		t.Fatalf("gzip body: %d bytes for %d, equal %v", zipped.Body.Len(), plain.Body.Len(), bytes.Equal(body, plain.Body.Bytes()))
	}
	if r := get(t, "/js/lib.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); r.Header().Get("Content-Encoding") != "" {
		t.Fatal("gzip sent to a client that refused it")
	}
	etag := plain.Header().Get("ETag")
	if etag == "" || plain.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("caching headers: %v", plain.Header())
	}
	if r := get(t, "/js/lib.js", map[string]string{"If-None-Match": etag}); r.Code != http.StatusNotModified || r.Body.Len() != 0 {
		t.Fatalf("revalidation: %d, %d bytes", r.Code, r.Body.Len())
	}
	if r := get(t, "/js/app.js", map[string]string{"If-None-Match": etag}); r.Code != 200 {
		t.Fatalf("another file's ETag matched: %d", r.Code)
	}
	req := httptest.NewRequest("POST", "/", nil)
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: %d", w.Code)
	}
}
