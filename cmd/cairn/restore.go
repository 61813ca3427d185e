package main

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

func init() { extraCommands = append(extraCommands, newRestoreCmd) }

// checkpointIDRe matches the ids of checkpoints (raft snapshot ids:
// term-index-unixms, with a .N suffix when one millisecond had several).
var checkpointIDRe = regexp.MustCompile(`^[0-9]+-[0-9]+-[0-9]+(\.[0-9]+)?$`)

// splitCheckpointURL splits URL/ID into the bucket URL and the checkpoint
// id, when the last path element looks like a checkpoint id.
func splitCheckpointURL(s string) (bucket, id string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "", "", fmt.Errorf("--from %q: not a bucket URL (e.g. file:///backups/cairn, s3://bucket?region=...)", s)
	}
	base := path.Base(u.Path)
	base = strings.TrimSuffix(base, ".json")
	if checkpointIDRe.MatchString(base) {
		id = base
		u.Path = path.Dir(u.Path)
		if path.Base(u.Path) == "checkpoints" { // the manifest's own URL
			u.Path = path.Dir(u.Path)
		}
		if u.Path == "/" && u.Scheme != "file" {
			u.Path = ""
		}
		u.RawPath = ""
	}
	return u.String(), id, nil
}

func newRestoreCmd() *cobra.Command {
	var from, checkpoint, bootstrap, raftAddr, grpcAdv string
	var list bool
	cfg := node.RestoreConfig{}
	cmd := &cobra.Command{
		Use:   "restore --from URL[/ID] --data-dir DIR --node-id ID --bootstrap n1=RAFTADDR,...",
		Short: "Prepare a data dir from an exported checkpoint, for a new cluster",
		Long: `Prepare --data-dir from a checkpoint exported with "cairn checkpoint export", so
that "cairn serve" on it starts a member of a NEW cluster holding that state:
the same keys and values, the same producer sessions and committed source
offsets (so producers resume exactly where the checkpoint was taken).

--from is the bucket URL, optionally followed by /ID (default: the newest
checkpoint in the bucket; --list shows them). Prepare every member of the new
cluster with the same checkpoint and the same --bootstrap list (ids and raft
addresses of all members, as "cairn serve --bootstrap" takes it), then start
each with "cairn serve --node-id ID --data-dir DIR --raft-addr ..." (a
--bootstrap given to serve is ignored on a prepared dir). Without
--bootstrap the new cluster has one member: --node-id at --raft-addr.

What it does: downloads and verifies every file into DIR/state/db, records
the checkpoint as the node's raft snapshot at its index and term with the
new configuration (so that the new log continues above the restored state),
and raises the raft term to the checkpoint's. DIR must hold no state; on
failure what was created is removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			if from == "" {
				return errors.New("restore: --from URL is required")
			}
			bucketURL, id, err := splitCheckpointURL(from)
			if err != nil {
				return err
			}
			if checkpoint != "" {
				bucketURL, id = from, checkpoint
			}
			ctx := cmd.Context()
			b, err := snapshot.OpenBucket(ctx, bucketURL)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			defer b.Close()
			if list {
				ms, err := snapshot.Exported(ctx, b)
				if err != nil {
					return fmt.Errorf("restore: list %s: %w", bucketURL, err)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CHECKPOINT\tINDEX\tTERM\tCREATED\tSTATE\tFILES\tSOURCE")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\n", m.ID, m.Index, m.Term, m.Created.Local().Format("2006-01-02 15:04:05"),
						humanBytes(m.StateBytes), len(m.Files), m.Source.NodeID)
				}
				return tw.Flush()
			}
			if cfg.DataDir == "" || cfg.NodeID == "" {
				return errors.New("restore: --data-dir and --node-id are required")
			}
			peers, err := parsePeers(bootstrap)
			if err != nil {
				return err
			}
			if len(peers) == 0 {
				peers, err = parsePeers(cfg.NodeID + "=" + raftAddr)
				if err != nil {
					return err
				}
			}
			cfg.Bucket, cfg.Checkpoint, cfg.Peers, cfg.GRPCAdvertise = b, id, peers, grpcAdv
			res, err := node.Restore(ctx, cfg)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			m := res.Manifest
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "restored checkpoint %s (index %d, term %d, %s in %d files, taken on %s at %s) into %s\n",
				m.ID, m.Index, m.Term, humanBytes(m.StateBytes), len(m.Files), m.Source.NodeID, m.Created.Local().Format("2006-01-02 15:04:05"), cfg.DataDir)
			var members []string
			for _, p := range peers {
				members = append(members, p.ID+"="+p.Addr)
			}
			fmt.Fprintf(w, "new cluster: %s\n", strings.Join(members, ","))
			fmt.Fprintf(w, "start it with: cairn serve --node-id %s --data-dir %s --raft-addr %s ...\n", cfg.NodeID, cfg.DataDir, addrOf(peers, cfg.NodeID))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "bucket URL, optionally /CHECKPOINT-ID (default: the newest checkpoint)")
	f.StringVar(&checkpoint, "checkpoint", "", "checkpoint id (instead of a /ID suffix of --from)")
	f.BoolVar(&list, "list", false, "list the checkpoints in the bucket and exit")
	f.StringVar(&cfg.DataDir, "data-dir", "", "the new node's data directory (must hold no state)")
	f.StringVar(&cfg.NodeID, "node-id", "", "the new node's id")
	f.StringVar(&bootstrap, "bootstrap", "", "members of the new cluster n1=RAFTADDR,n2=RAFTADDR,... (the same on every node)")
	f.StringVar(&raftAddr, "raft-addr", "127.0.0.1:7201", "raft address of a single-member cluster (without --bootstrap)")
	f.StringVar(&grpcAdv, "grpc-advertise", "", "the node's gRPC address, recorded as where peers fetch the checkpoint's files")
	return cmd
}

func addrOf(peers []raftnode.Peer, id string) string {
	for _, p := range peers {
		if p.ID == id {
			return p.Addr
		}
	}
	return ""
}
