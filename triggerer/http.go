package triggerer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orkstate/orkstate"
)

// HTTPServiceType is the service type of HTTPTracker.
const HTTPServiceType = "http"

// httpMaxBody caps how much of a response HTTPTracker reads.
const httpMaxBody = 1 << 20

// HTTPJobData is the job data of an HTTP-tracked deferred job.
type HTTPJobData struct {
	// URL is polled. Required; http or https.
	URL string `json:"url"`
	// Method is GET, POST, PUT or DELETE. Defaults to GET.
	Method string `json:"method,omitempty"`
	// Headers are sent with every poll.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent with every poll: a JSON string is sent as its text, any other
	// JSON value as JSON (Content-Type application/json unless Headers set one).
	Body json.RawMessage `json:"body,omitempty"`
	// StatusField names the field of the JSON response that holds the job's
	// status; a dotted path (a.b) reaches into nested objects when no top-level
	// field has the whole name. Defaults to "status".
	StatusField string `json:"status_field,omitempty"`
	// SuccessValue is the status that means completed. Defaults to "success".
	SuccessValue json.RawMessage `json:"success_value,omitempty"`
	// FailureValue is the status that means failed. No default: without it a job
	// fails only through a non-2xx answer.
	FailureValue json.RawMessage `json:"failure_value,omitempty"`
}

// HTTPTracker polls a job's url and reads its status from the JSON answer:
//
//   - 2xx, status equal to success_value → completed;
//   - 2xx, status equal to failure_value → failed, with the answer's "error"
//     field as the error (else a message naming the status);
//   - 2xx, any other status → running;
//   - 2xx without the status field, with a null status, an answer over 1 MiB,
//     or any answer that is not JSON → an error (River retries; the job fails
//     when the attempts run out);
//   - non-2xx → failed, with the answer's "error" field, else the HTTP status;
//   - a transport error or the poll timeout → an error.
//
// Values compare as text: a JSON string by its contents, any other value by its
// compact JSON, so success_value "1" matches a status of 1. Job data that cannot
// be used (not JSON, no url, an unknown method, a header that is not a valid
// HTTP header) fails the job at once: retrying would not fix it. So does a
// destination the policy denies or a redirect the tracker refuses (see
// HTTPTrackerConfig). A remote "error" text is cut to 1 KiB and cleaned of NUL
// bytes and invalid UTF-8 before it becomes the task's error.
type HTTPTracker struct {
	client *http.Client
	policy destinationPolicy
	cfg    HTTPTrackerConfig
}

// HTTPTrackerConfig configures an HTTPTracker. The job data is written by whoever
// creates deferred jobs, so the tracker treats its url and headers as untrusted:
// by default it connects only to public addresses and does not follow a redirect
// to another origin.
type HTTPTrackerConfig struct {
	// AllowCrossHostRedirects follows redirects to another origin (scheme, host or
	// port). The job's headers are not sent there (only Accept is), and a redirect
	// that would resend the job's body there (307, 308) is still refused.
	// Defaults to false: such a redirect fails the job, naming where it pointed.
	// Redirects within the origin are always followed, at most 10.
	AllowCrossHostRedirects bool

	// AllowedNetworks are destinations the tracker may connect to although the
	// default policy denies them. The default policy allows public unicast
	// addresses only: it denies loopback (127.0.0.0/8, ::1), private (10.0.0.0/8,
	// 172.16.0.0/12, 192.168.0.0/16, fc00::/7), link-local (169.254.0.0/16 — the
	// cloud metadata address 169.254.169.254 — and fe80::/10), shared address
	// space (100.64.0.0/10), unspecified, multicast, broadcast and reserved
	// addresses, also when reached through IPv4-mapped or NAT64 (64:ff9b::/96)
	// IPv6 addresses. The policy is checked when a connection is dialled, on the
	// address DNS resolved to, so a name that resolves (or later re-resolves) to
	// a denied address is refused too. Add 127.0.0.0/8 to poll a service on the
	// same host; 0.0.0.0/0 and ::/0 allow everything. Defaults to none.
	AllowedNetworks []netip.Prefix

	// Transport is the base of the tracker's transport (TLS settings, timeouts,
	// proxy). It is cloned, and the clone's dialers are replaced by one that
	// enforces the destination policy. With a Proxy, the policy applies to the
	// proxy's address and the proxy must restrict destinations itself. Defaults to
	// a clone of http.DefaultTransport without its proxy from the environment.
	Transport *http.Transport
}

// httpMaxErrorText caps a remote error text copied into a task's error.
const httpMaxErrorText = 1024

// NewHTTPTracker returns an HTTPTracker configured by cfg (nil: the defaults). An
// invalid AllowedNetworks entry is a *orkstate.ValidationError.
func NewHTTPTracker(cfg *HTTPTrackerConfig) (*HTTPTracker, error) {
	h := &HTTPTracker{}
	if cfg != nil {
		h.cfg = *cfg
	}
	for i, p := range h.cfg.AllowedNetworks {
		if !p.IsValid() {
			return nil, orkstate.Invalid("AllowedNetworks", p, fmt.Sprintf("entry %d is not a valid network", i))
		}
		h.policy.allowed = append(h.policy.allowed, p.Masked())
	}
	var tr *http.Transport
	if h.cfg.Transport != nil {
		tr = h.cfg.Transport.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: h.policy.control}
	tr.DialContext = dialer.DialContext
	tr.DialTLSContext = nil
	// A caller's deprecated dialers would bypass the policy (DialTLS is used when
	// DialTLSContext is nil).
	//lint:ignore SA1019 cleared, not used
	tr.Dial = nil
	//lint:ignore SA1019 cleared, not used
	tr.DialTLS = nil
	h.client = &http.Client{Transport: tr, CheckRedirect: h.checkRedirect}
	return h, nil
}

// ServiceType returns HTTPServiceType.
func (h *HTTPTracker) ServiceType() string { return HTTPServiceType }

// Poll sends one request and interprets the answer (see HTTPTracker).
func (h *HTTPTracker) Poll(ctx context.Context, jobID string, jobData json.RawMessage) (orkstate.PollResult, string, error) {
	d, req, err := h.request(ctx, jobData)
	if err != nil {
		return orkstate.PollFailed, fmt.Sprintf("http tracker: job %s: invalid job data: %v", jobID, err), nil
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var denied *destinationDeniedError
		var redirect *redirectRefusedError
		switch {
		case errors.As(err, &denied):
			return orkstate.PollFailed, fmt.Sprintf("http tracker: job %s: %s %s: %v", jobID, req.Method, d.URL, denied), nil
		case errors.As(err, &redirect):
			return orkstate.PollFailed, fmt.Sprintf("http tracker: job %s: %s %s: %v", jobID, req.Method, d.URL, redirect), nil
		}
		return "", "", fmt.Errorf("http tracker: job %s: %s %s: %w", jobID, req.Method, d.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, httpMaxBody+1))
	if err != nil {
		return "", "", fmt.Errorf("http tracker: job %s: read answer of %s: %w", jobID, d.URL, err)
	}
	tooLarge := len(raw) > httpMaxBody

	var body any
	bodyErr := errors.New("answer over 1 MiB")
	if !tooLarge {
		bodyErr = json.Unmarshal(raw, &body)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if msg, ok := errorField(body); ok && bodyErr == nil {
			return orkstate.PollFailed, msg, nil
		}
		return orkstate.PollFailed, fmt.Sprintf("HTTP %s from %s", resp.Status, d.URL), nil
	}
	if tooLarge {
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s (HTTP %d) is over 1 MiB", jobID, d.URL, resp.StatusCode)
	}
	if bodyErr != nil {
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s (HTTP %d) is not JSON: %w", jobID, d.URL, resp.StatusCode, bodyErr)
	}
	status, ok := field(body, d.StatusField)
	if !ok {
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s has no field %q", jobID, d.URL, d.StatusField)
	}
	if status == nil {
		// null can never equal success_value or failure_value; taking it for
		// "running" would poll forever.
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s has null in field %q", jobID, d.URL, d.StatusField)
	}
	got := text(status)
	if got == rawText(d.SuccessValue) {
		return orkstate.PollCompleted, "", nil
	}
	if len(d.FailureValue) > 0 && got == rawText(d.FailureValue) {
		if msg, ok := errorField(body); ok {
			return orkstate.PollFailed, msg, nil
		}
		return orkstate.PollFailed, fmt.Sprintf("%s is %q", d.StatusField, got), nil
	}
	return orkstate.PollRunning, "", nil
}

// errorField returns the answer's "error" field as a cleaned text, if it has a non-empty one.
func errorField(body any) (string, bool) {
	obj, ok := body.(map[string]any)
	if !ok {
		return "", false
	}
	v, ok := obj["error"]
	if !ok || v == nil {
		return "", false
	}
	msg := cleanText(text(v), httpMaxErrorText)
	return msg, msg != ""
}

// cleanText makes remote text safe to store: valid UTF-8, no NUL bytes, at most max bytes.
func cleanText(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// request parses job data, applies its defaults and builds the request.
func (h *HTTPTracker) request(ctx context.Context, jobData json.RawMessage) (*HTTPJobData, *http.Request, error) {
	var d HTTPJobData
	if len(jobData) == 0 {
		return nil, nil, errors.New("no job data")
	}
	if err := json.Unmarshal(jobData, &d); err != nil {
		return nil, nil, err
	}
	if d.URL == "" {
		return nil, nil, errors.New("url is required")
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("url: %w", err)
	}
	// url.Parse lowers the scheme: HTTP:// is http.
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, nil, fmt.Errorf("url %q is not http or https", d.URL)
	}
	if u.Host == "" {
		return nil, nil, fmt.Errorf("url %q has no host", d.URL)
	}
	d.Method = strings.ToUpper(d.Method)
	switch d.Method {
	case "":
		d.Method = http.MethodGet
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		return nil, nil, fmt.Errorf("method %q is not GET, POST, PUT or DELETE", d.Method)
	}
	for k, v := range d.Headers {
		if err := validHeader(k, v); err != nil {
			return nil, nil, err
		}
	}
	if d.StatusField == "" {
		d.StatusField = "status"
	}
	if len(d.SuccessValue) == 0 || string(d.SuccessValue) == "null" {
		d.SuccessValue = json.RawMessage(`"success"`)
	}
	if string(d.FailureValue) == "null" {
		d.FailureValue = nil
	}

	var body io.Reader
	jsonBody := false
	if len(d.Body) > 0 && string(d.Body) != "null" {
		var s string
		if err := json.Unmarshal(d.Body, &s); err == nil {
			body = strings.NewReader(s)
		} else {
			body = bytes.NewReader(d.Body)
			jsonBody = true
		}
	}
	req, err := http.NewRequestWithContext(ctx, d.Method, u.String(), body)
	if err != nil {
		return nil, nil, err
	}
	if jsonBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	return &d, req, nil
}

// validHeader refuses what net/http would refuse only when sending (so that a
// bad header fails the job instead of being retried): a name that is not an
// RFC 9110 token, a value with control characters such as CR or LF.
func validHeader(name, value string) error {
	if name == "" {
		return errors.New("header name is empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return fmt.Errorf("header name %q is not a valid HTTP token", name)
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("header %q has a control character (CR, LF, NUL, ...) in its value", name)
		}
	}
	return nil
}

// redirectRefusedError is a redirect the tracker does not follow.
type redirectRefusedError struct {
	to     string
	reason string
}

func (e *redirectRefusedError) Error() string {
	return fmt.Sprintf("redirect to %s refused: %s", e.to, e.reason)
}

// checkRedirect follows redirects within the job url's origin; see
// HTTPTrackerConfig.AllowCrossHostRedirects for the others.
func (h *HTTPTracker) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return &redirectRefusedError{to: req.URL.Redacted(), reason: "more than 10 redirects"}
	}
	if sameOrigin(req.URL, via[0].URL) {
		return nil
	}
	if !h.cfg.AllowCrossHostRedirects {
		return &redirectRefusedError{to: req.URL.Redacted(),
			reason: "another origin than " + origin(via[0].URL) + " (HTTPTrackerConfig.AllowCrossHostRedirects)"}
	}
	if req.Body != nil && req.Body != http.NoBody {
		return &redirectRefusedError{to: req.URL.Redacted(), reason: "it would resend the job's body to another origin"}
	}
	// net/http copied the first request's headers; none of the job's go to another origin.
	req.Header = http.Header{"Accept": []string{"application/json"}}
	return nil
}

// origin is a URL's scheme://host:port with the default port made explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func sameOrigin(a, b *url.URL) bool { return origin(a) == origin(b) }

// field finds name in a decoded JSON object: the top-level key, else a dotted path.
func field(body any, name string) (any, bool) {
	obj, ok := body.(map[string]any)
	if !ok {
		return nil, false
	}
	if v, ok := obj[name]; ok {
		return v, true
	}
	var cur any = obj
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// text is a decoded JSON value as text: a string as itself, anything else as compact JSON.
func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// rawText is text of an encoded JSON value.
func rawText(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	return text(v)
}
