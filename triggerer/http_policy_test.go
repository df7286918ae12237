package triggerer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/orkstate/orkstate"
)

// localTracker is an HTTPTracker allowed to reach loopback, where the test servers listen.
func localTracker(t *testing.T, cfg *HTTPTrackerConfig) *HTTPTracker {
	t.Helper()
	if cfg == nil {
		cfg = &HTTPTrackerConfig{}
	}
	cfg.AllowedNetworks = append(cfg.AllowedNetworks, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
	h, err := NewHTTPTracker(cfg)
	if err != nil {
		t.Fatalf("NewHTTPTracker: %v", err)
	}
	return h
}

// recorder is a test server that counts requests and keeps the last one's headers and body.
type recorder struct {
	srv    *httptest.Server
	calls  atomic.Int32
	header atomic.Pointer[http.Header]
	body   atomic.Pointer[string]
}

func newRecorder(t *testing.T, handler http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		h := req.Header.Clone()
		r.header.Store(&h)
		b, _ := io.ReadAll(req.Body)
		s := string(b)
		r.body.Store(&s)
		handler(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func success(w http.ResponseWriter, _ *http.Request) {
	_, _ = io.WriteString(w, `{"status":"success"}`)
}

func TestHTTPTrackerDestinationPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newRecorder(t, success)
	port := srv.srv.URL[strings.LastIndex(srv.srv.URL, ":")+1:]
	def, err := NewHTTPTracker(nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, url := range []string{
		srv.srv.URL,                          // loopback by address
		"http://localhost:" + port,           // loopback by name: checked after DNS, at dial time
		"http://169.254.169.254/latest/meta", // cloud metadata: refused before any packet is sent
		"http://[::ffff:127.0.0.1]:" + port,  // loopback behind an IPv4-mapped address
		"http://10.0.0.1/",                   // private
	} {
		result, msg, err := def.Poll(ctx, "j", json.RawMessage(`{"url":"`+url+`"}`))
		if err != nil || result != orkstate.PollFailed || !strings.Contains(msg, "is not allowed") {
			t.Errorf("default policy, %s: result %q, msg %q, err %v; want failed, not allowed", url, result, msg, err)
		}
	}
	if n := srv.calls.Load(); n != 0 {
		t.Errorf("default policy: the loopback server was called %d times", n)
	}

	result, _, err := localTracker(t, nil).Poll(ctx, "j", json.RawMessage(`{"url":"`+srv.srv.URL+`"}`))
	if err != nil || result != orkstate.PollCompleted {
		t.Errorf("loopback allowed: result %q, err %v; want completed", result, err)
	}

	if _, err := NewHTTPTracker(&HTTPTrackerConfig{AllowedNetworks: []netip.Prefix{{}}}); !orkstate.IsValidation(err) {
		t.Errorf("zero AllowedNetworks entry: err = %v, want a validation error", err)
	}
}

func TestIsPublic(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true, "64:ff9b::808:808": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "100.100.100.200": false,
		"0.0.0.0": false, "::": false, "255.255.255.255": false, "224.0.0.1": false, "ff02::1": false,
		"::ffff:169.254.169.254": false, "64:ff9b::a9fe:a9fe": false, "64:ff9b::7f00:1": false,
	} {
		if got := (destinationPolicy{}).allows(netip.MustParseAddr(addr)); got != want {
			t.Errorf("allows(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestHTTPTrackerRedirects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// other is another origin (another port on loopback).
	other := newRecorder(t, success)
	redirector := func(code int, to string) *recorder {
		return newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/final" {
				success(w, r)
				return
			}
			http.Redirect(w, r, to, code)
		})
	}
	get := `{"url":"%s/start","headers":{"X-Api-Key":"secret","Authorization":"Bearer secret"}}`
	post := `{"url":"%s/start","method":"POST","body":{"q":"secret"},"headers":{"X-Api-Key":"secret"}}`
	data := func(tmpl, url string) json.RawMessage { return json.RawMessage(strings.Replace(tmpl, "%s", url, 1)) }

	t.Run("same origin is followed with the job's headers", func(t *testing.T) {
		t.Parallel()
		src := redirector(http.StatusFound, "/final")
		result, msg, err := localTracker(t, nil).Poll(ctx, "j", data(get, src.srv.URL))
		if err != nil || result != orkstate.PollCompleted {
			t.Fatalf("result %q, msg %q, err %v; want completed", result, msg, err)
		}
		if h := src.header.Load(); h.Get("X-Api-Key") != "secret" {
			t.Errorf("X-Api-Key on the redirected request = %q, want secret", h.Get("X-Api-Key"))
		}
	})

	t.Run("another origin is refused by default", func(t *testing.T) {
		t.Parallel()
		before := other.calls.Load()
		src := redirector(http.StatusFound, other.srv.URL+"/x")
		result, msg, err := localTracker(t, nil).Poll(ctx, "j", data(get, src.srv.URL))
		if err != nil || result != orkstate.PollFailed || !strings.Contains(msg, "redirect to "+other.srv.URL+"/x refused") {
			t.Fatalf("result %q, msg %q, err %v; want failed, redirect refused", result, msg, err)
		}
		if other.calls.Load() != before {
			t.Error("the other origin was called")
		}
	})

	t.Run("another origin when allowed gets none of the job's headers", func(t *testing.T) {
		t.Parallel()
		target := newRecorder(t, success)
		src := redirector(http.StatusFound, target.srv.URL+"/x")
		tr := localTracker(t, &HTTPTrackerConfig{AllowCrossHostRedirects: true})
		result, msg, err := tr.Poll(ctx, "j", data(get, src.srv.URL))
		if err != nil || result != orkstate.PollCompleted {
			t.Fatalf("result %q, msg %q, err %v; want completed", result, msg, err)
		}
		h := target.header.Load()
		if h == nil {
			t.Fatal("the target was not called")
		}
		if h.Get("X-Api-Key") != "" || h.Get("Authorization") != "" {
			t.Errorf("the other origin got X-Api-Key %q, Authorization %q; want neither", h.Get("X-Api-Key"), h.Get("Authorization"))
		}
	})

	t.Run("307 with the body to another origin is refused even when allowed", func(t *testing.T) {
		t.Parallel()
		target := newRecorder(t, success)
		src := redirector(http.StatusTemporaryRedirect, target.srv.URL+"/x")
		tr := localTracker(t, &HTTPTrackerConfig{AllowCrossHostRedirects: true})
		result, msg, err := tr.Poll(ctx, "j", data(post, src.srv.URL))
		if err != nil || result != orkstate.PollFailed || !strings.Contains(msg, "resend the job's body") {
			t.Fatalf("result %q, msg %q, err %v; want failed, body not resent", result, msg, err)
		}
		if n := target.calls.Load(); n != 0 {
			t.Errorf("the other origin was called %d times", n)
		}
	})
}
