package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/pgstore"
)

// openStore opens the backend the config names.
func openStore(ctx context.Context, c config.Store, log *slog.Logger, reg prometheus.Registerer) (store.Store, error) {
	if pg := c.Postgres; pg != nil {
		return pgstore.Open(ctx, pg.DSN, pgstore.Options{MaxConns: pg.MaxConns, MinConns: pg.MinConns, Timeout: pg.Timeout, Registerer: reg, Logger: log})
	}
	return badgerstore.Open(c.Badger.Path, badgerstore.WithLogger(log))
}
