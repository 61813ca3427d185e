// Command clickcount is an example exactly-once stream operator on cairn.
//
// It reads a replayable input of one key per line (the line number is the
// offset), adds 1 to clicks/<key> for every line, and every --batch lines
// commits the aggregated counts together with the input offset through one
// producer commit. Killed at any point and restarted, it resumes from the
// committed offset; the counts in cairn end up exact (nothing lost, nothing
// counted twice). See docs/exactly-once.md.
//
//	clickcount --gen 1000000 --keys 10000 --seed 1 --out clicks.txt
//	clickcount --input clicks.txt --producer clickcount [--batch 1000] [--endpoints 127.0.0.1:7101,...]
//	clickcount --verify --input clicks.txt [--producer clickcount]
//
// The endpoints default to $CAIRN_ENDPOINTS, else the addresses `cairn dev`
// listens on. The last line the operator and the verifier print on stdout
// is a JSON object, for scripts.
//
// Exit codes: 0 done, 1 failure (or a verify mismatch), 2 usage, 3 fenced
// by a newer instance of the same producer.
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/api"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // any failure; also a verify mismatch
	exitUsage  = 2
	exitFenced = 3 // a newer instance registered the same producer name
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	// operator and verify
	input, source, producer, prefix string
	endpoints                       []string
	batch                           int
	retryBudget                     time.Duration
	// modes
	verify bool
	gen    genConfig
	out    string
}

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "clickcount:", err)
		return exitUsage
	}
	if o.gen.Lines > 0 {
		if err := writeInput(o.out, o.gen); err != nil {
			fmt.Fprintln(stderr, "clickcount:", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "clickcount: wrote %d lines over %d keys (%s, seed %d) to %s\n", o.gen.Lines, o.gen.Keys, o.gen.Dist, o.gen.Seed, o.out)
		return exitOK
	}

	cfg := api.DefaultClientConfig(o.endpoints...)
	cfg.RetryBudget = o.retryBudget
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := api.NewClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "clickcount:", err)
		return exitUsage
	}
	defer c.Close()

	if o.verify {
		rep, err := verify(ctx, c, o.input, o.prefix, o.producer, o.source)
		if err != nil {
			fmt.Fprintln(stderr, "clickcount: verify:", err)
			return exitFailed
		}
		rep.print(stdout)
		if !rep.OK() {
			return exitFailed
		}
		return exitOK
	}

	sum, err := operate(ctx, c, operatorConfig{Input: o.input, Source: o.source, Producer: o.producer,
		Prefix: o.prefix, Batch: o.batch, Log: stderr})
	if sum != nil {
		sum.print(stdout)
	}
	switch {
	case errors.Is(err, api.ErrFenced) && sum != nil:
		fmt.Fprintf(stderr, "clickcount: fenced by a newer instance of producer %q: this instance (epoch %d) stops. "+
			"Its last batch (lines %d to %d) was not applied; the newer instance owns the producer and resumes from the committed offset.\n"+
			"clickcount: detail: %v\n", o.producer, sum.Epoch, sum.Offset, sum.Offset+sum.Pending-1, err)
		return exitFenced
	case err != nil:
		fmt.Fprintf(stderr, "clickcount: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("clickcount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var endpoints string
	fs.StringVar(&o.input, "input", "", "input file, one key per line (the line number is the offset)")
	fs.StringVar(&o.source, "source", "", "source name the offset is committed under (default: the input file's base name)")
	fs.StringVar(&o.producer, "producer", "", "producer name; one live instance per name (required to run; optional for --verify: also check its offset)")
	fs.StringVar(&o.prefix, "prefix", "clicks/", "key prefix of the counters")
	fs.StringVar(&endpoints, "endpoints", "", "cluster gRPC addresses, comma separated (default: $CAIRN_ENDPOINTS, else "+strings.Join(api.DefaultEndpoints, ",")+")")
	fs.IntVar(&o.batch, "batch", 1000, "input lines per commit")
	fs.DurationVar(&o.retryBudget, "retry-budget", 2*time.Minute, "how long one commit may retry (same sequence number) before the operator gives up")
	fs.BoolVar(&o.verify, "verify", false, "compare the counters in the cluster with exact counts from --input; exit 1 on any difference")
	fs.Int64Var(&o.gen.Lines, "gen", 0, "generate an input of this many lines into --out and exit")
	fs.IntVar(&o.gen.Keys, "keys", 1000, "with --gen: number of distinct keys")
	fs.Uint64Var(&o.gen.Seed, "seed", 1, "with --gen: random seed (same seed, same file)")
	fs.StringVar(&o.gen.Dist, "dist", "zipf", "with --gen: key distribution, zipf or uniform")
	fs.StringVar(&o.out, "out", "", "with --gen: output file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.gen.Lines > 0 {
		if o.out == "" {
			return nil, errors.New("--gen needs --out")
		}
		return o, o.gen.validate()
	}
	if o.input == "" {
		return nil, errors.New("--input is required (or --gen N --out FILE to make one)")
	}
	if !o.verify && o.producer == "" {
		return nil, errors.New("--producer is required")
	}
	if o.batch < 1 {
		return nil, fmt.Errorf("--batch must be >= 1, got %d", o.batch)
	}
	if o.prefix == "" {
		return nil, errors.New("--prefix must not be empty")
	}
	if o.source == "" {
		o.source = filepath.Base(o.input)
	}
	if endpoints == "" {
		endpoints = os.Getenv("CAIRN_ENDPOINTS")
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.endpoints = append(o.endpoints, e)
		}
	}
	return o, nil
}
