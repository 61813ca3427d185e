package jepsen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the cairn module.
const ModulePath = "github.com/cairn-db/cairn"

// FindModule returns the root of the cairn module containing dir (or the
// working directory when dir is empty), via `go env GOMOD`.
func FindModule(dir string) (string, error) {
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (is the Go toolchain installed? or pass --bin)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the cairn module: run from the repository or pass --bin")
	}
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(strings.TrimPrefix(first, "module")) != ModulePath {
		return "", fmt.Errorf("%s is not the cairn module (%s)", gomod, strings.TrimSpace(first))
	}
	return filepath.Dir(gomod), nil
}

// Build compiles cmd/cairn from moduleDir into out, with -tags faultybuild
// when faulty.
func Build(ctx context.Context, moduleDir, out string, faulty bool) error {
	args := []string{"build", "-o", out}
	if faulty {
		args = append(args, "-tags", "faultybuild")
	}
	args = append(args, "./cmd/cairn")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), moduleDir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
