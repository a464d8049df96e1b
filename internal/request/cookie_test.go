package request

import (
	"net/http"
	"testing"
)

// Only the form browsers send is read as a Gatehouse cookie.
func TestCookieValue(t *testing.T) {
	tests := []struct {
		lines  []string
		want   string
		wantOK bool
	}{
		{[]string{"sid=abc"}, "abc", true},
		{[]string{"app=1; sid=abc"}, "abc", true},
		{[]string{"app=1;sid=abc"}, "abc", true},
		{[]string{"app=1", "sid=abc"}, "abc", true},
		{[]string{"sid =abc"}, "", false},
		{[]string{"sid\t=abc"}, "", false},
		{[]string{" sid = abc"}, "", false},
		{[]string{"sid= abc"}, "", false},
		{[]string{"sid=abc "}, "", false},
		{[]string{`sid="abc"`}, "", false},
		{[]string{"sid="}, "", false},
		{[]string{"sid"}, "", false},
		{[]string{"SID=abc"}, "", false},
		{[]string{"xsid=abc; sidx=abc"}, "", false},
		{[]string{"sid =bad; sid=good"}, "good", true},
		{[]string{"sid=a,b"}, "", false},
		{nil, "", false},
	}
	for _, tt := range tests {
		r := &http.Request{Header: http.Header{"Cookie": tt.lines}}
		got, ok := CookieValue(r, "sid")
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("CookieValue(%q) = %q, %v; want %q, %v", tt.lines, got, ok, tt.want, tt.wantOK)
		}
	}
}
