package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
)

// TestPutValueSources: the value of put comes from the VALUE argument, from
// --file PATH, from --file - (stdin), or from stdin when VALUE is omitted;
// the ambiguous and impossible combinations are refused before any call.
func TestPutValueSources(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v")
	if err := os.WriteFile(path, []byte("from file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	devNull, err := os.Open(os.DevNull) // a character device, like a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	big := strings.Repeat("x", maxPutValue+1)
	for _, tc := range []struct {
		name    string
		args    []string
		file    *string
		stdin   any // string or *os.File
		want    string
		wantErr string
	}{
		{name: "argument", args: []string{"k", "v"}, want: "v"},
		{name: "empty argument", args: []string{"k", ""}, want: ""},
		{name: "file", args: []string{"k"}, file: ptr(path), want: "from file\n"},
		{name: "file - is stdin", args: []string{"k"}, file: ptr("-"), stdin: "piped\n", want: "piped\n"},
		{name: "stdin when VALUE is omitted", args: []string{"k"}, stdin: "piped", want: "piped"},
		{name: "empty stdin", args: []string{"k"}, stdin: "", want: ""},
		{name: "VALUE and --file", args: []string{"k", "v"}, file: ptr(path), wantErr: "not both"},
		{name: "empty --file", args: []string{"k"}, file: ptr(""), wantErr: "--file needs a path"},
		{name: "missing file", args: []string{"k"}, file: ptr(filepath.Join(dir, "nope")), wantErr: "no such file"},
		{name: "no VALUE, stdin a device", args: []string{"k"}, stdin: devNull, wantErr: "missing VALUE"},
		{name: "too large", args: []string{"k"}, stdin: big, wantErr: "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newPutCmd()
			switch in := tc.stdin.(type) {
			case string:
				cmd.SetIn(strings.NewReader(in))
			case *os.File:
				cmd.SetIn(in)
			}
			if tc.file != nil {
				if err := cmd.Flags().Set("file", *tc.file); err != nil {
					t.Fatal(err)
				}
			}
			if err := cmd.Args(cmd, tc.args); err != nil {
				t.Fatalf("args %q refused: %v", tc.args, err)
			}
			file, _ := cmd.Flags().GetString("file")
			got, err := putValue(cmd, tc.args, file)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case string(got) != tc.want:
				t.Fatalf("value %q, want %q", got, tc.want)
			}
		})
	}
	for _, args := range [][]string{nil, {"k", "v", "extra"}} {
		if err := newPutCmd().Args(nil, args); err == nil {
			t.Errorf("put %q accepted", args)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestTimeoutMustBePositive: --timeout 0 or negative is refused when the
// flags are parsed, not silently replaced by the default.
func TestTimeoutMustBePositive(t *testing.T) {
	for _, v := range []string{"0", "0s", "-1s"} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"get", "k", "--endpoints", "127.0.0.1:1", "--timeout", v})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "must be > 0") {
			t.Errorf("--timeout %s: err = %v, want \"must be > 0\"", v, err)
		}
	}
	fs := newRootCmd().PersistentFlags()
	if d, err := fs.GetDuration("timeout"); err != nil || d != 30*time.Second {
		t.Errorf("default --timeout = %v, %v", d, err)
	}
	if err := fs.Set("timeout", "5s"); err != nil {
		t.Fatal(err)
	}
	if d, err := fs.GetDuration("timeout"); err != nil || d != 5*time.Second {
		t.Errorf("--timeout 5s reads as %v, %v", d, err)
	}
}

// TestHelpTexts checks help that an audit found wrong.
func TestHelpTexts(t *testing.T) {
	help := func(args ...string) string {
		t.Helper()
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--help"))
		if err := root.Execute(); err != nil {
			t.Fatalf("%q --help: %v", args, err)
		}
		return out.String()
	}
	for _, tc := range []struct {
		cmd        []string
		want, nots []string
	}{
		{[]string{"put"}, []string{"put KEY [VALUE]", "--file", "stdin"}, []string{"KEY=VALUE"}},
		{[]string{"checkpoint", "export"}, []string{"gocloud.dev/blob/gcsblob"}, []string{"-tags gcs", "-tags azblob"}},
		{[]string{"checkpoint", "create"}, []string{"as one on the leader"}, nil},
		{[]string{"serve"}, []string{"0: only --snapshot-threshold and --snapshot-bytes"}, []string{"thresholds above"}},
		{[]string{"bench", "checkpoint"}, []string{"--serve-flag stringArray"}, []string{"--serve-flag cairn serve"}},
		{[]string{"bench", "restart"}, []string{"--serve-flag stringArray"}, []string{"--serve-flag cairn serve"}},
	} {
		out := help(tc.cmd...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q:\n%s", strings.Join(tc.cmd, " "), w, out)
			}
		}
		for _, n := range tc.nots {
			if strings.Contains(out, n) {
				t.Errorf("%s --help still says %q", strings.Join(tc.cmd, " "), n)
			}
		}
	}
}

// TestClientErrHints: a plaintext client at an HTTP port is told it is an
// HTTP port; at a TLS port, that the nodes may require TLS.
func TestClientErrHints(t *testing.T) {
	for _, env := range []string{"CAIRN_CACERT", "CAIRN_CERT", "CAIRN_KEY", "CAIRN_ENDPOINTS"} {
		t.Setenv(env, "")
	}
	cmd := newPutCmd()
	for _, tc := range []struct {
		msg, want, not string
	}{
		{`connection error: desc = "error reading server preface: http2: failed reading the frame payload: http2: frame too large, note that the frame header looked like an HTTP/1.1 header"`,
			"HTTP port, not a gRPC one", "TLS"},
		{`connection error: desc = "error reading server preface: EOF"`, "may require TLS", "HTTP port"},
	} {
		err := clientErr(cmd, "get", status.Error(codes.Unavailable, tc.msg)).Error()
		if !strings.Contains(err, tc.want) || strings.Contains(err, tc.not) {
			t.Errorf("clientErr(%q) = %q; want %q and not %q", tc.msg, err, tc.want, tc.not)
		}
	}
}

// TestCheckpointListWithoutCheckpoints: a node without a checkpoint says
// so instead of "index 0, <uptime> ago".
func TestCheckpointListWithoutCheckpoints(t *testing.T) {
	var out bytes.Buffer
	l := &api.CheckpointList{Node: "n1", Recovery: api.RecoveryEstimate{AppliedIndex: 7, EntriesSince: 7, SinceCheckpoint: 640 * time.Second}}
	if err := printCheckpointList(&out, l); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "no checkpoint yet") || strings.Contains(s, "index 0") || strings.Contains(s, "ago") {
		t.Errorf("checkpoint list without checkpoints:\n%s", s)
	}
}

// TestCLIHelpFixes runs the binary against a one-node cluster: a value
// near the server's 1 MiB limit (too large for a command-line argument)
// put from a file and from stdin reads back intact; a watch error is one
// formatted line; the HTTP port is recognised as such.
func TestCLIHelpFixes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	c := startProcCluster(t, 1)
	c.waitLeader(ctx, c.client())
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	run := func(stdin []byte, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, cairnBin, append([]string{eps}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return o.String(), e.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), 0
	}
	value := make([]byte, 1<<20-64) // binary, just under the default --max-value-bytes
	if _, err := rand.Read(value); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(path, value, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(key string) {
		t.Helper()
		out, errOut, code := run(nil, "get", key, "-o", "json")
		var j struct{ Value, Encoding string }
		if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Encoding != "base64" {
			t.Fatalf("get %s: exit %d, stderr %q", key, code, errOut)
		}
		if got, err := base64.StdEncoding.DecodeString(j.Value); err != nil || !bytes.Equal(got, value) {
			t.Fatalf("get %s: %d bytes back, want the %d put (%v)", key, len(got), len(value), err)
		}
	}
	for _, tc := range []struct {
		key   string
		stdin []byte
		args  []string
	}{
		{"from-file", nil, []string{"--file", path}},
		{"from-dash", value, []string{"--file", "-"}},
		{"from-stdin", value, nil},
	} {
		if out, errOut, code := run(tc.stdin, append([]string{"put", tc.key}, tc.args...)...); code != 0 || !strings.HasPrefix(out, "OK index=") {
			t.Fatalf("put %s: exit %d, stdout %q, stderr %q", tc.key, code, out, errOut)
		}
		check(tc.key)
	}
	// Over the server's limit: its message, exit 1.
	if _, errOut, code := run(append(value, make([]byte, 128)...), "put", "too-big"); code != 1 || !strings.Contains(errOut, "exceeds the limit") {
		t.Errorf("put over the limit: exit %d, stderr %q", code, errOut)
	}

	// A watch refused by the server: one line with the code, as elsewhere.
	if _, errOut, code := run(nil, "table", "create", "w", "tumbling", "1m", "count"); code != 0 || !strings.Contains(errOut, "watch log only until the table watermark next advances") {
		t.Fatalf("table create: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := run(nil, "watch", "w", "--from", "1/0"); code != 1 || strings.Contains(errOut, "rpc error") || !strings.Contains(errOut, "(FailedPrecondition)") {
		t.Errorf("watch --from 1/0: exit %d, stderr %q", code, errOut)
	}

	// The HTTP port.
	_, errOut, code := runCLI(t, nil, "--endpoints", c.nodes[0].http, "--timeout", "2s", "get", "k")
	if code != 1 || !strings.Contains(errOut, "HTTP port") || strings.Contains(errOut, "may require TLS") {
		t.Errorf("get at the HTTP port: exit %d, stderr %q", code, errOut)
	}
}

// A bad value from the environment names the variable, not only the flag
// the user never typed.
func TestBindEnvNamesTheVariable(t *testing.T) {
	t.Setenv("CAIRN_ELECTION_TIMEOUT", "5")
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.Duration("election-timeout", time.Second, "")
	err := bindEnv(fs)
	if err == nil || !strings.Contains(err.Error(), "CAIRN_ELECTION_TIMEOUT") {
		t.Fatalf("bindEnv: %v, want the variable named", err)
	}
}
