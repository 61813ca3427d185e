package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
)

// genConfig describes a generated input: line i is a key drawn by a seeded
// RNG, so the same config always gives the same file.
type genConfig struct {
	Lines int64
	Keys  int
	Seed  uint64
	Dist  string // "zipf" (s=1.1: a few hot keys, a long tail) or "uniform"
}

func (g genConfig) validate() error {
	switch {
	case g.Lines < 1:
		return fmt.Errorf("--gen must be >= 1, got %d", g.Lines)
	case g.Keys < 1:
		return fmt.Errorf("--keys must be >= 1, got %d", g.Keys)
	case g.Dist != "zipf" && g.Dist != "uniform":
		return fmt.Errorf("--dist must be zipf or uniform, got %q", g.Dist)
	}
	return nil
}

// generate writes the input to w.
func generate(w io.Writer, g genConfig) error {
	if err := g.validate(); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(g.Seed, 0x636c69636b636e74)) // "clickcnt"
	next := func() int { return r.IntN(g.Keys) }
	if g.Dist == "zipf" && g.Keys > 1 {
		z := rand.NewZipf(r, 1.1, 1, uint64(g.Keys-1))
		next = func() int { return int(z.Uint64()) }
	}
	width := len(strconv.Itoa(g.Keys - 1))
	bw := bufio.NewWriterSize(w, 1<<16)
	for range g.Lines {
		if _, err := fmt.Fprintf(bw, "u%0*d\n", width, next()); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeInput generates the input into path (written whole, then renamed).
func writeInput(path string, g genConfig) (err error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := generate(f, g); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
