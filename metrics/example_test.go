package metrics_test

import (
	"context"
	"log"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orkstate/orkstate/metrics"
	"github.com/orkstate/orkstate/pgstore"
)

// Mounting the handler: one registry with the install's metrics (and the Go
// runtime's), served on /metrics beside the application's own routes. Workers
// use the instrumented store so their claims and reports are timed.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@localhost:5432/postgres")
	if err != nil {
		log.Fatal(err)
	}
	store, err := pgstore.New(pool, &pgstore.Config{Schema: "ork"})
	if err != nil {
		log.Fatal(err)
	}
	m, err := metrics.New(store, &metrics.Config{ConstLabels: prometheus.Labels{"schema": store.Schema()}})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector())

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	workerStore := m.Instrument(store) // claim and report through this one
	_ = workerStore
	log.Fatal(http.ListenAndServe(":9100", mux))
}
