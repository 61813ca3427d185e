package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newPutCmd) }

func newPutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write KEY=VALUE (prints OK and the Raft index it was applied at)",
		Long: `Write KEY=VALUE through the leader. On success prints "OK index=N", N being the
Raft log index the write was applied at. A write whose outcome is unknown (the
leader failed mid-call) is reported as such and exits 1; it is not retried.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			idx, err := c.Put(cmd.Context(), []byte(args[0]), []byte(args[1]))
			if err != nil {
				return clientErr(cmd, "put", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK index=%d\n", idx)
			return nil
		},
	}
}
