package main

// `cairn debug raft-log`: an offline reader of a stopped node's raft log,
// used by `cairn jepsen run` to find which client requests reached the
// committed log (request ids, producer sequence numbers).

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/jepsen/raftlog"
	"github.com/cairn-db/cairn/raftnode"
)

func init() { extraCommands = append(extraCommands, newDebugRaftLogParentCmd) }

func newDebugRaftLogParentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "debug", Short: "Offline inspection of a stopped node's data"}
	cmd.AddCommand(newDebugRaftLogCmd())
	return cmd
}

func newDebugRaftLogCmd() *cobra.Command {
	var dataDir, output string
	var commitIndex uint64
	var all bool
	cmd := &cobra.Command{
		Use:   "raft-log",
		Short: "Print the committed entries of a stopped node's raft log",
		Long: `Print the entries of DIR/raft/raft.db or DIR/raft/wal (bolt opened read-only; the node must be
stopped): index, term, raft type, and for cairn commands the command type,
client request id and producer (id, epoch, seq).

Raft does not persist its commit index. An entry is listed as committed when
it is at or below --commit-index, or by default at or below the state
machine's persisted applied index (only committed entries are applied).
Entries above that bound are counted in "omitted" unless --all is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return errors.New("--data-dir is required")
			}
			if output != "json" && output != "text" {
				return fmt.Errorf("-o must be json or text, not %q", output)
			}
			d, err := readRaftLog(dataDir, commitIndex, all)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(d)
			}
			return printRaftLogText(cmd.OutOrStdout(), d)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the node's --data-dir (required)")
	f.StringVarP(&output, "output", "o", "text", "output format: json or text")
	f.Uint64Var(&commitIndex, "commit-index", 0, "treat entries up to this index as committed (default: the state machine's applied index)")
	f.BoolVar(&all, "all", false, "also list entries above the commit bound (marked committed=false)")
	return cmd
}

func readRaftLog(dataDir string, commitIndex uint64, all bool) (*raftlog.Dump, error) {
	path := filepath.Join(dataDir, "raft")
	store, closeStore, err := raftnode.OpenLogForInspection(path)
	if err != nil {
		if errors.Is(err, raftnode.ErrLogLocked) {
			return nil, fmt.Errorf("raft log in %s is locked: is the node still running? %w", path, err)
		}
		return nil, fmt.Errorf("open raft log in %s: %w", path, err)
	}
	defer closeStore()
	d := &raftlog.Dump{DataDir: dataDir, Entries: []raftlog.Entry{}}
	if d.FirstIndex, err = store.FirstIndex(); err != nil {
		return nil, fmt.Errorf("raft log first index: %w", err)
	}
	if d.LastIndex, err = store.LastIndex(); err != nil {
		return nil, fmt.Errorf("raft log last index: %w", err)
	}
	d.Snapshots = listSnapshots(filepath.Join(dataDir, "raft", "snapshots"))
	switch {
	case commitIndex > 0:
		d.CommitIndex, d.CommitSource = commitIndex, raftlog.CommitFromFlag
	default:
		if idx, err := readAppliedIndex(filepath.Join(dataDir, "state", "db")); err == nil {
			d.CommitIndex, d.CommitSource = idx, raftlog.CommitFromFSM
		} else {
			d.CommitSource = raftlog.CommitUnknown
			fmt.Fprintf(os.Stderr, "cairn debug raft-log: no commit bound (%v); use --commit-index or --all\n", err)
		}
	}
	if d.FirstIndex == 0 {
		return d, nil
	}
	for i := d.FirstIndex; i <= d.LastIndex; i++ {
		committed := i <= d.CommitIndex
		if !committed && !all {
			d.Omitted++
			continue
		}
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			d.Entries = append(d.Entries, raftlog.Entry{Index: i, Committed: committed, Error: err.Error()})
			continue
		}
		d.Entries = append(d.Entries, describeLog(&l, committed))
	}
	return d, nil
}

func describeLog(l *raft.Log, committed bool) raftlog.Entry {
	e := raftlog.Entry{Index: l.Index, Term: l.Term, Type: l.Type.String(), Committed: committed, AppendedAt: l.AppendedAt}
	switch l.Type {
	case raft.LogConfiguration:
		conf := raft.DecodeConfiguration(l.Data)
		for _, s := range conf.Servers {
			e.Servers = append(e.Servers, raftlog.Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
		}
	case raft.LogCommand:
		c, err := command.Decode(l.Data)
		if err != nil {
			e.Error = err.Error()
			return e
		}
		e.Command = c.Type.String()
		switch c.Type {
		case command.TypeBatch:
			e.RequestID, e.Ops = c.Batch.RequestID, len(c.Batch.Ops)
			if p := c.Batch.Producer; p != nil {
				e.Producer = &raftlog.Producer{ID: p.ID, Epoch: p.Epoch, Seq: p.Seq}
			}
		case command.TypeRegisterProducer:
			e.RequestID, e.ProducerName = c.RegisterProducer.RequestID, c.RegisterProducer.Name
		case command.TypeSetNodeMeta:
			e.NodeID, e.GRPCAddr = c.SetNodeMeta.NodeID, c.SetNodeMeta.GRPCAddr
		}
	}
	return e
}

// readAppliedIndex reads the state machine's applied index from its Pebble
// directory, opened read-only. The key layout is fsm's (keys.go: the
// metadata prefix 0x00 then 'a'; 8 bytes index + 8 bytes term, big endian),
// persisted and therefore stable.
func readAppliedIndex(dir string) (uint64, error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, err
	}
	o := fsm.PebbleOptions(vfs.Default)
	o.ReadOnly = true
	db, err := pebble.Open(dir, o)
	if err != nil {
		return 0, fmt.Errorf("open state %s read-only: %w", dir, err)
	}
	defer db.Close()
	v, closer, err := db.Get([]byte{0x00, 'a'})
	if err != nil {
		return 0, fmt.Errorf("read applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 16 {
		return 0, fmt.Errorf("applied index of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func listSnapshots(dir string) []raftlog.Snapshot {
	metas, _ := filepath.Glob(filepath.Join(dir, "*", "meta.json"))
	var out []raftlog.Snapshot
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var s raftlog.Snapshot
		if json.Unmarshal(b, &s) == nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func printRaftLogText(w io.Writer, d *raftlog.Dump) error {
	fmt.Fprintf(w, "# %s: first %d, last %d, committed up to %d (%s), %d omitted\n",
		d.DataDir, d.FirstIndex, d.LastIndex, d.CommitIndex, d.CommitSource, d.Omitted)
	for _, s := range d.Snapshots {
		fmt.Fprintf(w, "# snapshot %s at index %d term %d\n", s.ID, s.Index, s.Term)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tTERM\tTYPE\tCOMMAND\tREQUEST\tDETAIL")
	for _, e := range d.Entries {
		detail := ""
		switch {
		case e.Error != "":
			detail = "error: " + e.Error
		case e.Producer != nil:
			detail = fmt.Sprintf("producer %d epoch %d seq %d, %d ops", e.Producer.ID, e.Producer.Epoch, e.Producer.Seq, e.Ops)
		case e.Command == "batch":
			detail = fmt.Sprintf("%d ops", e.Ops)
		case e.ProducerName != "":
			detail = "name " + e.ProducerName
		case e.NodeID != "":
			detail = e.NodeID + " " + e.GRPCAddr
		case len(e.Servers) > 0:
			for i, s := range e.Servers {
				if i > 0 {
					detail += " "
				}
				detail += s.ID
				if !s.Voter {
					detail += "(nonvoter)"
				}
			}
		}
		if !e.Committed {
			detail += " [not known committed]"
		}
		req := ""
		if e.RequestID != 0 {
			req = fmt.Sprint(e.RequestID)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", e.Index, e.Term, e.Type, e.Command, req, detail)
	}
	return tw.Flush()
}
