package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "cairn: a Raft-replicated state store for stream processors",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringSlice("endpoints", nil, "gRPC addresses of cluster members, comma separated (default: $CAIRN_ENDPOINTS, else 127.0.0.1:7101,7102,7103)")
	timeout := positiveDuration(30 * time.Second)
	pf.Var(&timeout, "timeout", "how long one client call may retry before giving up (> 0)")
	pf.String("cacert", "", "TLS: CA bundle that signed the nodes' certificates (default: $CAIRN_CACERT; unset: plaintext)")
	pf.String("cert", "", "TLS: client certificate, for nodes run with --tls-client-auth (default: $CAIRN_CERT)")
	pf.String("key", "", "TLS: the client certificate's key (default: $CAIRN_KEY)")
	root.AddCommand(newServeCmd())
	for _, add := range extraCommands {
		root.AddCommand(add())
	}
	return root
}

// positiveDuration is a duration flag that rejects zero and negative values
// when it is parsed. Its type is "duration", so GetDuration reads it.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Type() string   { return "duration" }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("must be > 0 (e.g. 30s)")
	}
	*d = positiveDuration(v)
	return nil
}

// extraCommands are registered by the other subcommand files' init.
var extraCommands []func() *cobra.Command

// bindEnv makes every flag of fs readable from CAIRN_<FLAG> (dashes become
// underscores) when it was not given on the command line.
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		env := "CAIRN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				// Name the variable: the user never typed the flag.
				err = fmt.Errorf("%s=%q (the --%s flag): %w", env, v, f.Name, serr)
			}
		}
	})
	return err
}
