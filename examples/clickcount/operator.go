package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// operatorConfig is one run of the operator.
type operatorConfig struct {
	Input    string // one key per line
	Source   string // the offset is committed under this source name
	Producer string
	Prefix   string // counters live at Prefix+key
	Batch    int    // input lines per commit
	Log      io.Writer
}

// summary is what a run did. The JSON form is the last line on stdout.
type summary struct {
	Producer    string `json:"producer"`
	Source      string `json:"source"`
	Epoch       uint64 `json:"epoch"`
	ResumedFrom int64  `json:"resumed_from"` // offset committed before this run
	Offset      int64  `json:"offset"`       // offset committed when the run ended
	Lines       int64  `json:"lines"`        // input lines committed by this run
	Skipped     int64  `json:"skipped"`      // empty lines (counted in the offset, not as keys)
	Commits     int    `json:"commits"`
	Pending     int64  `json:"pending"` // lines read but not committed when the run ended
	ElapsedMs   int64  `json:"elapsed_ms"`
	// Client counters (api.Stats).
	Calls           uint64 `json:"calls"`
	Retries         uint64 `json:"retries"`
	Redirects       uint64 `json:"redirects"`
	Duplicates      uint64 `json:"duplicates"`
	Fenced          uint64 `json:"fenced"`
	UnknownOutcomes uint64 `json:"unknown_outcomes"`
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "clickcount: producer %q epoch %d, source %q: resumed from offset %d, committed %d lines in %d commits, now at offset %d (%.1fs)\n",
		s.Producer, s.Epoch, s.Source, s.ResumedFrom, s.Lines, s.Commits, s.Offset, float64(s.ElapsedMs)/1000)
	fmt.Fprintf(w, "client: retries=%d duplicates=%d fenced=%d unknown_outcomes=%d redirects=%d calls=%d\n",
		s.Retries, s.Duplicates, s.Fenced, s.UnknownOutcomes, s.Redirects, s.Calls)
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "%s\n", b)
}

// operate runs the operator to the end of its input. The summary is
// returned even with an error, as far as the run got; an error wrapping
// api.ErrFenced means a newer instance took over.
//
// The exactly-once argument: the counts for lines [from, to) and the offset
// to are one producer commit, applied atomically and at most once (the
// client re-sends the same sequence number until the outcome is known; the
// server answers a re-sent one as a duplicate without applying it again).
// A restarted instance registers, which fences any older one, and resumes
// at the committed offset: every line is counted in exactly one applied
// commit. After any commit error the run stops instead of passing the
// batch to another Commit: the handle may still hold the failed commit and
// re-send it, and the same ops under a new sequence number would count the
// batch twice. The restarted instance's registration settles it.
func operate(ctx context.Context, c *api.Client, cfg operatorConfig) (*summary, error) {
	start := time.Now()
	sum := &summary{Producer: cfg.Producer, Source: cfg.Source}
	defer func() {
		st := c.Stats()
		sum.Calls, sum.Retries, sum.Redirects = st.Calls, st.Retries, st.Redirects
		sum.Duplicates, sum.Fenced, sum.UnknownOutcomes = st.Duplicates, st.Fenced, st.UnknownOutcomes
		sum.ElapsedMs = time.Since(start).Milliseconds()
	}()

	// Open the input first: registering fences any running instance of
	// this producer, which a typo in --input must not do.
	f, err := os.Open(cfg.Input)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := c.RegisterProducer(ctx, cfg.Producer, api.DefaultProducerOptions())
	if err != nil {
		return nil, fmt.Errorf("register producer %q: %w", cfg.Producer, err)
	}
	sum.Epoch = p.Epoch()
	sum.ResumedFrom = p.Offsets()[cfg.Source]
	sum.Offset = sum.ResumedFrom
	fmt.Fprintf(cfg.Log, "clickcount: producer %q registered with epoch %d; source %q resumes at offset %d\n",
		cfg.Producer, sum.Epoch, cfg.Source, sum.ResumedFrom)

	sc := bufio.NewScanner(bufio.NewReaderSize(f, 1<<16))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)

	// Skip what earlier instances committed.
	var offset int64
	for offset < sum.ResumedFrom && sc.Scan() {
		offset++
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("read %s: %w", cfg.Input, err)
	}
	if offset < sum.ResumedFrom {
		return sum, fmt.Errorf("%s has %d lines but producer %q committed offset %d for source %q: not the same input?",
			cfg.Input, offset, cfg.Producer, sum.ResumedFrom, cfg.Source)
	}

	counts := map[string]int64{}
	commit := func() error {
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.Sort(keys) // same batch, same command: easier to read in the log
		ops := make([]*pb.Op, len(keys))
		for i, k := range keys {
			ops[i] = api.AddOp([]byte(cfg.Prefix+k), counts[k])
		}
		if _, err := p.Commit(ctx, ops, map[string]int64{cfg.Source: offset}); err != nil {
			return fmt.Errorf("commit of offsets %d..%d (%d keys): %w", sum.Offset, offset, len(keys), err)
		}
		sum.Commits++
		sum.Lines += offset - sum.Offset
		sum.Offset, sum.Pending = offset, 0
		clear(counts)
		return nil
	}
	for sc.Scan() {
		if key := sc.Text(); key != "" {
			counts[key]++
		} else {
			sum.Skipped++
		}
		offset++
		sum.Pending++
		if sum.Pending == int64(cfg.Batch) {
			if err := commit(); err != nil {
				return sum, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("read %s at line %d: %w", cfg.Input, offset, err)
	}
	if sum.Pending > 0 {
		if err := commit(); err != nil {
			return sum, err
		}
	}
	return sum, nil
}
