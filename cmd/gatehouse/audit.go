package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
)

// chainResult is one audit chain's check, as `audit verify` prints it and
// the ops listener's /audit/verify serves it.
type chainResult struct {
	Org    string `json:"org"` // slug; "(platform)"; an ID for a deleted org
	Events uint64 `json:"events"`
	Intact bool   `json:"intact"`
	Error  string `json:"error,omitempty"`
}

// verifyChains checks every audit chain in st, or only the org slug's.
func verifyChains(ctx context.Context, st store.Store, slug string) ([]chainResult, error) {
	heads, err := st.AuditHeads(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{"": "(platform)"}
	if orgs, err := st.ListOrgs(ctx); err == nil {
		for _, o := range orgs {
			names[o.ID] = o.Slug
		}
	}
	if slug != "" {
		o, err := st.GetOrgBySlug(ctx, slug)
		if err != nil {
			return nil, fmt.Errorf("org %s: %w", slug, err)
		}
		heads = slices.DeleteFunc(heads, func(h store.AuditChainHead) bool { return h.OrgID != o.ID })
		if len(heads) == 0 {
			heads = []store.AuditChainHead{{OrgID: o.ID}} // no events yet: an empty chain
		}
	}
	var out []chainResult
	for _, h := range heads {
		name, ok := names[h.OrgID]
		if !ok {
			name = h.OrgID + " (deleted org)"
		}
		n, err := store.VerifyAudit(ctx, st, h)
		r := chainResult{Org: name, Events: n, Intact: err == nil}
		if err != nil {
			r.Error = err.Error()
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b chainResult) int { return strings.Compare(a.Org, b.Org) })
	return out, nil
}

// auditVerifyHandler serves /audit/verify on the ops listener: the chains'
// lengths and whether each is intact, nothing of the events themselves.
func auditVerifyHandler(st store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := verifyChains(r.Context(), st, r.URL.Query().Get("org"))
		switch {
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
}

// auditVerify is `gatehouse audit verify`: it checks every org's audit
// hash chain (or one org's), in the store the config names or through a
// running deployment's ops listener, and exits 1 if any chain is broken,
// naming the first event at fault.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the deployment's config file: its store is opened (with Gatehouse stopped)")
	ops := fs.String("ops", "", "a running deployment's ops listener (http://127.0.0.1:9090) instead")
	slug := fs.String("org", "", "check only this org's chain (slug)")
	if err := fs.Parse(args); err != nil || (*cfgPath == "") == (*ops == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gatehouse audit verify (--config FILE | --ops URL) [--org SLUG]")
		return 2
	}
	var res []chainResult
	var err error
	if *ops != "" {
		res, err = verifyRemote(ctx, *ops, *slug)
	} else {
		res, err = verifyLocal(ctx, *cfgPath, *slug)
	}
	if err != nil {
		fmt.Fprintln(stderr, "audit verify:", err)
		return 1
	}
	broken := 0
	for _, r := range res {
		if !r.Intact {
			broken++
			fmt.Fprintf(stdout, "%s: BROKEN after %d intact events: %s\n", r.Org, r.Events, r.Error)
			continue
		}
		fmt.Fprintf(stdout, "%s: %d events, chain intact\n", r.Org, r.Events)
	}
	if broken > 0 {
		return 1
	}
	return 0
}

func verifyLocal(ctx context.Context, cfgPath, slug string) ([]chainResult, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			err = fmt.Errorf("%w (the embedded store allows one process: use --ops with a running Gatehouse, or verify a copy of its data folder)", err)
		}
		return nil, err
	}
	defer st.Close()
	return verifyChains(ctx, st, slug)
}

func verifyRemote(ctx context.Context, ops, slug string) ([]chainResult, error) {
	u, err := url.Parse(strings.TrimSuffix(ops, "/") + "/audit/verify")
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--ops %q: not a URL like http://127.0.0.1:9090", ops)
	}
	if slug != "" {
		u.RawQuery = url.Values{"org": {slug}}.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(b)))
	}
	var res []chainResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&res); err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	return res, nil
}
