package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
)

// auditVerify is `gatehouse audit verify`: it checks every org's audit
// hash chain (or one org's) in the store the config names, and exits 1
// on the first break of any chain, naming the event.
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the deployment's config file (its store is checked)")
	slug := fs.String("org", "", "check only this org's chain (slug)")
	if err := fs.Parse(args); err != nil || *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gatehouse audit verify --config FILE [--org SLUG]")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	st, err := badgerstore.Open(cfg.Store.Badger.Path, badgerstore.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			err = fmt.Errorf("%w (the embedded store allows one process: stop Gatehouse, or verify a copy of its data folder)", err)
		}
		fmt.Fprintln(stderr, "audit verify:", err)
		return 1
	}
	defer st.Close()
	heads, err := st.AuditHeads(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "audit verify:", err)
		return 1
	}
	names := map[string]string{"": "(platform)"}
	if orgs, err := st.ListOrgs(ctx); err == nil {
		for _, o := range orgs {
			names[o.ID] = o.Slug
		}
	}
	if *slug != "" {
		o, err := st.GetOrgBySlug(ctx, *slug)
		if err != nil {
			fmt.Fprintf(stderr, "audit verify: org %s: %v\n", *slug, err)
			return 1
		}
		heads = slices.DeleteFunc(heads, func(h store.AuditChainHead) bool { return h.OrgID != o.ID })
		if len(heads) == 0 {
			heads = []store.AuditChainHead{{OrgID: o.ID}} // no events yet: an empty chain
		}
	}
	slices.SortFunc(heads, func(a, b store.AuditChainHead) int { return strings.Compare(names[a.OrgID], names[b.OrgID]) })
	broken := 0
	for _, h := range heads {
		name := names[h.OrgID]
		if name == "" {
			name = h.OrgID + " (deleted org)"
		}
		n, err := store.VerifyAudit(ctx, st, h)
		if err != nil {
			broken++
			fmt.Fprintf(stdout, "%s: BROKEN after %d intact events: %v\n", name, n, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: %d events, chain intact\n", name, n)
	}
	if broken > 0 {
		return 1
	}
	return 0
}
