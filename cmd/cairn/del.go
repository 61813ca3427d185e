package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newDelCmd) }

func newDelCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete"},
		Short:   "Delete KEY (prints OK and the Raft index; deleting a missing key is not an error)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			idx, err := c.Delete(cmd.Context(), []byte(args[0]))
			if err != nil {
				return clientErr(cmd, "del", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK index=%d\n", idx)
			return nil
		},
	}
}
