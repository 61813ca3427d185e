package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newPutCmd) }

// maxPutValue bounds what put reads from a file or stdin: the nodes' gRPC
// receive limit (8 MiB, internal/node), above any value they accept.
const maxPutValue = 8 << 20

func newPutCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "Set KEY to VALUE (prints OK and the Raft index it was applied at)",
		Long: `Set KEY to VALUE through the leader. On success prints "OK index=N", N being
the Raft log index the write was applied at. A write whose outcome is unknown
(the leader failed mid-call) is reported as such and exits 1; it is not retried.

The value is VALUE; or, when VALUE is omitted, the bytes of --file PATH, or of
stdin (--file -, or stdin redirected or piped), taken exactly as they are (no
trailing newline is removed: echo adds one, printf does not). On Linux one
command-line argument holds at most 128 KiB; the nodes accept values up to
their --max-value-bytes (default 1 MiB), so pass larger ones this way.

  cairn put greeting hello
  cairn put config --file config.json
  cairn put config < config.json
  ./render-config | cairn put config --file -`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := putValue(cmd, args, file)
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			idx, err := c.Put(cmd.Context(), []byte(args[0]), value)
			if err != nil {
				return clientErr(cmd, "put", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK index=%d\n", idx)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", `read the value from this file ("-": stdin) instead of the VALUE argument`)
	return cmd
}

// putValue returns the value put writes: the VALUE argument, else the
// contents of --file (stdin for "-"), else stdin unless it is a terminal.
func putValue(cmd *cobra.Command, args []string, file string) ([]byte, error) {
	fileSet := cmd.Flags().Changed("file")
	switch {
	case len(args) == 2 && fileSet:
		return nil, errors.New("put: give VALUE or --file, not both")
	case len(args) == 2:
		return []byte(args[1]), nil
	case fileSet && file == "":
		return nil, errors.New(`put: --file needs a path ("-" for stdin)`)
	}
	name, r := "stdin", cmd.InOrStdin()
	if fileSet && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("put: %w", err)
		}
		defer f.Close()
		name, r = file, f
	} else if !fileSet && isTerminalReader(r) {
		return nil, errors.New("put: missing VALUE: give it as an argument, with --file PATH, or on stdin (cairn put KEY < PATH)")
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPutValue+1))
	if err != nil {
		return nil, fmt.Errorf("put: reading %s: %w", name, err)
	}
	if len(b) > maxPutValue {
		return nil, fmt.Errorf("put: %s holds more than %d bytes; the nodes accept values up to their --max-value-bytes (default 1 MiB)", name, maxPutValue)
	}
	return b, nil
}

// isTerminalReader reports whether r is a terminal (an interactive stdin).
func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
