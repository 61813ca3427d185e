package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newClusterCmd) }

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change cluster membership and leadership",
	}
	cmd.AddCommand(newClusterStatusCmd(), newClusterAddCmd(), newClusterRemoveCmd(), newClusterTransferCmd())
	return cmd
}

// statusNode is one member in `cluster status -o json`; the field set is
// part of the CLI's contract with scripts.
type statusNode struct {
	ID           string `json:"id"`
	GRPCAddress  string `json:"grpc_address"`
	RaftAddress  string `json:"raft_address"`
	Role         string `json:"role"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	PID          int64  `json:"pid"`
	Voter        bool   `json:"voter"`
	Note         string `json:"note"` // why a member could not be asked, or "leader catching up"; "" when none
}

// statusNote is what the NOTE column (and "note" in JSON) says of a member.
func statusNote(n interface {
	GetError() string
	GetRole() string
	GetReady() bool
}) string {
	if e := n.GetError(); e != "" {
		return e
	}
	if n.GetRole() == "leader" && !n.GetReady() {
		return "leader catching up"
	}
	return ""
}

func newClusterStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every member: role, term, commit and applied index, pid",
		Long: `Show every member as seen through one node, each member answering for itself;
a member that does not answer is "unreachable" (NOTE says why). With -o json
prints {"nodes":[{"id","grpc_address","raft_address","role","term","commit_index",
"applied_index","pid","voter","note"}]} with role one of leader, follower,
candidate, unreachable, and note "" unless the NOTE column says something.`,
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
			st, err := c.Status(cmd.Context())
			if err != nil {
				return clientErr(cmd, "cluster status", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				out := struct {
					Nodes []statusNode `json:"nodes"`
				}{Nodes: make([]statusNode, 0, len(st.GetNodes()))}
				for _, n := range st.GetNodes() {
					out.Nodes = append(out.Nodes, statusNode{ID: n.GetId(), GRPCAddress: n.GetGrpcAddress(), RaftAddress: n.GetRaftAddress(),
						Role: n.GetRole(), Term: n.GetTerm(), CommitIndex: n.GetCommitIndex(), AppliedIndex: n.GetAppliedIndex(), PID: n.GetPid(),
						Voter: n.GetVoter(), Note: statusNote(n)})
				}
				return printJSON(w, out)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tVOTER\tTERM\tCOMMIT\tAPPLIED\tPID\tGRPC\tRAFT\tNOTE")
			for _, n := range st.GetNodes() {
				voter := "no"
				if n.GetVoter() {
					voter = "yes"
				}
				note := statusNote(n)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", n.GetId(), n.GetRole(), voter, n.GetTerm(),
					n.GetCommitIndex(), n.GetAppliedIndex(), n.GetPid(), n.GetGrpcAddress(), n.GetRaftAddress(), note)
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func newClusterAddCmd() *cobra.Command {
	var grpcAddr string
	var nonVoter bool
	cmd := &cobra.Command{
		Use:   "add ID RAFTADDR",
		Short: "Add a member (start it first with `cairn serve` without --bootstrap)",
		Long: `Add member ID, reachable by its peers at RAFTADDR, as a voter (or a non-voter
that only replicates). Start the node first: cairn serve --node-id ID
--raft-addr RAFTADDR ... (no --bootstrap). --grpc-addr records its client
address at once, so that other members can forward to it; the node also
announces it itself when it starts.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.AddNode(cmd.Context(), args[0], args[1], grpcAddr, nonVoter); err != nil {
				return clientErr(cmd, "cluster add", err)
			}
			kind := "voter"
			if nonVoter {
				kind = "non-voter"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK added %s (%s) at %s\n", args[0], kind, args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&grpcAddr, "grpc-addr", "", "the new member's gRPC address")
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "add as a non-voter (replicates, does not vote)")
	return cmd
}

func newClusterRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.RemoveNode(cmd.Context(), args[0]); err != nil {
				return clientErr(cmd, "cluster remove", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK removed %s\n", args[0])
			return nil
		},
	}
}

func newClusterTransferCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Move leadership to ID (default: the most up-to-date follower)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			leader, err := c.TransferLeader(cmd.Context(), target)
			if err != nil {
				return clientErr(cmd, "cluster transfer-leader", err)
			}
			if leader == "" {
				leader = awaitLeaderID(cmd.Context(), c, 5*time.Second)
			}
			if leader == "" {
				fmt.Fprintln(cmd.OutOrStdout(), "OK leadership transferred; no new leader known yet")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK leader is %s\n", leader)
			return nil
		},
	}
}

// awaitLeaderID polls Status until the cluster names a leader: the node that
// gave up leadership may answer a transfer before it knows its successor.
func awaitLeaderID(ctx context.Context, c *api.Client, wait time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if st, err := c.Status(ctx); err == nil {
			for _, n := range st.GetNodes() {
				if n.GetRole() == "leader" {
					return n.GetId()
				}
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(50 * time.Millisecond):
		}
	}
}
