package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/pgstore"
)

// storeCopy moves a deployment's store to another backend:
// gatehouse store copy --from badger:PATH --to postgres:DSN (or back).
func storeCopy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the store to copy: badger:PATH or postgres:DSN")
	to := fs.String("to", "", "a new, empty store: badger:PATH or postgres:DSN")
	if err := fs.Parse(args); err != nil || *from == "" || *to == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gatehouse store copy --from badger:PATH|postgres:DSN --to badger:PATH|postgres:DSN")
		return 2
	}
	src, err := openSpec(ctx, *from)
	if err != nil {
		fmt.Fprintln(stderr, "store copy: --from:", err)
		return 1
	}
	defer src.Close()
	dst, err := openSpec(ctx, *to)
	if err != nil {
		fmt.Fprintln(stderr, "store copy: --to:", err)
		return 1
	}
	defer dst.Close()
	start := time.Now()
	n, err := store.Copy(ctx, src, dst)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "copied %d records from %s to %s in %s; verified: every record, index and audit chain\n",
		n, specName(*from), specName(*to), time.Since(start).Round(time.Millisecond))
	return 0
}

// openSpec opens "badger:PATH" or "postgres:DSN".
func openSpec(ctx context.Context, spec string) (store.Backend, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case arg == "":
		return nil, fmt.Errorf("%q: write badger:PATH or postgres:DSN", specName(spec))
	case kind == "badger":
		st, err := badgerstore.Open(arg, badgerstore.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil && strings.Contains(err.Error(), "lock") {
			err = fmt.Errorf("%w (the embedded store allows one process: stop Gatehouse first)", err)
		}
		return st, err
	case kind == "postgres":
		return pgstore.Open(ctx, arg, pgstore.Options{MaxConns: 4, MinConns: 1})
	}
	return nil, fmt.Errorf("%q: write badger:PATH or postgres:DSN", specName(spec))
}

// specName names a store without its DSN (it may hold a password).
func specName(spec string) string {
	kind, arg, _ := strings.Cut(spec, ":")
	if kind == "badger" {
		return spec
	}
	if kind == "postgres" && arg != "" {
		return "postgres"
	}
	return kind
}
