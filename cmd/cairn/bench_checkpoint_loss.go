package main

import (
	"math"
	"time"
)

// ckptLoss compares the Puts completed (counts per bucket, from the start
// of a write load of length dur) while create calls ran (spans) with the
// rate more than 1 s away from any of them.
func ckptLoss(counts []int64, bucket time.Duration, spans []ckptSpan, dur time.Duration) *ckptLoadResult {
	nb := len(counts)
	// Rates over time ranges, from the buckets (a partial bucket counts in
	// proportion).
	opsIn := func(from, to time.Duration) float64 {
		var n float64
		for b := int(from / bucket); b <= int(to/bucket) && b < nb; b++ {
			if b < 0 {
				continue
			}
			lo, hi := time.Duration(b)*bucket, time.Duration(b+1)*bucket
			ov := min(hi, to) - max(lo, from)
			if ov > 0 {
				n += float64(counts[b]) * float64(ov) / float64(bucket)
			}
		}
		return n
	}
	const tail = 500 * time.Millisecond
	var baseOps, baseT, durOps, durT, aftOps, aftT float64
	warm := time.Second
	for t := warm; t+time.Second <= dur-200*time.Millisecond; t += time.Second / 10 {
		near := false
		for _, s := range spans {
			if t+time.Second/10 > s.From-time.Second && t < s.To+time.Second {
				near = true
			}
		}
		if !near {
			baseOps += opsIn(t, t+time.Second/10)
			baseT += 0.1
		}
	}
	for _, s := range spans {
		durOps += opsIn(s.From, s.To)
		durT += (s.To - s.From).Seconds()
		aftOps += opsIn(s.To, s.To+tail)
		aftT += tail.Seconds()
	}
	rate := func(ops, t float64) float64 {
		if t == 0 {
			return math.NaN()
		}
		return ops / t
	}
	const bin = 50 * time.Millisecond
	around := make([]float64, 24)
	for i := range around {
		var ops float64
		for _, s := range spans {
			from := s.From - 200*time.Millisecond + time.Duration(i)*bin
			ops += opsIn(from, from+bin)
		}
		around[i] = math.Round(rate(ops, float64(len(spans))*bin.Seconds()))
	}
	r := &ckptLoadResult{DurationSec: dur.Seconds(), Creates: len(spans),
		BaselineOpsSec: rate(baseOps, baseT), DuringOpsSec: rate(durOps, durT), AfterOpsSec: rate(aftOps, aftT),
		AroundOpsSec: around}
	r.LossPct = 100 * (1 - r.DuringOpsSec/r.BaselineOpsSec)
	r.AfterLossPct = 100 * (1 - r.AfterOpsSec/r.BaselineOpsSec)
	r.OverallLossPct = 100 * (1 - rate(durOps+aftOps, durT+aftT)/r.BaselineOpsSec)
	runT := dur - 200*time.Millisecond - warm
	r.RunLossPct = 100 * (1 - rate(opsIn(warm, warm+runT), runT.Seconds())/r.BaselineOpsSec)
	if len(spans) > 0 {
		n := float64(len(spans))
		r.LostSec = (durT - durOps/r.BaselineOpsSec) / n
		r.LostWithAfterSec = (durT + aftT - (durOps+aftOps)/r.BaselineOpsSec) / n
		// One window's loss: percent, and seconds at the baseline rate.
		loss := func(from, to time.Duration) (pct, sec float64) {
			t, ops := (to - from).Seconds(), opsIn(from, to)
			return 100 * (1 - rate(ops, t)/r.BaselineOpsSec), t - ops/r.BaselineOpsSec
		}
		pct, sec := make([]float64, len(spans)), make([]float64, len(spans))
		for i, s := range spans {
			pct[i], sec[i] = loss(s.From, s.To)
		}
		r.MedianLossPct, r.MedianLostSec = median(pct), median(sec)
		r.Controls, r.ControlMedianLossPct, r.ControlMedianLostSec, r.PairedLossPct = ckptControls(spans, dur, warm, loss, opsIn)
		r.SecondPairs, r.SecondPairedLossPct = ckptSecondPairs(spans, dur, warm, opsIn)
	}
	return r
}

// ckptNext is when the create after spans[i] starts, or end for the last.
func ckptNext(spans []ckptSpan, i int, end time.Duration) time.Duration {
	if i+1 < len(spans) {
		return spans[i+1].From
	}
	return end
}

// ckptSecondPairs pairs the second from each create's start with the
// second starting midway between that start and the next create's (the
// run's end for the last), kept when it ends before the next create and
// inside the measured part of the run; it returns how many pairs there
// are and the creates' loss against them, pooled.
func ckptSecondPairs(spans []ckptSpan, dur, warm time.Duration, opsIn func(from, to time.Duration) float64) (int, float64) {
	end := dur - 200*time.Millisecond
	var n int
	var createOps, controlOps float64
	for i, s := range spans {
		next := ckptNext(spans, i, end)
		from := s.From + (next-s.From)/2
		to := from + time.Second
		if s.From < warm || from < s.From+time.Second || to > next || to > end {
			continue
		}
		n++
		createOps += opsIn(s.From, s.From+time.Second)
		controlOps += opsIn(from, to)
	}
	if n == 0 {
		return 0, math.NaN()
	}
	return n, 100 * (1 - createOps/controlOps)
}

// ckptControls measures loss the way ckptLoss does per create, in windows
// where no create runs: for each create, a window of its call's length
// centred midway between its end and the next create's start (the run's
// end for the last), kept only if it lies more than 1 s from every create
// and inside the measured part of the run. paired is the loss of the
// creates that have a control against their controls, pooled.
func ckptControls(spans []ckptSpan, dur, warm time.Duration, loss func(from, to time.Duration) (pct, sec float64),
	opsIn func(from, to time.Duration) float64) (n int, medPct, medSec, paired float64) {
	end := dur - 200*time.Millisecond
	var pct, sec []float64
	var createOps, controlOps float64
	for i, s := range spans {
		next := ckptNext(spans, i, end)
		l := s.To - s.From
		from := s.To + (next-s.To)/2 - l/2
		to := from + l
		ok := from >= warm && to <= end
		for _, o := range spans {
			if to > o.From-time.Second && from < o.To+time.Second {
				ok = false
			}
		}
		if !ok || l <= 0 {
			continue
		}
		p, x := loss(from, to)
		pct, sec = append(pct, p), append(sec, x)
		createOps += opsIn(s.From, s.To)
		controlOps += opsIn(from, to)
	}
	if len(pct) == 0 {
		return 0, math.NaN(), math.NaN(), math.NaN()
	}
	return len(pct), median(pct), median(sec), 100 * (1 - createOps/controlOps)
}
