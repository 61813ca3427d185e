package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/window"
)

// Windowed tables: cairn table create|list|describe|drop. Times print as
// RFC 3339 in UTC with milliseconds; JSON output carries Unix ms as well.

func init() { extraCommands = append(extraCommands, newTableCmd) }

func newTableCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "table",
		Short: "Create, list, describe and drop windowed tables",
		Long: `Windowed tables aggregate window events (sent by producers with watermarks)
per key and event-time window. See docs/windows.md.`,
	}
	cmd.AddCommand(newTableCreateCmd(), newTableListCmd(), newTableDescribeCmd(), newTableDropCmd())
	return cmd
}

func newTableCreateCmd() *cobra.Command {
	var lateness, retention string
	var precision int
	cmd := &cobra.Command{
		Use:   "create NAME SPEC...",
		Short: "Create a windowed table, e.g. create clicks tumbling 1m count --lateness 10s --retention 5m",
		Long: `Create table NAME. SPEC is the window spec, as separate words or one quoted
string:

  tumbling SIZE AGG [lateness=DUR] [retention=DUR] [precision=N]
  hopping SIZE SLIDE AGG [options]
  session GAP AGG [options]

AGG is count, sum, min, max, mean or distinct (HyperLogLog; precision=4..18).
--lateness, --retention and --precision add the same options. Durations are
Go durations (250ms, 10s, 1m30s) or whole days (7d). A window accepts events
until the table watermark reaches its end + lateness (then it is final and
published to watchers), and is kept for queries and watchers for retention
after that. Specs cannot be changed: drop and recreate the table. Prints the
spec in canonical form.

  cairn table create clicks tumbling 1m count --lateness 10s --retention 5m
  cairn table create clicks "tumbling 1m count lateness=10s retention=5m"`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := strings.Join(args[1:], " ")
			for _, o := range []struct {
				name, val string
				set       bool
			}{
				{"lateness", lateness, cmd.Flags().Changed("lateness")},
				{"retention", retention, cmd.Flags().Changed("retention")},
				{"precision", strconv.Itoa(precision), cmd.Flags().Changed("precision")},
			} {
				if !o.set {
					continue
				}
				if strings.Contains(spec, o.name+"=") {
					return fmt.Errorf("%s is given both in the spec and as --%s", o.name, o.name)
				}
				spec += " " + o.name + "=" + o.val
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			canon, err := c.CreateTable(cmd.Context(), args[0], spec)
			if err != nil {
				return clientErr(cmd, "table create", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created table %s: %s\n", args[0], canon)
			if s, err := window.ParseSpec(canon); err == nil && s.Retention == 0 && s.Kind != window.Session {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: retention is 0: windows are evicted as soon as they close, so queries see only open windows, "+
					"and a closed window's result stays in the watch log only until the table watermark next advances "+
					"(a watcher that has not read it by then misses it); add --retention")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&lateness, "lateness", "", "allowed lateness (adds lateness=DUR to the spec)")
	f.StringVar(&retention, "retention", "", "how long closed windows are kept (adds retention=DUR)")
	f.IntVar(&precision, "precision", 0, "HyperLogLog precision for distinct (adds precision=N)")
	return cmd
}

// jsonTable is the JSON form of a table.
type jsonTable struct {
	Name          string `json:"name"`
	Spec          string `json:"spec"`
	CreatedIndex  uint64 `json:"created_index"`
	Watermark     *int64 `json:"watermark"` // Unix ms; null before the first watermark
	WatermarkTime string `json:"watermark_time,omitempty"`
	Late          uint64 `json:"late"`
	Closed        uint64 `json:"closed"`
	Producers     int    `json:"producers"`
	Trimmed       string `json:"trimmed"`
}

func toJSONTable(t api.TableInfo) jsonTable {
	out := jsonTable{Name: t.Name, Spec: t.Spec, CreatedIndex: t.Created, Late: t.Late, Closed: t.Closed,
		Producers: t.Producers, Trimmed: t.Trimmed.String()}
	if t.HasWatermark {
		wm := t.Watermark
		out.Watermark, out.WatermarkTime = &wm, fmtTime(wm)
	}
	return out
}

func watermarkText(t api.TableInfo) string {
	if !t.HasWatermark {
		return "-"
	}
	return fmtTime(t.Watermark)
}

func newTableListCmd() *cobra.Command {
	var consistency, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tables with their spec, watermark and counters",
		Long: `List every table: name, spec, watermark ("-" before the first producer
watermark), late events and closed windows. With -o json prints
{"tables":[{"name":..,"spec":..,"watermark":ms|null,"late":N,"closed":N,..}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			ts, err := c.ListTables(cmd.Context(), api.WithConsistency(cons))
			if err != nil {
				return clientErr(cmd, "table list", err)
			}
			if output == "json" {
				out := struct {
					Tables []jsonTable `json:"tables"`
				}{Tables: make([]jsonTable, len(ts))}
				for i, t := range ts {
					out.Tables[i] = toJSONTable(t)
				}
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSPEC\tWATERMARK\tLATE\tCLOSED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", t.Name, t.Spec, watermarkText(t), t.Late, t.Closed)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale")
	outputFlag(cmd, &output)
	return cmd
}

func newTableDescribeCmd() *cobra.Command {
	var consistency, output string
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a table's spec, watermark, late and closed counts",
		Long: `Show table NAME: its spec, creation index, watermark, the number of events
rejected as late, the number of windows closed (published to watchers), the
producer sources feeding its watermark, and the watch-log position trimmed
so far (a watcher resuming at or after it loses nothing). A missing table
prints "not found" on stderr and exits 1.`,
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
			t, err := c.DescribeTable(cmd.Context(), args[0], api.WithConsistency(cons))
			if errors.Is(err, api.ErrNotFound) {
				return &exitError{code: 1, msg: fmt.Sprintf("cairn: table describe: table %s not found", args[0])}
			}
			if err != nil {
				return clientErr(cmd, "table describe", err)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), toJSONTable(t))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "name:\t%s\n", t.Name)
			fmt.Fprintf(tw, "spec:\t%s\n", t.Spec)
			fmt.Fprintf(tw, "created at index:\t%d\n", t.Created)
			wm := watermarkText(t)
			if t.HasWatermark {
				wm += fmt.Sprintf(" (%d)", t.Watermark)
			}
			fmt.Fprintf(tw, "watermark:\t%s\n", wm)
			fmt.Fprintf(tw, "late events:\t%d\n", t.Late)
			fmt.Fprintf(tw, "closed windows:\t%d\n", t.Closed)
			fmt.Fprintf(tw, "producer sources:\t%d\n", t.Producers)
			fmt.Fprintf(tw, "watch log trimmed through:\t%s\n", t.Trimmed)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale")
	outputFlag(cmd, &output)
	return cmd
}

func newTableDropCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "drop NAME",
		Short: "Drop a table with all its windows and its watch log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			err = c.DropTable(cmd.Context(), args[0])
			if errors.Is(err, api.ErrNotFound) {
				return &exitError{code: 1, msg: fmt.Sprintf("cairn: table drop: table %s not found", args[0])}
			}
			if err != nil {
				return clientErr(cmd, "table drop", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dropped table %s\n", args[0])
			return nil
		},
	}
}

// fmtTime renders Unix ms as RFC 3339 in UTC with milliseconds; times
// outside what time.Time renders sensibly print as raw ms.
func fmtTime(ms int64) string {
	if ms < -62135596800000 || ms > 253402300799999 { // years 1..9999
		return strconv.FormatInt(ms, 10) + "ms"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// parseTime reads RFC 3339 (with or without fractional seconds) or a Unix
// millisecond count; "" gives def.
func parseTime(flag, s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("--%s: %q is neither RFC 3339 (2024-05-01T12:00:00Z) nor Unix milliseconds", flag, s)
	}
	return t.UnixMilli(), nil
}

var (
	minTime = int64(math.MinInt64)
	maxTime = int64(math.MaxInt64)
)
