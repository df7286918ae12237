package triggerer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

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
//   - 2xx without the status field, or any answer that is not JSON → an error
//     (River retries; the job fails when the attempts run out);
//   - non-2xx → failed, with the answer's "error" field, else the HTTP status;
//   - a transport error or the poll timeout → an error.
//
// Values compare as text: a JSON string by its contents, any other value by its
// compact JSON, so success_value "1" matches a status of 1. Job data that cannot
// be used (not JSON, no url, an unknown method) fails the job at once: retrying
// would not fix it.
type HTTPTracker struct {
	// Client sends the requests. Defaults to http.DefaultClient; the poll's
	// context bounds every request, so Client needs no timeout of its own.
	Client *http.Client
}

// NewHTTPTracker returns an HTTPTracker that sends requests with client (nil:
// http.DefaultClient).
func NewHTTPTracker(client *http.Client) *HTTPTracker { return &HTTPTracker{Client: client} }

// ServiceType returns HTTPServiceType.
func (h *HTTPTracker) ServiceType() string { return HTTPServiceType }

// Poll sends one request and interprets the answer (see HTTPTracker).
func (h *HTTPTracker) Poll(ctx context.Context, jobID string, jobData json.RawMessage) (orkstate.PollResult, string, error) {
	d, req, err := h.request(ctx, jobData)
	if err != nil {
		return orkstate.PollFailed, fmt.Sprintf("http tracker: job %s: invalid job data: %v", jobID, err), nil
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("http tracker: job %s: %s %s: %w", jobID, req.Method, d.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, httpMaxBody))
	if err != nil {
		return "", "", fmt.Errorf("http tracker: job %s: read answer of %s: %w", jobID, d.URL, err)
	}

	var body any
	bodyErr := json.Unmarshal(raw, &body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if obj, ok := body.(map[string]any); ok && bodyErr == nil {
			if msg, ok := obj["error"]; ok && msg != nil && text(msg) != "" {
				return orkstate.PollFailed, text(msg), nil
			}
		}
		return orkstate.PollFailed, fmt.Sprintf("HTTP %s from %s", resp.Status, d.URL), nil
	}
	if bodyErr != nil {
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s (HTTP %d) is not JSON: %w", jobID, d.URL, resp.StatusCode, bodyErr)
	}
	status, ok := field(body, d.StatusField)
	if !ok {
		return "", "", fmt.Errorf("http tracker: job %s: answer of %s has no field %q", jobID, d.URL, d.StatusField)
	}
	got := text(status)
	if got == rawText(d.SuccessValue) {
		return orkstate.PollCompleted, "", nil
	}
	if len(d.FailureValue) > 0 && got == rawText(d.FailureValue) {
		if obj, ok := body.(map[string]any); ok {
			if msg, ok := obj["error"]; ok && msg != nil && text(msg) != "" {
				return orkstate.PollFailed, text(msg), nil
			}
		}
		return orkstate.PollFailed, fmt.Sprintf("%s is %q", d.StatusField, got), nil
	}
	return orkstate.PollRunning, "", nil
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
	if !strings.HasPrefix(d.URL, "http://") && !strings.HasPrefix(d.URL, "https://") {
		return nil, nil, fmt.Errorf("url %q is not http or https", d.URL)
	}
	d.Method = strings.ToUpper(d.Method)
	switch d.Method {
	case "":
		d.Method = http.MethodGet
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		return nil, nil, fmt.Errorf("method %q is not GET, POST, PUT or DELETE", d.Method)
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
	req, err := http.NewRequestWithContext(ctx, d.Method, d.URL, body)
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
