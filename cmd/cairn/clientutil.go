package main

// Shared plumbing of the client commands (put, get, del, scan, cluster,
// bench): endpoints, the client, consistency and output flags, and turning
// client errors into one clear line.

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

// endpoints returns --endpoints, else $CAIRN_ENDPOINTS, else the defaults.
func endpoints(cmd *cobra.Command) []string {
	if f := cmd.Flags().Lookup("endpoints"); f != nil && f.Changed {
		if eps, err := cmd.Flags().GetStringSlice("endpoints"); err == nil && len(eps) > 0 {
			return eps
		}
	}
	if env := os.Getenv("CAIRN_ENDPOINTS"); env != "" {
		var eps []string
		for _, e := range strings.Split(env, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		if len(eps) > 0 {
			return eps
		}
	}
	return append([]string(nil), api.DefaultEndpoints...)
}

// newClient returns a client for the command's endpoints. Its log goes
// nowhere: the command reports errors itself.
func newClient(cmd *cobra.Command) (*api.Client, error) {
	cfg := api.DefaultClientConfig(endpoints(cmd)...)
	if d, err := cmd.Flags().GetDuration("timeout"); err == nil && d > 0 {
		cfg.RetryBudget = d
		cfg.AttemptTimeout = min(cfg.AttemptTimeout, d)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	tlsCfg, err := clientTLS(cmd)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tlsCfg
	return api.NewClient(cfg)
}

// usesTLS reports whether the command connects over TLS.
func usesTLS(cmd *cobra.Command) bool {
	c, err := clientTLS(cmd)
	return err == nil && c != nil
}

// clientTLS is the TLS configuration from --cacert, --cert and --key (else
// $CAIRN_CACERT, $CAIRN_CERT, $CAIRN_KEY); nil when none is set.
func clientTLS(cmd *cobra.Command) (*tls.Config, error) {
	get := func(name string) string {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
			return f.Value.String()
		}
		return os.Getenv("CAIRN_" + strings.ToUpper(name))
	}
	return tlsconf.Client(get("cacert"), get("cert"), get("key"))
}

// parseConsistency maps a flag value to the protobuf enum.
func parseConsistency(s string) (pb.Consistency, error) {
	switch strings.ToLower(s) {
	case "linearizable", "":
		return pb.Consistency_LINEARIZABLE, nil
	case "lease":
		return pb.Consistency_LEASE, nil
	case "stale":
		return pb.Consistency_STALE, nil
	}
	return 0, fmt.Errorf("--consistency: %q is not linearizable, lease or stale", s)
}

// outputFlag adds -o/--output (text or json) to cmd.
func outputFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "output", "o", "text", "output format: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output: %q is not text or json", o)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// clientErr turns a client error into one line: what failed, the gRPC
// status message and code, and a hint where one helps.
func clientErr(cmd *cobra.Command, what string, err error) error {
	var gs interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &gs) || gs.GRPCStatus() == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	st := gs.GRPCStatus()
	msg := fmt.Sprintf("%s: %s (%s)", what, st.Message(), st.Code())
	switch {
	case errors.Is(err, api.ErrUnknownOutcome):
		msg += "; the write may or may not have been applied"
	case st.Code() == codes.Unavailable && (strings.Contains(st.Message(), "tls:") || strings.Contains(st.Message(), "x509:")):
		msg += "; the TLS handshake failed: check --cacert, --cert and --key against the nodes' --tls-ca and --tls-client-auth"
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "looked like an HTTP/1.1 header"):
		// An HTTP/1.1 server (a node's --http-addr) answered instead of gRPC.
		msg += fmt.Sprintf("; that is an HTTP port, not a gRPC one: point --endpoints at the nodes' --grpc-addr (cairn dev: 127.0.0.1:7101-7103, HTTP is 7301-7303); endpoints: %s",
			strings.Join(endpoints(cmd), ","))
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "server preface") && !usesTLS(cmd):
		// A plaintext client talking to a TLS port reads no HTTP/2 preface.
		msg += "; the nodes may require TLS: set --cacert (and --cert, --key if they require client certificates)"
	case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded:
		msg += fmt.Sprintf("; is the cluster running? endpoints: %s (set --endpoints or CAIRN_ENDPOINTS)", strings.Join(endpoints(cmd), ","))
		if c, err := clientTLS(cmd); err == nil && c != nil && len(c.Certificates) == 0 {
			// TLS 1.3 reports a refused client certificate after the
			// handshake, often as a broken connection.
			msg += "; if the nodes run with --tls-client-auth, they need a client certificate: set --cert and --key"
		}
	}
	return errors.New(msg)
}

// jsonKV is the typed JSON form of a key and its value. Keys and byte
// values that are not valid UTF-8 are base64, flagged by *_encoding.
type jsonKV struct {
	Key         string `json:"key"`
	KeyEncoding string `json:"key_encoding,omitempty"`
	Value       any    `json:"value"`
	Type        string `json:"type"`
	Encoding    string `json:"encoding,omitempty"`
}

func toJSONKV(key []byte, v api.Value) jsonKV {
	out := jsonKV{Key: string(key)}
	if !utf8.Valid(key) {
		out.Key, out.KeyEncoding = base64.StdEncoding.EncodeToString(key), "base64"
	}
	switch {
	case v.IsInt:
		out.Value, out.Type = v.Int, "int"
	case utf8.Valid(v.Bytes):
		out.Value, out.Type = string(v.Bytes), "bytes"
	default:
		out.Value, out.Type, out.Encoding = base64.StdEncoding.EncodeToString(v.Bytes), "bytes", "base64"
	}
	return out
}

// textField renders a key or value on one line of text output: as is when
// it is printable, else Go-quoted.
func textField(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// fmtDuration renders a duration for humans.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
