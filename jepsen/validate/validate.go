// Package validate turns what a run recorded into a verdict: it merges the
// nodes' committed raft logs, checks them against each other, resolves the
// history's unknown outcomes with them (the way etcd's robustness tests
// patch histories from the WAL), and runs linearizability.Check.
package validate

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/raftlog"
	"github.com/cairn-db/cairn/linearizability"
)

// CheckerRaftLog names anomalies found in the raft logs themselves.
const CheckerRaftLog = "raft-log"

// Anomaly types found in the logs.
const (
	// AnomalyLogDivergence: two nodes hold different committed entries at
	// one index (Raft's log matching / state machine safety violated).
	AnomalyLogDivergence linearizability.AnomalyType = "committed-log-divergence"
	// AnomalyDuplicateRequest: one client request id was committed twice:
	// a write the client believed unsent was retried and applied again.
	AnomalyDuplicateRequest linearizability.AnomalyType = "duplicate-request-in-log"
)

// LogSummary describes the merged committed log.
type LogSummary struct {
	Nodes map[string]NodeLog `json:"nodes"`
	// Entries is the number of distinct committed indexes found; MaxIndex
	// the highest. Complete: every index from 1 to MaxIndex was found on
	// some node, so a request id absent from it was never committed.
	Entries  int      `json:"entries"`
	MaxIndex uint64   `json:"max_index"`
	Complete bool     `json:"complete"`
	Missing  string   `json:"missing,omitempty"`
	Requests int      `json:"requests"` // entries carrying a request id
	Warnings []string `json:"warnings,omitempty"`
}

// NodeLog is one node's dump, summarised.
type NodeLog struct {
	First        uint64 `json:"first_index"`
	Last         uint64 `json:"last_index"`
	Commit       uint64 `json:"commit_index"`
	CommitSource string `json:"commit_source"`
	Listed       int    `json:"listed"`
	Snapshots    int    `json:"snapshots"`
	Error        string `json:"error,omitempty"`
}

// Merge unions the committed entries of every node's dump (errs holds the
// nodes whose log could not be read) and reports entries that disagree.
func Merge(dumps map[string]*raftlog.Dump, errs map[string]error) ([]raftlog.Entry, LogSummary, []linearizability.Anomaly) {
	sum := LogSummary{Nodes: map[string]NodeLog{}}
	byIndex := map[uint64]raftlog.Entry{}
	from := map[uint64]string{}
	var anomalies []linearizability.Anomaly
	nodes := make([]string, 0, len(dumps))
	for id := range dumps {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	for id, err := range errs {
		sum.Nodes[id] = NodeLog{Error: err.Error()}
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("%s: raft log unreadable: %v", id, err))
	}
	for _, id := range nodes {
		d := dumps[id]
		nl := NodeLog{First: d.FirstIndex, Last: d.LastIndex, Commit: d.CommitIndex, CommitSource: d.CommitSource, Snapshots: len(d.Snapshots)}
		if d.CommitSource == raftlog.CommitUnknown {
			sum.Warnings = append(sum.Warnings, id+": no commit bound: its entries are not used")
		}
		if d.FirstIndex > 1 {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("%s: log compacted up to index %d (snapshots: %d)", id, d.FirstIndex-1, len(d.Snapshots)))
		}
		for _, e := range d.Entries {
			if !e.Committed || e.Error != "" {
				continue
			}
			nl.Listed++
			prev, seen := byIndex[e.Index]
			if !seen {
				byIndex[e.Index], from[e.Index] = e, id
				continue
			}
			if prev.Term != e.Term || prev.RequestID != e.RequestID || prev.Command != e.Command {
				anomalies = append(anomalies, linearizability.Anomaly{
					Checker: CheckerRaftLog, Type: AnomalyLogDivergence, Occurrences: 1,
					Description: fmt.Sprintf("committed index %d differs: %s has term %d %s request %d, %s has term %d %s request %d",
						e.Index, from[e.Index], prev.Term, prev.Command, prev.RequestID, id, e.Term, e.Command, e.RequestID),
				})
			}
		}
		sum.Nodes[id] = nl
	}
	out := make([]raftlog.Entry, 0, len(byIndex))
	for _, e := range byIndex {
		out = append(out, e)
		sum.MaxIndex = max(sum.MaxIndex, e.Index)
		if e.RequestID != 0 {
			sum.Requests++
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	sum.Entries = len(out)
	sum.Complete = len(errs) == 0 && uint64(len(out)) == sum.MaxIndex
	if !sum.Complete && uint64(len(out)) != sum.MaxIndex {
		sum.Missing = missing(out, sum.MaxIndex)
		sum.Warnings = append(sum.Warnings, "no node holds the whole committed log (compacted everywhere or unreadable): "+
			"unknown writes not found in it stay unknown")
	}
	// One request id committed twice (producer attempts have their own ids).
	seen := map[uint64]uint64{}
	for _, e := range out {
		if e.Command != "batch" || e.RequestID == 0 {
			continue
		}
		if first, dup := seen[e.RequestID]; dup {
			opID, _ := client.OpID(e.RequestID)
			anomalies = append(anomalies, linearizability.Anomaly{
				Checker: CheckerRaftLog, Type: AnomalyDuplicateRequest, Ops: []string{opID}, Occurrences: 1,
				Description: fmt.Sprintf("request %s (id %d) was committed at index %d and again at index %d: a write was sent twice", opID, e.RequestID, first, e.Index),
			})
			continue
		}
		seen[e.RequestID] = e.Index
	}
	return out, sum, anomalies
}

func missing(entries []raftlog.Entry, maxIndex uint64) string {
	have := map[uint64]bool{}
	for _, e := range entries {
		have[e.Index] = true
	}
	var ranges []string
	for i := uint64(1); i <= maxIndex; i++ {
		if have[i] {
			continue
		}
		j := i
		for j+1 <= maxIndex && !have[j+1] {
			j++
		}
		if i == j {
			ranges = append(ranges, strconv.FormatUint(i, 10))
		} else {
			ranges = append(ranges, fmt.Sprintf("%d-%d", i, j))
		}
		if len(ranges) == 10 {
			ranges = append(ranges, "…")
			break
		}
		i = j
	}
	return fmt.Sprint(ranges)
}

// producerSeq identifies one producer commit.
type producerSeq struct{ id, epoch, seq uint64 }

// appliedCommits replays producer sessions over the committed log with the
// store's rules (fsm checkProducer): a register entry opens the next epoch
// of its name (the producer id is the index of the name's first
// registration); a commit applies only in the current epoch with the next
// sequence number. Session expiry (idle for days of log time) is ignored.
func appliedCommits(entries []raftlog.Entry) map[producerSeq]bool {
	type session struct{ epoch, last uint64 }
	ids := map[string]uint64{}
	sessions := map[uint64]*session{}
	applied := map[producerSeq]bool{}
	for _, e := range entries {
		switch {
		case e.Command == "register-producer" && e.ProducerName != "":
			id, ok := ids[e.ProducerName]
			if !ok {
				id = e.Index
				ids[e.ProducerName] = id
				sessions[id] = &session{}
			}
			s := sessions[id]
			s.epoch, s.last = s.epoch+1, 0
		case e.Command == "batch" && e.Producer != nil:
			s := sessions[e.Producer.ID]
			if s == nil || e.Producer.Epoch != s.epoch || e.Producer.Seq != s.last+1 {
				continue
			}
			s.last = e.Producer.Seq
			applied[producerSeq{e.Producer.ID, e.Producer.Epoch, e.Producer.Seq}] = true
		}
	}
	return applied
}

// contiguousSuffix returns the entries from the last gap on: the longest
// run of consecutive indexes that ends at the highest one. entries are
// sorted by index.
func contiguousSuffix(entries []raftlog.Entry) []raftlog.Entry {
	i := len(entries) - 1
	for i > 0 && entries[i-1].Index+1 == entries[i].Index {
		i--
	}
	if i < 0 {
		return nil
	}
	return entries[i:]
}

// Committed returns the history ids of unknown writes that the committed
// log shows took effect. For register and bank a write took effect if its
// request id is in the log (a failed compare-and-set in the log took
// effect as a no-op, which the models handle). For counter and window an
// attempt took effect if some attempt of its (producer, epoch, seq) was
// applied by the replay of producer sessions. complete says the entries are the whole
// committed log from index 1; if not, the replay runs over the contiguous
// suffix only, and a session is followed only from a registration found
// there: a producer registered before the suffix starts is not followed
// (a re-registration in the suffix opens a session under an id no commit
// carries), so none of its attempts is resolved.
func Committed(h linearizability.History, kind linearizability.Kind, entries []raftlog.Entry, complete bool) map[string]bool {
	out := map[string]bool{}
	if kind == linearizability.KindCounter || kind == linearizability.KindWindow {
		if !complete {
			entries = contiguousSuffix(entries)
		}
		applied := appliedCommits(entries)
		for i := range h {
			op := &h[i]
			if (op.Type != linearizability.OpAdd && op.Type != linearizability.OpWindowCommit) || op.Outcome != linearizability.OutcomeUnknown {
				continue
			}
			id, err := strconv.ParseUint(op.Producer, 10, 64)
			if err == nil && applied[producerSeq{id, op.Epoch, op.Seq}] {
				out[op.ID] = true
			}
		}
		return out
	}
	for _, e := range entries {
		if e.Command == "batch" && e.RequestID != 0 {
			if id, ok := client.OpID(e.RequestID); ok {
				out[id] = true
			}
		}
	}
	return out
}

// Resolve patches the history's unknown writes from the merged log. With a
// complete log, unknown writes not found are resolved as never applied
// (linearizability.ResolveUnknowns); with an incomplete one (compacted on
// every node) only those found are resolved, the rest stay unknown —
// may have happened — and are counted as unresolved.
func Resolve(h linearizability.History, kind linearizability.Kind, entries []raftlog.Entry, complete bool) (linearizability.History, linearizability.ResolveStats) {
	committed := Committed(h, kind, entries, complete)
	if complete {
		return linearizability.ResolveUnknowns(h, committed)
	}
	out := make(linearizability.History, len(h))
	copy(out, h)
	var st linearizability.ResolveStats
	for i := range out {
		op := &out[i]
		if op.Outcome != linearizability.OutcomeUnknown {
			continue
		}
		if !op.Type.IsWrite() {
			st.Reads++
			continue
		}
		if committed[op.ID] {
			op.Outcome, op.Return, op.Resolved = linearizability.OutcomeOK, linearizability.InfiniteReturn, linearizability.ResolvedCommitted
			st.Committed++
		} else {
			st.Unresolved++
		}
	}
	return out, st
}
