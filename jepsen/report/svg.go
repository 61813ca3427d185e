package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/cluster"
	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/linearizability"
)

type plotData struct {
	recs []client.Record
	// flagged are the request ids named by anomalies: ringed in red.
	flagged map[string]bool
	events  []nemesis.Event
	leaders []cluster.LeaderSample
	end     int64 // run clock, ns
}

// Plot geometry: a plot area with a leader lane above it, fault windows
// shaded across it, and the legend on the right.
const (
	plotW, plotH                       = 1100, 440
	marginL, marginR, marginT, marginB = 70, 190, 64, 46
	x0, x1, y0, y1                     = marginL, plotW - marginR, marginT, plotH - marginB
)

// faultColor gives each family of nemesis a colour.
func faultColor(name string) string {
	switch {
	case strings.HasPrefix(name, "kill"):
		return "#e63946"
	case strings.HasPrefix(name, "pause"):
		return "#f4a261"
	case strings.HasPrefix(name, "partition"):
		return "#457b9d"
	case name == "netem":
		return "#8338ec"
	case name == "membership":
		return "#2a9d8f"
	case name == "transfer":
		return "#e9c46a"
	case name == "snapshot":
		return "#6a4c93"
	}
	return "#999999"
}

var nodePalette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"}

func nodeColor(id string) string {
	var i int
	if _, err := fmt.Sscanf(id, "n%d", &i); err != nil || i < 1 {
		return "#333333"
	}
	return nodePalette[(i-1)%len(nodePalette)]
}

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(b, format, args...) }

func (p plotData) x(t int64) float64 {
	if p.end <= 0 {
		return x0
	}
	return x0 + float64(t)/float64(p.end)*float64(x1-x0)
}

func (p plotData) header(b *svgBuf, title string) {
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica,Arial,sans-serif" font-size="11">`+"\n", plotW, plotH, plotW, plotH)
	b.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	b.f(`<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", x0, html.EscapeString(title))
}

// faults shades each fault window and labels it; labels are staggered on
// three rows so that neighbouring windows stay readable.
func (p plotData) faults(b *svgBuf) {
	for i, e := range p.events {
		xa, xb := p.x(e.Start), p.x(max(e.End, e.Start))
		if xb-xa < 2 {
			xb = xa + 2
		}
		c := faultColor(e.Name)
		tip := e.Name + ": " + e.Detail
		if e.InjectError != "" {
			tip += " (inject failed: " + e.InjectError + ")"
		}
		if e.HealError != "" {
			tip += " (heal failed: " + e.HealError + ")"
		}
		b.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.16" stroke="%s" stroke-opacity="0.5"><title>%s</title></rect>`+"\n",
			xa, y0, xb-xa, y1-y0, c, c, html.EscapeString(tip))
		lx, anchor := xa+2, "start"
		if xa+float64(6*len(e.Name)) > x1 { // keep labels of late faults inside the plot
			lx, anchor = math.Min(xb, x1)-2, "end"
		}
		b.f(`<text x="%.1f" y="%d" fill="%s" font-size="10" font-weight="bold" text-anchor="%s">%s</text>`+"\n", lx, y0+11+12*(i%3), c, anchor, html.EscapeString(e.Name))
	}
}

// leaderLane draws who led when, above the plot area.
func (p plotData) leaderLane(b *svgBuf) {
	ly := y0 - 22
	b.f(`<text x="%d" y="%d" text-anchor="end" font-size="10">leader</text>`+"\n", x0-6, ly+10)
	b.f(`<rect x="%d" y="%d" width="%d" height="12" fill="#eeeeee"/>`+"\n", x0, ly, x1-x0)
	for i, s := range p.leaders {
		end := p.end
		if i+1 < len(p.leaders) {
			end = p.leaders[i+1].At
		}
		if s.Leader == "" || end <= s.At {
			continue
		}
		xa, xb := p.x(s.At), p.x(end)
		b.f(`<rect x="%.1f" y="%d" width="%.1f" height="12" fill="%s"><title>%s leader, term %d</title></rect>`+"\n", xa, ly, max(xb-xa, 0.5), nodeColor(s.Leader), s.Leader, s.Term)
		if xb-xa > 18 {
			b.f(`<text x="%.1f" y="%d" fill="white" font-size="9">%s</text>`+"\n", xa+2, ly+9, s.Leader)
		}
	}
}

// xAxis draws time ticks in seconds.
func (p plotData) xAxis(b *svgBuf) {
	secs := float64(p.end) / 1e9
	step := 1.0
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800} {
		step = s
		if secs/s <= 12 {
			break
		}
	}
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0, y1, x1, y1)
	for t := 0.0; t <= secs+1e-9; t += step {
		x := p.x(int64(t * 1e9))
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/><text x="%.1f" y="%d" text-anchor="middle">%gs</text>`+"\n", x, y1, x, y1+4, x, y1+16, t)
	}
	b.f(`<text x="%d" y="%d" text-anchor="middle">time since start of run</text>`+"\n", (x0+x1)/2, plotH-8)
}

func (p plotData) legend(b *svgBuf, items [][3]string) {
	y := y0 + 4
	lx := x1 + 16
	for _, it := range items { // kind (swatch|dot|tri|cross|head), colour, label
		switch it[0] {
		case "head":
			b.f(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", lx, y+9, html.EscapeString(it[2]))
		case "dot":
			b.f(`<circle cx="%d" cy="%d" r="3.5" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx+5, y+5, it[1], lx+16, y+9, html.EscapeString(it[2]))
		case "tri":
			b.f(`<path d="M%d %d l4 7 h-8 z" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx+5, y+1, it[1], lx+16, y+9, html.EscapeString(it[2]))
		case "ring":
			b.f(`<circle cx="%d" cy="%d" r="4.5" fill="none" stroke="%s" stroke-width="1.5"/><text x="%d" y="%d">%s</text>`+"\n", lx+5, y+5, it[1], lx+16, y+9, html.EscapeString(it[2]))
		case "cross":
			b.f(`<path d="M%d %d l7 7 M%d %d l-7 7" stroke="%s" stroke-width="1.6"/><text x="%d" y="%d">%s</text>`+"\n", lx+1, y+2, lx+8, y+2, it[1], lx+16, y+9, html.EscapeString(it[2]))
		default:
			b.f(`<rect x="%d" y="%d" width="10" height="10" fill="%s" fill-opacity="0.5"/><text x="%d" y="%d">%s</text>`+"\n", lx, y, it[1], lx+16, y+9, html.EscapeString(it[2]))
		}
		y += 16
	}
}

func (p plotData) faultLegend() [][3]string {
	seen := map[string]bool{}
	var names []string
	for _, e := range p.events {
		if !seen[e.Name] {
			seen[e.Name] = true
			names = append(names, e.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return [][3]string{{"head", "", "faults"}, {"swatch", "#ffffff", "none injected"}}
	}
	out := [][3]string{{"head", "", "faults (shaded)"}}
	for _, n := range names {
		out = append(out, [3]string{"swatch", faultColor(n), n})
	}
	return out
}

const (
	colRead    = "#2ca02c"
	colWrite   = "#1f77b4"
	colFail    = "#d62728"
	colUnknown = "#7f7f7f"
)

// latencySVG plots every operation's latency against its call time, log
// scale; unknown outcomes at the time the client gave up.
func latencySVG(p plotData) string {
	var b svgBuf
	p.header(&b, "Latency of every operation (log scale)")
	lo, hi := math.Inf(1), 0.0
	for _, r := range p.recs {
		ms := float64(max(r.Return-r.Call, 1000)) / 1e6
		lo, hi = math.Min(lo, ms), math.Max(hi, ms)
	}
	if hi == 0 {
		lo, hi = 0.1, 10
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi <= dLo {
		dHi = dLo + 1
	}
	y := func(ms float64) float64 {
		return y1 - (math.Log10(ms)-dLo)/(dHi-dLo)*float64(y1-y0)
	}
	p.faults(&b)
	for d := dLo; d <= dHi; d++ {
		yy := y(math.Pow(10, d))
		label := fmt.Sprintf("%g ms", math.Pow(10, d))
		if d >= 3 {
			label = fmt.Sprintf("%g s", math.Pow(10, d-3))
		}
		b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0, yy, x1, yy, x0-6, yy+4, label)
	}
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0, y0, x0, y1)
	b.f(`<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">latency</text>`+"\n", (y0+y1)/2)
	var reads, writes, fails, unknowns, rings strings.Builder
	for _, r := range p.recs {
		ms := float64(max(r.Return-r.Call, 1000)) / 1e6
		px, py := p.x(r.Call), y(ms)
		if p.flagged[r.ID] {
			fmt.Fprintf(&rings, "M%.1f %.1fa5 5 0 1 0 0.01 0z", px, py)
		}
		switch {
		case r.Outcome == linearizability.OutcomeFail:
			fmt.Fprintf(&fails, "M%.1f %.1fl4 4m0 -4l-4 4", px-2, py-2)
		case r.Outcome != linearizability.OutcomeOK:
			fmt.Fprintf(&unknowns, "M%.1f %.1fl2.5 4.5h-5z", px, py-2.5)
		case r.Type.IsWrite():
			fmt.Fprintf(&writes, "M%.1f %.1fa1.6 1.6 0 1 0 0.01 0z", px, py)
		default:
			fmt.Fprintf(&reads, "M%.1f %.1fa1.6 1.6 0 1 0 0.01 0z", px, py)
		}
	}
	b.f(`<path d="%s" fill="%s" fill-opacity="0.7"/>`+"\n", reads.String(), colRead)
	b.f(`<path d="%s" fill="%s" fill-opacity="0.7"/>`+"\n", writes.String(), colWrite)
	b.f(`<path d="%s" fill="%s"/>`+"\n", unknowns.String(), colUnknown)
	b.f(`<path d="%s" stroke="%s" stroke-width="1.2" fill="none"/>`+"\n", fails.String(), colFail)
	if rings.Len() > 0 {
		b.f(`<path d="%s" stroke="%s" stroke-width="1.5" fill="none"/>`+"\n", rings.String(), colFail)
	}
	p.leaderLane(&b)
	p.xAxis(&b)
	items := [][3]string{{"head", "", "operations"}, {"dot", colRead, "read ok"}, {"dot", colWrite, "write ok"},
		{"tri", colUnknown, "unknown (gave up)"}, {"cross", colFail, "failed (not applied)"}, {"ring", colFail, "named by an anomaly"}, {"head", "", ""}}
	p.legend(&b, append(items, p.faultLegend()...))
	b.f("</svg>\n")
	return b.String()
}

// throughputSVG stacks completed operations per time bucket by outcome.
func throughputSVG(p plotData) string {
	var b svgBuf
	bucket := max(int64(1e9), (p.end/100+int64(1e9)-1)/int64(1e9)*int64(1e9))
	n := int(p.end/bucket) + 1
	ok, unk, fail := make([]int, n), make([]int, n), make([]int, n)
	for _, r := range p.recs {
		i := min(max(int(r.Return/bucket), 0), n-1)
		switch r.Outcome {
		case linearizability.OutcomeOK:
			ok[i]++
		case linearizability.OutcomeFail:
			fail[i]++
		default:
			unk[i]++
		}
	}
	perSec := float64(bucket) / 1e9
	top := 1.0
	for i := range ok {
		top = math.Max(top, float64(ok[i]+unk[i]+fail[i])/perSec)
	}
	step := niceStep(top / 5)
	top = math.Ceil(top/step) * step
	p.header(&b, fmt.Sprintf("Throughput: completed operations per second (%gs buckets)", perSec))
	y := func(v float64) float64 { return y1 - v/top*float64(y1-y0) }
	p.faults(&b)
	for v := 0.0; v <= top+1e-9; v += step {
		b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", x0, y(v), x1, y(v), x0-6, y(v)+4, v)
	}
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0, y0, x0, y1)
	b.f(`<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">ops/s</text>`+"\n", (y0+y1)/2)
	for i := range ok {
		xa, xb := p.x(int64(i)*bucket), p.x(int64(i+1)*bucket)
		w := math.Max(xb-xa-1, 0.8)
		base := 0.0
		for _, seg := range []struct {
			v   int
			col string
		}{{ok[i], colRead}, {unk[i], colUnknown}, {fail[i], colFail}} {
			if seg.v == 0 {
				continue
			}
			v := float64(seg.v) / perSec
			b.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", xa, y(base+v), w, y(base)-y(base+v), seg.col)
			base += v
		}
	}
	p.leaderLane(&b)
	p.xAxis(&b)
	items := [][3]string{{"head", "", "completed"}, {"swatch", colRead, "ok"}, {"swatch", colUnknown, "unknown"}, {"swatch", colFail, "failed"}, {"head", "", ""}}
	p.legend(&b, append(items, p.faultLegend()...))
	b.f("</svg>\n")
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}
