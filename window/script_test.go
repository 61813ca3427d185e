package window

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Scripted scenario tests in testdata/*.txt, in the style of
// cockroachdb/datadriven (without the dependency). A case is one or more
// command lines, a "----" line, and the expected output up to the next blank
// line. Lines starting with '#' between cases are comments. Commands:
//
//	spec <spec>              new engine + empty state, watermark MinWatermark
//	event <key> <t> <value>  Engine.Apply at the current watermark
//	watermark <wm>           Engine.Advance to wm (never backwards)
//	producers <wm>:<a|i|f>.. TableWatermark over producers, then advance
//	assign <t>               Assign for the current spec
//	dump                     all stored windows
//
// go test ./window -run TestScripts -rewrite regenerates expectations.
var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt expectations")

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptCase struct {
	line     int
	comments []string
	cmds     []string
	want     string
}

func parseScript(t *testing.T, path string) []scriptCase {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var cases []scriptCase
	var cur scriptCase
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "#") || (strings.TrimSpace(l) == "" && len(cur.cmds) == 0):
			if strings.TrimSpace(l) != "" || len(cur.comments) > 0 {
				cur.comments = append(cur.comments, l)
			}
		case l == "----":
			if len(cur.cmds) == 0 {
				t.Fatalf("%s:%d: ---- without command", path, i+1)
			}
			var out []string
			for i++; i < len(lines) && lines[i] != ""; i++ {
				out = append(out, lines[i])
			}
			cur.want = strings.Join(out, "\n")
			cases = append(cases, cur)
			cur = scriptCase{}
		default:
			if len(cur.cmds) == 0 {
				cur.line = i + 1
			}
			cur.cmds = append(cur.cmds, l)
		}
	}
	if len(cur.cmds) > 0 {
		t.Fatalf("%s:%d: command without ----", path, cur.line)
	}
	return cases
}

type scriptEnv struct {
	eng       *Engine
	st        *MemState
	wm        int64
	producers []ProducerWatermark
}

func runScript(t *testing.T, path string) {
	cases := parseScript(t, path)
	env := &scriptEnv{wm: MinWatermark}
	var b strings.Builder
	for _, c := range cases {
		var out []string
		for _, cmd := range c.cmds {
			out = append(out, env.run(t, cmd)...)
		}
		got := strings.Join(out, "\n")
		if !*rewrite && got != c.want {
			t.Errorf("%s:%d: %s\n got:\n%s\nwant:\n%s", path, c.line, strings.Join(c.cmds, "; "), got, c.want)
		}
		for _, l := range c.comments {
			b.WriteString(l + "\n")
		}
		b.WriteString(strings.Join(c.cmds, "\n") + "\n----\n" + got + "\n\n")
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(b.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (env *scriptEnv) run(t *testing.T, cmd string) []string {
	f := strings.Fields(cmd)
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return n
	}
	if f[0] != "spec" && env.eng == nil {
		t.Fatalf("%q before spec", cmd)
	}
	switch f[0] {
	case "spec":
		spec, err := ParseSpec(strings.TrimPrefix(cmd, "spec "))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		if env.eng, err = NewEngine("t", spec); err != nil {
			t.Fatal(err)
		}
		env.st, env.wm, env.producers = &MemState{}, MinWatermark, nil
		return []string{spec.String()}
	case "assign":
		ws, err := Assign(env.eng.Spec(), num(f[1]))
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return []string{fmt.Sprint(ws)}
	case "event":
		eff, err := env.eng.Apply(env.st, Event{Key: []byte(f[1]), Time: num(f[2]), Value: num(f[3])}, env.wm)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		env.st.Apply(env.eng.EffectMutations(eff))
		return env.effects(t, eff)
	case "watermark":
		return env.advance(t, max(env.wm, num(f[1])))
	case "producers":
		env.producers = env.producers[:0]
		for _, p := range f[1:] {
			wm, st, _ := strings.Cut(p, ":")
			status := map[string]ProducerStatus{"a": ProducerActive, "i": ProducerIdle, "f": ProducerFinished}[st]
			env.producers = append(env.producers, ProducerWatermark{Watermark: num(wm), Status: status})
		}
		return env.advance(t, TableWatermark(env.wm, env.producers))
	case "dump":
		return env.dump(t)
	}
	t.Fatalf("unknown command %q", cmd)
	return nil
}

func (env *scriptEnv) value(t *testing.T, state []byte) string {
	v, err := env.eng.Aggregator().Result(state)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s=%s n=%d", env.eng.Spec().Agg, v, v.Count)
}

func (env *scriptEnv) effects(t *testing.T, eff Effects) []string {
	var out []string
	if eff.Late {
		return []string{fmt.Sprintf("late %v", eff.LateWindows)}
	}
	for _, w := range eff.LateWindows {
		out = append(out, fmt.Sprintf("skip closed %v", w))
	}
	for _, w := range eff.Deletes {
		out = append(out, fmt.Sprintf("delete %v", w))
	}
	for _, p := range eff.Puts {
		s := fmt.Sprintf("put %v %s", p.Window, env.value(t, p.State))
		if p.Created {
			s += " (new)"
		}
		out = append(out, s)
	}
	return out
}

func (env *scriptEnv) advance(t *testing.T, to int64) []string {
	p, err := env.eng.Advance(env.st, env.wm, to)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{fmt.Sprintf("watermark %s -> %s", fmtWM(env.wm), fmtWM(to))}
	env.wm = to
	for _, c := range p.Closed {
		out = append(out, fmt.Sprintf("close %s %v at %d: %s", c.Key, c.Window, c.CloseTime, env.value(t, c.State)))
	}
	for _, x := range p.Expired {
		out = append(out, fmt.Sprintf("expire %s %v at %d", x.Key, x.Window, x.ExpireTime))
	}
	env.st.Apply(env.eng.AdvanceMutations(p))
	return out
}

func fmtWM(wm int64) string {
	if wm == MinWatermark {
		return "-inf"
	}
	return strconv.FormatInt(wm, 10)
}

func (env *scriptEnv) dump(t *testing.T) []string {
	out := []string{}
	span := TableSpans("t")[0]
	err := env.st.Scan(span.Lower, span.Upper, func(k, v []byte) (bool, error) {
		_, key, w, err := DecodeWindowKey(k)
		if err != nil {
			return false, err
		}
		status := "open"
		if IsLate(env.eng.Spec(), w, env.wm) {
			status = "closed"
		}
		out = append(out, fmt.Sprintf("%s %v %s %s", key, w, env.value(t, v), status))
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		out = append(out, "(empty)")
	}
	return out
}
