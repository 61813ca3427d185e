package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newScanCmd) }

func newScanCmd() *cobra.Command {
	var (
		prefix, start, end, consistency, output string
		limit, pageSize                         int
	)
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List keys in order: all, by --prefix, or in [--start, --end)",
		Long: `List keys and values in key order, one "KEY<TAB>VALUE" line each (integers in
decimal; keys or values with unprintable characters are Go-quoted). Pages are
followed until --limit keys were printed (0: no limit); when keys remain past
the limit, a note goes to stderr. Each page is a consistent read, the whole
scan is not. With -o json prints {"kvs":[{"key":..,"value":..,"type":..}],
"count":N,"more":bool}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if limit < 0 || pageSize < 0 {
				return fmt.Errorf("--limit and --page-size must be >= 0")
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
			so := api.ScanOptions{Consistency: cons}
			if prefix != "" {
				so.Prefix = []byte(prefix)
			}
			if start != "" {
				so.Start = []byte(start)
			}
			if end != "" {
				so.End = []byte(end)
			}
			var all []api.KeyValue
			more := false
			for {
				so.Limit = uint32(pageSize)
				if rest := limit - len(all); limit > 0 && (pageSize == 0 || rest < pageSize) {
					so.Limit = uint32(rest)
				}
				kvs, next, err := c.Scan(cmd.Context(), so)
				if err != nil {
					return clientErr(cmd, "scan", err)
				}
				all = append(all, kvs...)
				if len(next) == 0 {
					break
				}
				if limit > 0 && len(all) >= limit {
					more = true
					break
				}
				so.Start = next
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				out := struct {
					KVs   []jsonKV `json:"kvs"`
					Count int      `json:"count"`
					More  bool     `json:"more"`
				}{KVs: make([]jsonKV, len(all)), Count: len(all), More: more}
				for i, kv := range all {
					out.KVs[i] = toJSONKV(kv.Key, kv.Value)
				}
				return printJSON(w, out)
			}
			for _, kv := range all {
				v := kv.Value.String()
				if !kv.Value.IsInt {
					v = textField(kv.Value.Bytes)
				}
				if _, err := fmt.Fprintf(w, "%s\t%s\n", textField(kv.Key), v); err != nil {
					return err
				}
			}
			if more {
				fmt.Fprintf(cmd.ErrOrStderr(), "(more keys after the first %d; raise --limit or use --limit 0)\n", len(all))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&prefix, "prefix", "", "only keys starting with this")
	f.StringVar(&start, "start", "", "first key (inclusive)")
	f.StringVar(&end, "end", "", "end key (exclusive; empty: no end)")
	f.IntVar(&limit, "limit", 1000, "most keys to print in total (0: all)")
	f.IntVar(&pageSize, "page-size", 0, "keys per request (0: the server's page size)")
	f.StringVar(&consistency, "consistency", "linearizable", "linearizable, lease or stale")
	outputFlag(cmd, &output)
	return cmd
}
