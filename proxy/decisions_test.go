package proxy

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/policy"
)

// keyOf is decisionKey for in's request, its headers and the raw query q
// sent as an HTTP request.
func keyOf(in *policy.Input, q string, r policy.Reads) string {
	hr := &http.Request{URL: &url.URL{RawQuery: q}, Header: http.Header{}}
	for k, v := range in.Request.Headers {
		hr.Header.Set(k, v)
	}
	return decisionKey(&in.Request, hr, r)
}

// With every field read (a policy reading input.request whole), every
// per-request field but the time is part of the key; with some read, only
// those; and no value can pass for another field.
func TestDecisionKeyCoversReadFields(t *testing.T) {
	all := policy.Reads{All: true}
	base := func() *policy.Input {
		return &policy.Input{Request: policy.Request{Method: "GET", Host: "a.example.com", Path: "/x", MatchPath: "/x", ClientAddr: "203.0.113.1",
			Headers: map[string]string{"user-agent": "ua", "accept": "text/html"}}}
	}
	k0 := keyOf(base(), "q=1", all)
	changes := map[string]func(*policy.Input) string{
		"method":      func(in *policy.Input) string { in.Request.Method = "POST"; return "q=1" },
		"host":        func(in *policy.Input) string { in.Request.Host = "b.example.com"; return "q=1" },
		"path":        func(in *policy.Input) string { in.Request.Path = "/y"; return "q=1" },
		"match_path":  func(in *policy.Input) string { in.Request.MatchPath = "/y"; return "q=1" },
		"query":       func(in *policy.Input) string { return "q=2" },
		"client_addr": func(in *policy.Input) string { in.Request.ClientAddr = "203.0.113.2"; return "q=1" },
		"headers":     func(in *policy.Input) string { in.Request.Headers["user-agent"] = "other"; return "q=1" },
	}
	for name, change := range changes {
		in := base()
		q := change(in)
		if keyOf(in, q, all) == k0 {
			t.Errorf("all read, %s changed: same key", name)
		}
		// Read alone, its change changes the key; every other change
		// does not.
		only := policy.Reads{Fields: []string{name}}
		k1 := keyOf(base(), "q=1", only)
		for other, change2 := range changes {
			in := base()
			q := change2(in)
			if same := keyOf(in, q, only) == k1; same != (other != name) {
				t.Errorf("only %s read, %s changed: same key %v", name, other, same)
			}
		}
	}
	in := base()
	in.Request.TimeNS = 12345
	if keyOf(in, "q=1", all) != k0 {
		t.Error("time is part of the key")
	}
	// Boundaries cannot shift: a path holding what would follow it.
	a, b := base(), base()
	a.Request.Path, a.Request.MatchPath = "/x\x00query\x00q=1", ""
	b.Request.MatchPath = ""
	if keyOf(a, "", policy.Reads{Fields: []string{"path", "query"}}) == keyOf(b, "q=1", policy.Reads{Fields: []string{"path", "query"}}) {
		t.Error("a path passed for a query")
	}
}

// With no field read, every request shares the key "" (nothing hashed).
func TestDecisionKeyOfNothingRead(t *testing.T) {
	in := &policy.Input{Request: policy.Request{Method: "GET", Path: "/x"}}
	if k := keyOf(in, "q=1", policy.Reads{Tested: []string{"path"}}); k != "" {
		t.Errorf("key %q", k)
	}
}
