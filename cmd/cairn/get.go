package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newGetCmd) }

func newGetCmd() *cobra.Command {
	var consistency, output string
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read KEY and print its value",
		Long: `Read KEY and print its value: bytes as they are, integers (from add/min/max
operations) in decimal. A missing key prints "not found" on stderr and exits 1.
With -o json prints {"key":..,"value":..,"type":"int"|"bytes","index":N}, where
index is the applied index the read was served at; a value or key that is not
valid UTF-8 is base64 and flagged by "encoding"/"key_encoding":"base64".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cons, err := parseConsistency(consistency)
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			key := []byte(args[0])
			v, idx, err := c.Get(cmd.Context(), key, api.WithConsistency(cons))
			if errors.Is(err, api.ErrNotFound) {
				return &exitError{code: 1, msg: fmt.Sprintf("cairn: get: key %s not found", textField(key))}
			}
			if err != nil {
				return clientErr(cmd, "get", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), struct {
					jsonKV
					Index uint64 `json:"index"`
				}{toJSONKV(key, v), idx})
			}
			w := cmd.OutOrStdout()
			if v.IsInt {
				_, err = fmt.Fprintln(w, v.Int)
				return err
			}
			if _, err = w.Write(v.Bytes); err == nil {
				_, err = fmt.Fprintln(w)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale (stale is served by whichever node answers)")
	outputFlag(cmd, &output)
	return cmd
}
