package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/admin"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
)

// adminBootstrap is `gatehouse admin bootstrap`: it makes the first
// platform admin API token in a stopped deployment's store and prints it
// once, so that a deployment can be administered before anyone signs in.
// The event is in the platform's audit chain.
func adminBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("admin bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the deployment's config file: its store is opened (with Gatehouse stopped)")
	name := fs.String("name", "bootstrap", "what the token is for")
	expires := fs.Duration("expires-in", 24*time.Hour, "the token's lifetime (at most 8784h)")
	if err := fs.Parse(args); err != nil || *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gatehouse admin bootstrap --config FILE [--name NAME] [--expires-in 24h]")
		return 2
	}
	if *expires < time.Minute || *expires > admin.MaxTokenLifetime {
		fmt.Fprintf(stderr, "admin bootstrap: --expires-in must be from 1m to %s\n", admin.MaxTokenLifetime)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	st, err := openStore(context.Background(), cfg.Store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			err = fmt.Errorf("%w (the embedded store allows one process: stop Gatehouse first, or have a platform admin from admin.platform_admins sign in and make a token with the API)", err)
		}
		fmt.Fprintln(stderr, "admin bootstrap:", err)
		return 1
	}
	defer st.Close()
	now := time.Now()
	t, err := admin.MintToken(ctx, st, "", store.RolePlatformAdmin, *name, "", now, *expires)
	if err == nil {
		err = st.AppendAudit(ctx, store.AuditEvent{Time: now, Actor: "cli:admin bootstrap", Action: "token.create", Target: t.ID, Outcome: "success",
			Details: map[string]string{"role": t.Role, "name": t.Name, "expires_at": t.ExpiresAt.Format(time.RFC3339)}})
	}
	if err != nil {
		fmt.Fprintln(stderr, "admin bootstrap:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Platform admin token %s (expires %s). It is shown once; keep it secret:\n\n%s\n", t.ID, t.ExpiresAt.Format(time.RFC3339), t.Secret)
	return 0
}
