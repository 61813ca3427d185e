package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newWatchCmd) }

// jsonClosed is the JSON form of one watched result.
type jsonClosed struct {
	Position string `json:"position"`
	Index    uint64 `json:"index"`
	Ord      uint32 `json:"ord"`
	jsonWindow
}

func newWatchCmd() *cobra.Command {
	var from, output string
	var count int
	cmd := &cobra.Command{
		Use:   "watch TABLE",
		Short: "Print each final window result of TABLE as it closes, until Ctrl-C",
		Long: `Print every final (closed) window result of TABLE, one line each, in the
order they were published, then keep printing new ones as windows close, until
Ctrl-C (or --count results). Each line starts with the result's position
INDEX/ORD; --from POSITION resumes strictly after it (default: from the oldest
result still retained). If the connection or the node is lost, the watch
resumes on another endpoint without skipping or repeating a result. A
position whose results already expired fails with "trimmed" (exit 1).

Text: POSITION KEY START END VALUE count=N
JSON (-o json), one object per line: {"position":"INDEX/ORD","index":..,
"ord":..,"key":..,"start":ms,"end":ms,"start_time":..,"end_time":..,
"value":N|null,"type":"int"|"float"|"null","count":N}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if count < 0 {
				return fmt.Errorf("--count must be >= 0")
			}
			var pos api.Position
			if from != "" {
				var err error
				if pos, err = api.ParsePosition(from); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			w := cmd.OutOrStdout()
			n := 0
			err = c.Watch(ctx, args[0], pos, func(cw api.ClosedWindow) error {
				if output == "json" {
					if err := printJSON(w, jsonClosed{Position: cw.Position.String(), Index: cw.Position.Index, Ord: cw.Position.Ord,
						jsonWindow: toJSONWindow(cw.Key, cw.Start, cw.End, cw.Value)}); err != nil {
						return err
					}
				} else if _, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\tcount=%d\n", cw.Position, textField(cw.Key),
					fmtTime(cw.Start), fmtTime(cw.End), cw.Value, cw.Value.Count); err != nil {
					return err
				}
				if n++; count > 0 && n >= count {
					cancel()
				}
				return nil
			})
			switch {
			case errors.Is(err, context.Canceled) && (cmd.Context().Err() != nil || (count > 0 && n >= count)):
				return nil // Ctrl-C or --count reached
			case errors.Is(err, api.ErrNotFound):
				return &exitError{code: 1, msg: fmt.Sprintf("cairn: watch: table %s not found", args[0])}
			case err != nil:
				return clientErr(cmd, "watch", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "resume after this position INDEX/ORD (as printed); default: the oldest retained result")
	f.IntVar(&count, "count", 0, "exit after this many results (0: run until Ctrl-C)")
	outputFlag(cmd, &output)
	return cmd
}
