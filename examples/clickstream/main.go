// Command clickstream counts page views per page per minute in a cairn
// windowed table, from a deterministic, out-of-order clickstream, and
// checks the result against a reference computed locally from the same
// input.
//
// The stream (seeded) has views whose event times arrive up to
// --out-of-order late, plus a fraction of stragglers delayed by up to 3
// minutes more. One exactly-once producer sends the views as window events
// in batches, each commit carrying the watermark "largest event time seen
// minus --out-of-order"; a last commit flushes with a watermark past the
// last window. The table (tumbling 1m count, --lateness) counts a view iff
// the table watermark at its commit had not reached its window's end plus
// the lateness; later views are counted as late instead. A watcher
// receives every final window result once; at the end the program prints
// the per-minute counts read from the table and the late count, and
// verifies the table, the late counts (per commit) and the watched results
// against the reference. See docs/windows.md.
//
//	cairn dev &                      # a local 3-node cluster
//	go run ./examples/clickstream    # --seed 1 --minutes 10 --per-minute 600 --pages 6
//
// Exit codes: 0 verified, 1 failure or mismatch, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("clickstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	eps := fs.String("endpoints", os.Getenv("CAIRN_ENDPOINTS"), "comma-separated gRPC addresses (default: $CAIRN_ENDPOINTS, else the `cairn dev` ones)")
	drop := fs.Bool("drop", false, "drop the table first if it exists")
	fs.StringVar(&cfg.Table, "table", cfg.Table, "table name")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed of the generated stream")
	fs.IntVar(&cfg.Minutes, "minutes", cfg.Minutes, "minutes of event time")
	fs.IntVar(&cfg.PerMinute, "per-minute", cfg.PerMinute, "page views per minute")
	fs.IntVar(&cfg.Pages, "pages", cfg.Pages, "number of pages")
	fs.DurationVar(&cfg.Lateness, "lateness", cfg.Lateness, "allowed lateness of the table")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "retention of closed windows")
	fs.DurationVar(&cfg.OutOfOrder, "out-of-order", cfg.OutOfOrder, "usual maximum delay of a view; the watermark trails the largest event time by this")
	fs.Float64Var(&cfg.LateFraction, "late-fraction", cfg.LateFraction, "fraction of views delayed by up to 3 minutes more")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "views per producer commit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "clickstream:", err)
		return 2
	}
	var endpoints []string
	for _, e := range strings.Split(*eps, ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	ccfg := api.DefaultClientConfig(endpoints...)
	ccfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := api.NewClient(ccfg)
	if err != nil {
		fmt.Fprintln(stderr, "clickstream:", err)
		return 2
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, c, cfg, *drop, Hooks{}, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "clickstream:", err)
		return 1
	}
	rep.Print(stdout)
	if !rep.OK() {
		return 1
	}
	return 0
}
