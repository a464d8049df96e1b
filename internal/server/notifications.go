package server

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/notify"
)

// notificationsHandler previews an org's messages as the running
// deployment would render them, with sample people, links and codes
// (ops listener: the operator's view; org admins get theirs with
// delegated administration). ?part=subject|text|html|sms gives one part
// as it is; the HTML part is served sandboxed, so a template's markup
// cannot run anything on the ops origin.
func notificationsHandler(orgs *idp.Directory, login *idp.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		org, ok := orgs.BySlug(r.PathValue("org"))
		if !ok {
			http.Error(w, "no such org", http.StatusNotFound)
			return
		}
		kind := notify.Kind(r.PathValue("kind"))
		if !slices.Contains(notify.Kinds, kind) {
			http.Error(w, "unknown message: invitation, password_reset, mfa_code or new_sign_in", http.StatusNotFound)
			return
		}
		m, err := login.SampleMessage(org, kind)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		switch part := r.URL.Query().Get("part"); part {
		case "":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false) // readable; served as JSON with nosniff
			enc.SetIndent("", "  ")
			_ = enc.Encode(map[string]string{"subject": m.Subject, "text": m.Text, "html": m.HTML, "sms": m.SMS})
		case "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'")
			_, _ = w.Write([]byte(m.HTML))
		case "subject", "text", "sms":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(map[string]string{"subject": m.Subject, "text": m.Text, "sms": m.SMS}[part]))
		default:
			http.Error(w, "part: subject, text, html or sms", http.StatusBadRequest)
		}
	}
}
