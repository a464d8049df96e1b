package proxy

import (
	"testing"

	"github.com/gatehouse/gatehouse/policy"
)

// Every per-request input field but the time must be part of the key:
// a policy may read any of them.
func TestDecisionKeyCoversRequestFields(t *testing.T) {
	base := func() *policy.Input {
		return &policy.Input{Request: policy.Request{Method: "GET", Host: "a.example.com", Path: "/x", ClientAddr: "203.0.113.1",
			Headers: map[string]string{"user-agent": "ua", "accept": "text/html"}}}
	}
	k0 := decisionKey(base(), "q=1")
	for name, change := range map[string]func(*policy.Input) string{
		"method":  func(in *policy.Input) string { in.Request.Method = "POST"; return "q=1" },
		"host":    func(in *policy.Input) string { in.Request.Host = "b.example.com"; return "q=1" },
		"path":    func(in *policy.Input) string { in.Request.Path = "/y"; return "q=1" },
		"query":   func(in *policy.Input) string { return "q=2" },
		"client":  func(in *policy.Input) string { in.Request.ClientAddr = "203.0.113.2"; return "q=1" },
		"header":  func(in *policy.Input) string { in.Request.Headers["user-agent"] = "other"; return "q=1" },
		"origin":  func(in *policy.Input) string { in.Request.Headers["origin"] = "https://x"; return "q=1" },
		"shifted": func(in *policy.Input) string { in.Request.Path = "/x\x00q=1"; return "" },
	} {
		in := base()
		q := change(in)
		if decisionKey(in, q) == k0 {
			t.Errorf("%s: same key", name)
		}
	}
	in := base()
	in.Request.TimeNS = 12345
	if decisionKey(in, "q=1") != k0 {
		t.Error("time is part of the key")
	}
}
