package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newCheckpointCmd) }

func newCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "checkpoint",
		Aliases: []string{"checkpoints"},
		Short:   "List, create, verify, pin and export checkpoints (raft snapshots)",
		Long: `Checkpoints are each node's raft snapshots: consistent Pebble checkpoints whose
files live once in the node's content-addressed store (docs/checkpoints.md).
Every node has its own catalog; --node names the one a command addresses:
a node id, "leader" (the default) or "follower" (the first voting follower
by id). Any endpoint serves any node's catalog.
A checkpoint is named by its id in that node's catalog, by the id it has on
the node that created it, or as "latest".`,
	}
	cmd.PersistentFlags().String("node", "", `node whose checkpoints to address: an id, "leader" or "follower" (default: the leader)`)
	cmd.AddCommand(newCheckpointListCmd(), newCheckpointShowCmd(), newCheckpointCreateCmd(), newCheckpointVerifyCmd(),
		newCheckpointPinCmd(true), newCheckpointPinCmd(false), newCheckpointExportCmd())
	return cmd
}

func nodeFlag(cmd *cobra.Command) string {
	n, _ := cmd.Flags().GetString("node")
	return n
}

// longCtx bounds a call that takes as long as the state is large (create,
// verify, export): only by --timeout when given, else until Ctrl-C.
func longCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if f := cmd.Flags().Lookup("timeout"); f != nil && f.Changed {
		d, _ := cmd.Flags().GetDuration("timeout")
		return context.WithTimeout(cmd.Context(), d)
	}
	return context.WithCancel(cmd.Context())
}

func newCheckpointListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a node's checkpoints, newest first, with its recovery estimate",
		Long: `List a node's checkpoints, newest first: id, raft index and term, creation
time and duration, state size, files, what is new versus shared with the
previous checkpoint, the last verification, and flags (pinned; pending: an
install from a peer not completed). Below each, the producers' committed
source offsets at its index. The header gives the node's recovery estimate:
entries applied since the newest checkpoint and the estimated time a restart
would spend replaying them. -o json prints the whole catalog.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Checkpoints(cmd.Context(), nodeFlag(cmd))
			if err != nil {
				return clientErr(cmd, "checkpoint list", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), l)
			}
			return printCheckpointList(cmd.OutOrStdout(), l)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func printCheckpointList(w io.Writer, l *api.CheckpointList) error {
	r := l.Recovery
	if r.CheckpointIndex == 0 {
		// No checkpoint yet: SinceCheckpoint would be the node's uptime.
		fmt.Fprintf(w, "node %s: applied index %d; no checkpoint yet, so a restart replays all %d entries; estimated replay %s",
			l.Node, r.AppliedIndex, r.EntriesSince, fmtDuration(r.EstimatedReplay))
	} else {
		fmt.Fprintf(w, "node %s: applied index %d; %d entries since the newest checkpoint (index %d, %s ago); estimated replay %s",
			l.Node, r.AppliedIndex, r.EntriesSince, r.CheckpointIndex, fmtDuration(r.SinceCheckpoint.Round(time.Millisecond)), fmtDuration(r.EstimatedReplay))
	}
	if r.Target > 0 {
		fmt.Fprintf(w, " (target %s)", r.Target)
	}
	fmt.Fprintln(w)
	if len(l.Checkpoints) == 0 {
		fmt.Fprintln(w, "no checkpoints")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tINDEX\tTERM\tCREATED\tTOOK\tSTATE\tFILES\tNEW\tSHARED\tVERIFIED\tFLAGS\tPRODUCERS (name@epoch seq [source=offset])")
	for _, ck := range l.Checkpoints {
		var flags []string
		if ck.Pinned {
			flags = append(flags, "pinned")
		}
		if ck.Pending {
			flags = append(flags, "pending")
		}
		if ck.Missing > 0 {
			flags = append(flags, fmt.Sprintf("%d-files-missing", ck.Missing))
		}
		if ck.Source != "" && ck.Source != l.Node {
			flags = append(flags, "from-"+ck.Source)
		}
		if ck.RebuiltFrom != "" {
			flags = append(flags, "delta-from-"+ck.RebuiltFrom)
		}
		created := "-"
		if !ck.Created.IsZero() {
			created = ck.Created.Local().Format("2006-01-02 15:04:05")
		}
		// Producers last: a trailing cell does not widen the columns.
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d / %s\t%d / %s\t%s\t%s\t%s\n", ck.ID, ck.Index, ck.Term, created,
			fmtDuration(ck.Duration), humanBytes(ck.StateBytes), ck.Files, ck.NewFiles, humanBytes(ck.NewBytes),
			ck.SharedFiles, humanBytes(ck.SharedBytes), ck.Verification.Status, orDash(strings.Join(flags, ",")), orDash(producersLine(ck.Producers, 6)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(l.Quarantined) > 0 {
		var n int64
		for _, q := range l.Quarantined {
			n += q.Size
		}
		fmt.Fprintf(w, "%d files (%s) are quarantined as corrupt on %s (snapshots/quarantine/ in its data dir)\n", len(l.Quarantined), humanBytes(n), l.Node)
	}
	return nil
}

// producersLine renders producers' offsets on one line, at most max
// sources per producer.
func producersLine(ps []api.CheckpointProducer, max int) string {
	var parts []string
	for _, p := range ps {
		offs := make([]string, 0, len(p.Offsets))
		for i, o := range p.Offsets {
			if max > 0 && i == max {
				offs = append(offs, fmt.Sprintf("(+%d more)", len(p.Offsets)-max))
				break
			}
			offs = append(offs, fmt.Sprintf("%s=%d", o.Source, o.Offset))
		}
		parts = append(parts, fmt.Sprintf("%s@%d seq=%d [%s]", p.Name, p.Epoch, p.LastSeq, strings.Join(offs, " ")))
	}
	return strings.Join(parts, "; ")
}

func newCheckpointShowCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one checkpoint: summary, producer offsets, raft configuration and files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.ShowCheckpoint(cmd.Context(), nodeFlag(cmd), args[0])
			if err != nil {
				return clientErr(cmd, "checkpoint show", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			return printCheckpointDetail(cmd.OutOrStdout(), d)
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func printCheckpointDetail(w io.Writer, d *api.CheckpointDetail) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	row("node", "%s", d.Node)
	row("id", "%s", d.ID)
	if d.RebuiltFrom != "" {
		row("checkpoint id", "%s (state rebuilt from %s's copy by a delta install; files this node's own, served by %s at %s)",
			d.CheckpointID, d.RebuiltFrom, d.Source, d.SourceAddr)
	} else {
		row("checkpoint id", "%s (created by %s at %s)", d.CheckpointID, d.Source, d.SourceAddr)
	}
	row("index / term", "%d / %d", d.Index, d.Term)
	if d.StateIndex > d.Index {
		row("state index", "%d (entries applied while the checkpoint was taken)", d.StateIndex)
	}
	if !d.Created.IsZero() {
		row("created", "%s, took %s", d.Created.Local().Format(time.RFC3339Nano), fmtDuration(d.Duration))
	}
	row("state", "%s in %d files (pebble format %d)", humanBytes(d.StateBytes), d.CheckpointInfo.Files, d.PebbleFormat)
	row("vs previous", "%d files / %s new, %d / %s shared (previous %s)", d.NewFiles, humanBytes(d.NewBytes), d.SharedFiles, humanBytes(d.SharedBytes), orDash(d.Previous))
	row("pinned / pending", "%v / %v", d.Pinned, d.Pending)
	if d.Missing > 0 {
		row("missing locally", "%d files", d.Missing)
	}
	v := d.Verification
	if v.Status == "unverified" {
		row("verified", "never")
	} else {
		row("verified", "%s at %s: %d stored files, %s checked, %d keys read %s", v.Status, v.At.Local().Format(time.RFC3339), v.FilesChecked, humanBytes(v.BytesChecked), v.Keys, v.Problem)
	}
	var conf []string
	for _, s := range d.Configuration {
		conf = append(conf, fmt.Sprintf("%s=%s (%s)", s.ID, s.Address, s.Suffrage))
	}
	row("raft configuration", "%s at index %d", strings.Join(conf, ", "), d.ConfigurationIndex)
	if len(d.Producers) == 0 {
		row("producers", "none")
	}
	for _, p := range d.Producers {
		row("producer "+p.Name, "%s", producersLine([]api.CheckpointProducer{p}, 0))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	files := append([]api.CheckpointFile(nil), d.FileList...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nFILE\tSIZE\tXXH3-128")
	for _, f := range files {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", f.Name, f.Size, f.Checksum)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newCheckpointCreateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Take a checkpoint (raft snapshot) on a node now and print its id",
		Long: `Take a checkpoint on the node --node names (default: the leader) and print its
id. A raft snapshot is per node: the leader's are the ones it sends to
followers that fell behind and the ones that let its log be truncated. A
savepoint to export can be taken on a follower instead (--node follower, then
export it with the same --node): every write waits for the leader, and in our
benchmark at 100 MiB a checkpoint on a follower cost a concurrent write load
about half as many writes as one on the leader
(docs/benchmarks-checkpoints.md). When nothing was applied since the node's
newest checkpoint, that one is printed and nothing is taken.
The raft log up to the checkpoint (minus --trailing-logs) may be truncated
afterwards, as with raft's own snapshots.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := longCtx(cmd)
			defer cancel()
			start := time.Now()
			cr, err := c.CreateCheckpoint(ctx, nodeFlag(cmd))
			if err != nil {
				return clientErr(cmd, "checkpoint create", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), struct {
					*api.CreatedCheckpoint
					LatencyNs time.Duration `json:"latency_ns"`
				}{cr, time.Since(start)})
			}
			ck := cr.Checkpoint
			if !cr.Created {
				fmt.Fprintf(cmd.ErrOrStderr(), "nothing applied on %s since checkpoint %s (index %d): none taken\n", cr.Node, ck.ID, ck.Index)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "checkpoint on %s at index %d: %s in %d files, %s new; took %s (call %s)\n", cr.Node, ck.Index,
					humanBytes(ck.StateBytes), ck.Files, humanBytes(ck.NewBytes), fmtDuration(ck.Duration), fmtDuration(time.Since(start)))
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), ck.ID)
			return err
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func newCheckpointVerifyCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "verify ID",
		Short: "Recheck a checkpoint's files against their checksums and open it read-only",
		Long: `Recheck every file of the checkpoint against its checksum and open it read-only
with Pebble, reading every key. A file that does not match is moved to the
node's quarantine (never linked into a DB or shipped again; the next install
fetches it from a peer). Exits 1 unless the checkpoint is ok.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := longCtx(cmd)
			defer cancel()
			v, err := c.VerifyCheckpoint(ctx, nodeFlag(cmd), args[0])
			if err != nil {
				return clientErr(cmd, "checkpoint verify", err)
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), v); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d stored files, %s checked, %d keys read\n", v.Status, v.FilesChecked, humanBytes(v.BytesChecked), v.Keys)
				for _, f := range v.Corrupt {
					fmt.Fprintf(cmd.OutOrStdout(), "  corrupt (quarantined): %s %s\n", f.Name, f.Checksum)
				}
				for _, f := range v.Missing {
					fmt.Fprintf(cmd.OutOrStdout(), "  missing: %s %s\n", f.Name, f.Checksum)
				}
				if v.Problem != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", v.Problem)
				}
			}
			if v.Status != "ok" {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func newCheckpointPinCmd(pin bool) *cobra.Command {
	use, short := "pin ID", "Keep a checkpoint whatever the retention, until unpinned"
	if !pin {
		use, short = "unpin ID", "Return a checkpoint to retention (which may remove it at once)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			op := c.PinCheckpoint
			if !pin {
				op = c.UnpinCheckpoint
			}
			verb := strings.Fields(use)[0]
			in, err := op(cmd.Context(), nodeFlag(cmd), args[0])
			if err != nil {
				return clientErr(cmd, "checkpoint "+verb, err)
			}
			switch {
			case in != nil:
				fmt.Fprintf(cmd.OutOrStdout(), "OK %sned %s\n", verb, in.ID) // "latest" resolved
			case pin:
				fmt.Fprintf(cmd.OutOrStdout(), "OK %sned %s\n", verb, args[0])
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "OK %sned %s (retention removed it)\n", verb, args[0])
			}
			return nil
		},
	}
}

func newCheckpointExportCmd() *cobra.Command {
	var to, output string
	cmd := &cobra.Command{
		Use:   "export ID --to URL",
		Short: "Upload a checkpoint to a bucket (a savepoint), with progress",
		Long: `Have the node upload checkpoint ID to the bucket at URL: the files the bucket
does not hold yet (matched by checksum, so later exports of the same cluster
ship only what changed), then the manifest, under checkpoints/<id>.json. The
node opens the URL: file:///path is a directory on the node's machine;
s3://bucket?region=...&prefix=... uses the node's AWS credentials (quote such
a URL for the shell). gs:// and azblob:// are not linked in by default: the
nodes need a cairn rebuilt with a file in cmd/cairn that imports
gocloud.dev/blob/gcsblob (or azureblob), after "go get" of that package or
"go mod tidy"; see docs/checkpoints.md. Progress (bytes, files, rate) is shown
on a terminal.
Restore from the bucket with "cairn restore --from URL/ID".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if to == "" {
				return errors.New("checkpoint export: --to URL is required")
			}
			to = withCreateDir(to)
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := longCtx(cmd)
			defer cancel()
			tty := isTerminal(cmd.ErrOrStderr())
			var last time.Time
			p, err := c.ExportCheckpoint(ctx, nodeFlag(cmd), args[0], to, func(p api.ExportProgress) {
				if tty && (time.Since(last) > 100*time.Millisecond || p.Done) {
					last = time.Now()
					fmt.Fprintf(cmd.ErrOrStderr(), "\r\033[K%s", progressLine(p))
				}
			})
			if tty {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			if err != nil {
				return clientErr(cmd, "checkpoint export", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s from %s to %s: uploaded %s (%s), already there %s (%s), in %s (%s/s)\n",
				p.CheckpointID, p.Node, to, nFiles(p.FilesUploaded), humanBytes(p.BytesUploaded), nFiles(p.FilesSkipped), humanBytes(p.BytesSkipped),
				fmtDuration(p.Elapsed), humanBytes(int64(p.Rate)))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "bucket URL (file:///dir, s3://bucket?region=..)")
	outputFlag(cmd, &output)
	return cmd
}

// withCreateDir makes a file:// bucket directory be created if missing
// (gocloud's fileblob otherwise requires it to exist).
func withCreateDir(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "file" || u.Query().Has("create_dir") {
		return s
	}
	q := u.Query()
	q.Set("create_dir", "true")
	u.RawQuery = q.Encode()
	return u.String()
}

// progressLine renders an export's progress for a terminal.
func progressLine(p api.ExportProgress) string {
	done := p.BytesUploaded + p.BytesSkipped
	pct := 100.0
	if p.BytesTotal > 0 {
		pct = 100 * float64(done) / float64(p.BytesTotal)
	}
	return fmt.Sprintf("%5.1f%%  %s / %s  files %d/%d (%d already in the bucket)  %s/s  %s",
		pct, humanBytes(done), humanBytes(p.BytesTotal), p.FilesDone, p.FilesTotal, p.FilesSkipped,
		humanBytes(int64(p.Rate)), fmtDuration(p.Elapsed.Round(100*time.Millisecond)))
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// nFiles is "1 file" or "N files".
func nFiles(n int64) string {
	if n == 1 {
		return "1 file"
	}
	return fmt.Sprintf("%d files", n)
}
