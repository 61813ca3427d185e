package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/cairn-db/cairn/api"
)

// countInput returns the exact count per key of an input file and its
// number of lines (empty lines count as lines, not as keys).
func countInput(path string) (map[string]int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	counts := map[string]int64{}
	var lines int64
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 1<<16))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		lines++
		if k := sc.Text(); k != "" {
			counts[k]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return counts, lines, nil
}

// scanCounters reads every counter under prefix, page by page, with
// linearizable reads. Keys are returned without the prefix; a value that
// is not an integer is reported in bad.
func scanCounters(ctx context.Context, c *api.Client, prefix string) (got map[string]int64, bad []string, err error) {
	got = map[string]int64{}
	so := api.ScanOptions{Prefix: []byte(prefix), Limit: 5000}
	for {
		kvs, next, err := c.Scan(ctx, so)
		if err != nil {
			return nil, nil, fmt.Errorf("scan %q: %w", prefix, err)
		}
		for _, kv := range kvs {
			k := strings.TrimPrefix(string(kv.Key), prefix)
			if !kv.Value.IsInt {
				bad = append(bad, k)
				continue
			}
			got[k] = kv.Value.Int
		}
		if next == nil {
			return got, bad, nil
		}
		so.Start = next
	}
}

// mismatch is one key whose counter differs from the input.
type mismatch struct {
	Key  string `json:"key"`
	Want int64  `json:"want"`
	Got  int64  `json:"got"`
}

// verifyReport compares the input with the cluster.
type verifyReport struct {
	Lines         int64      `json:"lines"`
	Keys          int        `json:"keys"`       // distinct keys in the input
	Counters      int        `json:"counters"`   // counters found in the cluster
	WantTotal     int64      `json:"want_total"` // sum of exact counts
	GotTotal      int64      `json:"got_total"`  // sum of the counters
	Lost          int64      `json:"lost"`       // clicks missing, over all keys
	LostKeys      int        `json:"lost_keys"`  // keys counted too low (or missing)
	Duplicated    int64      `json:"duplicated"` // clicks counted too often, over all keys
	DupKeys       int        `json:"dup_keys"`   // keys counted too high (or not in the input)
	NotInts       []string   `json:"not_ints"`   // counters holding bytes
	Producer      string     `json:"producer,omitempty"`
	Source        string     `json:"source,omitempty"`
	Offset        int64      `json:"offset"` // producer's committed offset (-1 unchecked)
	OffsetProblem string     `json:"offset_problem,omitempty"`
	Examples      []mismatch `json:"examples,omitempty"` // the first mismatches, by key
}

// OK reports an exact match.
func (r *verifyReport) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && len(r.NotInts) == 0 && r.OffsetProblem == ""
}

func (r *verifyReport) print(w io.Writer) {
	verdict := "OK: every counter is exact"
	if !r.OK() {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(w, "verify: %s\n", verdict)
	fmt.Fprintf(w, "verify: %d lines, %d keys in the input, %d counters in the cluster; total want %d got %d\n",
		r.Lines, r.Keys, r.Counters, r.WantTotal, r.GotTotal)
	fmt.Fprintf(w, "verify: lost %d clicks over %d keys, duplicated %d clicks over %d keys\n",
		r.Lost, r.LostKeys, r.Duplicated, r.DupKeys)
	for _, m := range r.Examples {
		fmt.Fprintf(w, "verify:   %s: want %d, got %d (%+d)\n", m.Key, m.Want, m.Got, m.Got-m.Want)
	}
	if len(r.NotInts) > 0 {
		fmt.Fprintf(w, "verify: %d counters hold bytes, not integers: %q\n", len(r.NotInts), r.NotInts)
	}
	if r.Producer != "" {
		fmt.Fprintf(w, "verify: producer %q committed offset %d for source %q\n", r.Producer, r.Offset, r.Source)
	}
	if r.OffsetProblem != "" {
		fmt.Fprintf(w, "verify: %s\n", r.OffsetProblem)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}

const maxExamples = 20

// verify compares exact counts from input with the counters under prefix,
// and, when producer is set, checks that it committed the whole input for
// source.
func verify(ctx context.Context, c *api.Client, input, prefix, producer, source string) (*verifyReport, error) {
	want, lines, err := countInput(input)
	if err != nil {
		return nil, err
	}
	got, bad, err := scanCounters(ctx, c, prefix)
	if err != nil {
		return nil, err
	}
	r := compareCounts(want, got)
	r.Lines, r.NotInts, r.Offset = lines, bad, -1
	if producer != "" {
		r.Producer, r.Source = producer, source
		resp, err := c.GetOffsets(ctx, producer)
		if err != nil {
			return nil, fmt.Errorf("offsets of producer %q: %w", producer, err)
		}
		r.Offset = 0
		for _, o := range resp.GetOffsets() {
			if o.GetSource() == source {
				r.Offset = o.GetOffset()
			}
		}
		if r.Offset != lines {
			r.OffsetProblem = fmt.Sprintf("committed offset %d != %d input lines", r.Offset, lines)
		}
	}
	return r, nil
}

// compareCounts diffs exact counts against counters.
func compareCounts(want, got map[string]int64) *verifyReport {
	r := &verifyReport{Keys: len(want), Counters: len(got)}
	keys := make([]string, 0, len(want)+len(got))
	for k, n := range want {
		keys = append(keys, k)
		r.WantTotal += n
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
		r.GotTotal += n
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, g := want[k], got[k]
		switch {
		case g < w:
			r.Lost += w - g
			r.LostKeys++
		case g > w:
			r.Duplicated += g - w
			r.DupKeys++
		default:
			continue
		}
		if len(r.Examples) < maxExamples {
			r.Examples = append(r.Examples, mismatch{Key: k, Want: w, Got: g})
		}
	}
	return r
}
