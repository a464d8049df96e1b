package idp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/web"
)

// previewHeaderCSP: the HTML preview loads nothing from anywhere and runs
// nothing (sandbox: an opaque origin, no scripts, forms or popups), on
// top of the sanitizing every message gets; the org's images are inlined.
const previewHeaderCSP = "sandbox; " + notify.PreviewCSP + "; frame-ancestors 'none'"

// NotificationsPreview previews an org's messages as the running
// deployment would render them, with sample people, links and codes
// (ops listener: the operator's view; org admins get theirs with
// delegated administration). The JSON (no ?part) holds each part
// exactly as sent; ?part=subject|text|sms gives one part as it is, and
// ?part=html the HTML part as a preview document (notify.Preview) under
// previewHeaderCSP, with the org's branding images from brand.
func (h *Handler) NotificationsPreview(brand web.BlobSource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		org, ok := h.o.Orgs.BySlug(r.PathValue("org"))
		if !ok {
			http.Error(w, "no such org", http.StatusNotFound)
			return
		}
		kind := notify.Kind(r.PathValue("kind"))
		if !slices.Contains(notify.Kinds, kind) {
			http.Error(w, "unknown message: invitation, password_reset, mfa_code or new_sign_in", http.StatusNotFound)
			return
		}
		m, err := h.SampleMessage(org, kind)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		switch part := r.URL.Query().Get("part"); part {
		case "":
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false) // readable; served as JSON with nosniff
			enc.SetIndent("", "  ")
			_ = enc.Encode(map[string]string{"subject": m.Subject, "text": m.Text, "html": m.HTML, "sms": m.SMS})
		case "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", previewHeaderCSP)
			_, _ = w.Write([]byte(notify.Preview(m.HTML, func(src string) ([]byte, string, bool) {
				return brandImage(r.Context(), brand, src)
			})))
		case "subject", "text", "sms":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(map[string]string{"subject": m.Subject, "text": m.Text, "sms": m.SMS}[part]))
		default:
			http.Error(w, "part: subject, text, html or sms", http.StatusBadRequest)
		}
	}
}

// brandImage is the branding image a message's src names (the sanitizer
// let only Gatehouse's assets on the org's hosts through), read from the
// store, for a preview to inline.
func brandImage(ctx context.Context, brand web.BlobSource, src string) ([]byte, string, bool) {
	u, err := url.Parse(src)
	if err != nil || brand == nil {
		return nil, "", false
	}
	name, ok := strings.CutPrefix(u.Path, web.BrandPrefix)
	ctype := brandasset.Type(path.Ext(name))
	if !ok || ctype == "" || strings.ContainsAny(name, "/\\") || !strings.HasPrefix(ctype, "image/") {
		return nil, "", false
	}
	b, err := brand(ctx, name)
	if err != nil {
		return nil, "", false
	}
	return b, ctype, true
}
