package triggerer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orkstate/orkstate"
)

// seen is what the test server received.
type seen struct {
	method, body, contentType, auth, accept string
}

func TestHTTPTrackerPoll(t *testing.T) {
	t.Parallel()

	type want struct {
		result    orkstate.PollResult
		errMsg    string // substring; "" means empty
		err       string // substring of the error; "" means no error
		request   *seen  // checked when not nil
		noRequest bool   // the server must not be called
	}
	tests := []struct {
		name   string
		data   string // %URL% is replaced by the server's URL
		status int
		body   string
		want   want
	}{
		{
			name: "get success default field and value", data: `{"url":"%URL%"}`,
			status: 200, body: `{"status":"success"}`,
			want: want{result: orkstate.PollCompleted, request: &seen{method: "GET", accept: "application/json"}},
		},
		{
			name: "post json body and headers", data: `{"url":"%URL%","method":"post","headers":{"Authorization":"Bearer x"},"body":{"q":1}}`,
			status: 200, body: `{"status":"success"}`,
			want: want{result: orkstate.PollCompleted, request: &seen{method: "POST", body: `{"q":1}`, contentType: "application/json", auth: "Bearer x", accept: "application/json"}},
		},
		{
			name: "put string body sent as text", data: `{"url":"%URL%","method":"PUT","body":"plain text","headers":{"Content-Type":"text/plain"}}`,
			status: 201, body: `{"status":"success"}`,
			want: want{result: orkstate.PollCompleted, request: &seen{method: "PUT", body: "plain text", contentType: "text/plain", accept: "application/json"}},
		},
		{
			name: "delete", data: `{"url":"%URL%","method":"DELETE"}`,
			status: 200, body: `{"status":"pending"}`,
			want: want{result: orkstate.PollRunning, request: &seen{method: "DELETE", accept: "application/json"}},
		},
		{
			name: "other status is running", data: `{"url":"%URL%","failure_value":"error"}`,
			status: 200, body: `{"status":"queued"}`,
			want: want{result: orkstate.PollRunning},
		},
		{
			name: "custom field and success value", data: `{"url":"%URL%","status_field":"state","success_value":"DONE"}`,
			status: 200, body: `{"state":"DONE","status":"success"}`,
			want: want{result: orkstate.PollCompleted},
		},
		{
			name: "custom success value not reached", data: `{"url":"%URL%","status_field":"state","success_value":"DONE"}`,
			status: 200, body: `{"state":"RUNNING","status":"success"}`,
			want: want{result: orkstate.PollRunning},
		},
		{
			name: "nested field by dotted path", data: `{"url":"%URL%","status_field":"job.state","success_value":"DONE"}`,
			status: 200, body: `{"job":{"state":"DONE"}}`,
			want: want{result: orkstate.PollCompleted},
		},
		{
			name: "non-string values compare as JSON text", data: `{"url":"%URL%","status_field":"code","success_value":1,"failure_value":"2"}`,
			status: 200, body: `{"code":1}`,
			want: want{result: orkstate.PollCompleted},
		},
		{
			name: "failure value with error field", data: `{"url":"%URL%","failure_value":"failed"}`,
			status: 200, body: `{"status":"failed","error":"quota exceeded"}`,
			want: want{result: orkstate.PollFailed, errMsg: "quota exceeded"},
		},
		{
			name: "failure value without error field", data: `{"url":"%URL%","failure_value":"failed"}`,
			status: 200, body: `{"status":"failed"}`,
			want: want{result: orkstate.PollFailed, errMsg: `status is "failed"`},
		},
		{
			name: "failure value unset never fails", data: `{"url":"%URL%"}`,
			status: 200, body: `{"status":"failed"}`,
			want: want{result: orkstate.PollRunning},
		},
		{
			name: "non-2xx with error field", data: `{"url":"%URL%"}`,
			status: 404, body: `{"error":"no such job"}`,
			want: want{result: orkstate.PollFailed, errMsg: "no such job"},
		},
		{
			name: "non-2xx without JSON names the status", data: `{"url":"%URL%"}`,
			status: 503, body: `upstream unavailable`,
			want: want{result: orkstate.PollFailed, errMsg: "HTTP 503 Service Unavailable"},
		},
		{
			name: "non-2xx JSON without error names the status", data: `{"url":"%URL%"}`,
			status: 500, body: `{"status":"success"}`,
			want: want{result: orkstate.PollFailed, errMsg: "HTTP 500"},
		},
		{
			name: "2xx body not JSON is an error", data: `{"url":"%URL%"}`,
			status: 200, body: `<html>ok</html>`,
			want: want{err: "is not JSON"},
		},
		{
			name: "2xx without the status field is an error", data: `{"url":"%URL%"}`,
			status: 200, body: `{"state":"success"}`,
			want: want{err: `has no field "status"`},
		},
		{
			name: "2xx JSON that is not an object is an error", data: `{"url":"%URL%"}`,
			status: 200, body: `["success"]`,
			want: want{err: `has no field "status"`},
		},
		{
			name: "job data not JSON fails", data: `not json`,
			want: want{result: orkstate.PollFailed, errMsg: "invalid job data"},
		},
		{
			name: "job data without url fails", data: `{"method":"GET"}`,
			want: want{result: orkstate.PollFailed, errMsg: "url is required"},
		},
		{
			name: "unknown method fails", data: `{"url":"%URL%","method":"PATCH"}`,
			want: want{result: orkstate.PollFailed, errMsg: `method "PATCH"`},
		},
		{
			name: "non-http url fails", data: `{"url":"ftp://example.com/x"}`,
			want: want{result: orkstate.PollFailed, errMsg: "not http or https"},
		},
		{
			name: "scheme is case-insensitive", data: `{"url":"%UPPERURL%"}`,
			status: 200, body: `{"status":"success"}`,
			want: want{result: orkstate.PollCompleted, request: &seen{method: "GET", accept: "application/json"}},
		},
		{
			name: "header value with CRLF fails as bad job data", data: `{"url":"%URL%","headers":{"X-Key":"a\r\nX-Injected: 1"}}`,
			status: 200, body: `{"status":"success"}`,
			want: want{result: orkstate.PollFailed, errMsg: "invalid job data: header \"X-Key\" has a control character", noRequest: true},
		},
		{
			name: "header name that is not a token fails", data: `{"url":"%URL%","headers":{"X Key":"a"}}`,
			status: 200, body: `{"status":"success"}`,
			want: want{result: orkstate.PollFailed, errMsg: "not a valid HTTP token", noRequest: true},
		},
		{
			name: "answer over 1 MiB says so", data: `{"url":"%URL%"}`,
			status: 200, body: `{"status":"success","pad":"` + strings.Repeat("x", 2<<20) + `"}`,
			want: want{err: "is over 1 MiB"},
		},
		{
			name: "null status is an error, not running", data: `{"url":"%URL%","failure_value":"failed"}`,
			status: 200, body: `{"status":null}`,
			want: want{err: `has null in field "status"`},
		},
		{
			name: "remote error text is cleaned and cut", data: `{"url":"%URL%"}`,
			status: 500, body: `{"error":"bad\u0000` + strings.Repeat("é", 1000) + `"}`,
			want: want{result: orkstate.PollFailed, errMsg: "bad" + strings.Repeat("é", 510) + "…"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got atomic.Pointer[seen]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got.Store(&seen{method: r.Method, body: string(b), contentType: r.Header.Get("Content-Type"),
					auth: r.Header.Get("Authorization"), accept: r.Header.Get("Accept")})
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(srv.Close)

			tr := localTracker(t, nil)
			data := strings.ReplaceAll(tt.data, "%UPPERURL%", strings.Replace(srv.URL, "http://", "HTTP://", 1)+"/jobs/1")
			data = strings.ReplaceAll(data, "%URL%", srv.URL+"/jobs/1")
			result, errMsg, err := tr.Poll(context.Background(), "job-1", json.RawMessage(data))
			if tt.want.noRequest && got.Load() != nil {
				t.Errorf("the server was called: %+v", got.Load())
			}
			if tt.want.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			if result != tt.want.result {
				t.Errorf("result = %q, want %q", result, tt.want.result)
			}
			if (tt.want.errMsg == "") != (errMsg == "") || !strings.Contains(errMsg, tt.want.errMsg) || strings.Contains(errMsg, "\x00") {
				t.Errorf("errMsg = %q, want %q", errMsg, tt.want.errMsg)
			}
			if tt.want.request != nil {
				if s := got.Load(); s == nil || *s != *tt.want.request {
					t.Errorf("request = %+v, want %+v", s, tt.want.request)
				}
			}
		})
	}
}

func TestHTTPTrackerTransportErrors(t *testing.T) {
	t.Parallel()

	t.Run("server gone", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, _, err := localTracker(t, nil).Poll(context.Background(), "j", json.RawMessage(`{"url":"`+url+`"}`))
		if err == nil {
			t.Fatal("err = nil, want a transport error")
		}
	})

	t.Run("poll timeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(release); srv.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := localTracker(t, nil).Poll(ctx, "j", json.RawMessage(`{"url":"`+srv.URL+`"}`))
		if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("err = %v, want a deadline error", err)
		}
	})

	t.Run("configured transport is used", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"status":"success"}`)
		}))
		t.Cleanup(srv.Close)
		data := json.RawMessage(`{"url":"` + srv.URL + `"}`)
		// Without the test server's certificate the TLS handshake fails.
		if _, _, err := localTracker(t, nil).Poll(context.Background(), "j", data); err == nil {
			t.Fatal("default transport: err = nil, want a certificate error")
		}
		tr := localTracker(t, &HTTPTrackerConfig{Transport: srv.Client().Transport.(*http.Transport)})
		result, _, err := tr.Poll(context.Background(), "j", data)
		if err != nil || result != orkstate.PollCompleted {
			t.Fatalf("result %q, err %v; want completed, nil", result, err)
		}
	})
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	a := TrackerFunc{Type: "a"}
	h, err := NewHTTPTracker(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(a, h)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.ServiceTypes(), ","); got != "a,http" {
		t.Errorf("ServiceTypes = %s, want a,http", got)
	}
	if _, ok := r.Lookup("http"); !ok {
		t.Error("Lookup(http) not found")
	}
	if _, ok := r.Lookup("b"); ok {
		t.Error("Lookup(b) found")
	}
	if err := r.Register(TrackerFunc{Type: "a"}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("duplicate Register err = %v, want one naming \"a\"", err)
	}
	if err := r.Register(TrackerFunc{}); !orkstate.IsValidation(err) {
		t.Errorf("empty service type err = %v, want a validation error", err)
	}
	if _, err := NewRegistry(a, a); err == nil {
		t.Error("NewRegistry with a duplicate: err = nil")
	}
}
