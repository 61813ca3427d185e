package main

import (
	"encoding/base64"
	"fmt"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/window"
)

func init() { extraCommands = append(extraCommands, newWindowCmd) }

func newWindowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "window",
		Short: "Read window results of a table",
	}
	cmd.AddCommand(newWindowGetCmd(), newWindowKeysCmd())
	return cmd
}

// jsonWindow is the JSON form of one window result. value is a number, or
// null for min/max/mean of nothing; type says which (int, float, null).
type jsonWindow struct {
	Key         string `json:"key,omitempty"`
	KeyEncoding string `json:"key_encoding,omitempty"`
	Start       int64  `json:"start"`
	End         int64  `json:"end"`
	StartTime   string `json:"start_time"`
	EndTime     string `json:"end_time"`
	Value       any    `json:"value"`
	Type        string `json:"type"`
	Overflow    bool   `json:"overflow,omitempty"`
	Count       uint64 `json:"count"`
	Closed      *bool  `json:"closed,omitempty"`
}

func toJSONWindow(key []byte, start, end int64, v window.Value) jsonWindow {
	out := jsonWindow{Key: string(key), Start: start, End: end, StartTime: fmtTime(start), EndTime: fmtTime(end),
		Count: v.Count, Overflow: v.Overflow}
	if !utf8.Valid(key) {
		out.Key, out.KeyEncoding = base64.StdEncoding.EncodeToString(key), "base64"
	}
	switch v.Kind {
	case window.ValueInt:
		out.Value, out.Type = v.Int, "int"
	case window.ValueFloat:
		out.Value, out.Type = v.Float, "float"
	default:
		out.Type = "null"
	}
	return out
}

func stateText(closed bool) string {
	if closed {
		return "closed"
	}
	return "open"
}

func newWindowGetCmd() *cobra.Command {
	var from, to, consistency, output string
	cmd := &cobra.Command{
		Use:   "get TABLE KEY",
		Short: "Print KEY's windows in TABLE (open, and closed ones not yet evicted)",
		Long: `Print KEY's stored windows that overlap [--from, --to), ordered by start: one
line each with start, end, value, event count and whether the window is
closed (final) or still open. Times are RFC 3339 (2024-05-01T12:00:00Z) or
Unix milliseconds; without --from/--to every stored window is printed. With
-o json prints {"table":..,"key":..,"windows":[{"start":ms,"end":ms,
"start_time":..,"end_time":..,"value":N|null,"type":"int"|"float"|"null",
"count":N,"closed":bool}]}.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cons, err := parseConsistency(consistency)
			if err != nil {
				return err
			}
			f, err := parseTime("from", from, minTime)
			if err != nil {
				return err
			}
			t, err := parseTime("to", to, maxTime)
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			key := []byte(args[1])
			ws, err := c.GetWindows(cmd.Context(), args[0], key, f, t, api.WithConsistency(cons))
			if err != nil {
				return clientErr(cmd, "window get", err)
			}
			if output == "json" {
				out := struct {
					Table   string       `json:"table"`
					Key     string       `json:"key"`
					Windows []jsonWindow `json:"windows"`
				}{Table: args[0], Key: args[1], Windows: make([]jsonWindow, len(ws))}
				for i, w := range ws {
					jw := toJSONWindow(nil, w.Start, w.End, w.Value)
					closed := w.Closed
					jw.Closed = &closed
					out.Windows[i] = jw
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "START\tEND\tVALUE\tCOUNT\tSTATE")
			for _, w := range ws {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", fmtTime(w.Start), fmtTime(w.End), w.Value, w.Value.Count, stateText(w.Closed))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "windows ending after this time (RFC 3339 or Unix ms; default: all)")
	f.StringVar(&to, "to", "", "windows starting before this time (RFC 3339 or Unix ms; default: all)")
	f.StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale")
	outputFlag(cmd, &output)
	return cmd
}

func newWindowKeysCmd() *cobra.Command {
	var at, consistency, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "keys TABLE --at TIME",
		Short: "Print every key's result for one window of a tumbling or hopping table",
		Long: `Print the keys that have the window starting at --at, with their results, in
key order (pages are followed until --limit keys; 0: all). For a tumbling
table --at may be any time inside the window; for a hopping table it must be
a window start. With -o json prints {"table":..,"start":ms,"end":ms,
"windows":[{"key":..,"value":..,"type":..,"count":N,"closed":bool}],"more":bool}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if at == "" {
				return fmt.Errorf("--at is required (RFC 3339 or Unix ms)")
			}
			cons, err := parseConsistency(consistency)
			if err != nil {
				return err
			}
			t, err := parseTime("at", at, 0)
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			info, err := c.DescribeTable(ctx, args[0], api.WithConsistency(cons))
			if err != nil {
				return clientErr(cmd, "window keys", err)
			}
			spec, err := window.ParseSpec(info.Spec)
			if err != nil {
				return fmt.Errorf("window keys: table %s: %w", args[0], err)
			}
			start := t
			if spec.Kind == window.Tumbling {
				start = t - ((t%spec.Size)+spec.Size)%spec.Size
			}
			end := start + spec.Size
			var all []api.WindowResult
			var tok []byte
			more := false
			for {
				page, next, err := c.GetWindowKeys(ctx, args[0], start, end, tok, uint32(max(0, limit-len(all))), api.WithConsistency(cons))
				if err != nil {
					return clientErr(cmd, "window keys", err)
				}
				all = append(all, page...)
				if next == nil {
					break
				}
				if limit > 0 && len(all) >= limit {
					more = true
					break
				}
				tok = next
			}
			if output == "json" {
				out := struct {
					Table   string       `json:"table"`
					Start   int64        `json:"start"`
					End     int64        `json:"end"`
					Windows []jsonWindow `json:"windows"`
					More    bool         `json:"more"`
				}{Table: args[0], Start: start, End: end, Windows: make([]jsonWindow, len(all)), More: more}
				for i, w := range all {
					jw := toJSONWindow(w.Key, w.Start, w.End, w.Value)
					closed := w.Closed
					jw.Closed = &closed
					out.Windows[i] = jw
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "window [%s, %s)\n", fmtTime(start), fmtTime(end))
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tCOUNT\tSTATE")
			for _, w := range all {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", textField(w.Key), w.Value, w.Value.Count, stateText(w.Closed))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if more {
				fmt.Fprintf(cmd.ErrOrStderr(), "(more keys after the first %d; raise --limit or use --limit 0)\n", len(all))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&at, "at", "", "the window: its start, or for tumbling tables any time inside it (RFC 3339 or Unix ms)")
	f.IntVar(&limit, "limit", 1000, "most keys to print (0: all)")
	f.StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale")
	outputFlag(cmd, &output)
	return cmd
}
