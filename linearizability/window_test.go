package linearizability

import (
	"bytes"
	"strings"
	"testing"
)

var testWindowOpts = WindowOptions{Size: 1000, Lateness: 2000, Retention: 3_600_000, NoLate: true, Watched: true}

// wcommitOp is an acknowledged window commit attempt.
func wcommitOp(id string, c int, producer string, epoch, seq uint64, wm int64, index uint64, call, ret int64, evs ...WindowEvent) Op {
	var late int64
	return Op{ID: id, Client: c, Type: OpWindowCommit, Producer: producer, Epoch: epoch, Seq: seq, Events: evs, Watermark: wm,
		Late: &late, LogIndex: index, Call: call, Return: ret, Outcome: OutcomeOK}
}

func wunknown(op Op) Op {
	op.Outcome, op.Late, op.LogIndex, op.Duplicate, op.Error = OutcomeUnknown, nil, 0, false, "context deadline exceeded"
	return op
}

func wfailed(op Op) Op {
	op.Outcome, op.Late, op.LogIndex, op.Duplicate, op.Error = OutcomeFail, nil, 0, false, "fenced"
	return op
}

func ev(key string, t, v int64) WindowEvent { return WindowEvent{Key: key, Time: t, Value: v} }

func win(start, value, count int64, closed bool) WindowValue {
	return WindowValue{Start: start, End: start + 1000, Value: value, Count: count, Closed: closed}
}

func wread(id string, c int, key string, final bool, call, ret int64, ws ...WindowValue) Op {
	return Op{ID: id, Client: c, Type: OpWindowRead, Key: key, Windows: ws, Final: final, Call: call, Return: ret, Outcome: OutcomeOK}
}

func delivery(id, pos, key string, w WindowValue, at int64) Op {
	w.Key, w.Closed = key, true
	return Op{ID: id, Client: 9, Type: OpWatch, Key: key, Windows: []WindowValue{w}, Position: pos, Call: at, Return: at, Outcome: OutcomeOK}
}

// validWindowHistory: producer 1 commits three events (one retried after
// an unknown attempt, one redelivered and answered as a duplicate);
// producer 2's first commit stays unknown (value 16, not applied), its
// next epoch commits one event and has one rejected; both send a final
// watermark; final reads and watch deliveries agree.
func validWindowHistory() History {
	redeliver := wcommitOp("c0-5", 0, "1", 1, 3, 60, 13, 45, 50, ev("b", 300, 1))
	redeliver.Duplicate = true
	return History{
		wcommitOp("c0-1", 0, "1", 1, 1, 0, 10, 0, 10, ev("a", 100, 1), ev("a", 1500, 1)),
		wunknown(wcommitOp("c0-2", 0, "1", 1, 2, 50, 0, 20, 30, ev("a", 200, 4))),
		wcommitOp("c0-3", 0, "1", 1, 2, 50, 12, 31, 35, ev("a", 200, 4)),
		wcommitOp("c0-4", 0, "1", 1, 3, 60, 13, 40, 44, ev("b", 300, 1)),
		redeliver,
		wunknown(wcommitOp("c1-1", 1, "2", 1, 1, 0, 0, 5, 25, ev("a", 700, 16))),
		wcommitOp("c1-2", 1, "2", 2, 1, 100, 14, 30, 40, ev("b", 1200, 1)),
		wfailed(wcommitOp("c1-3", 1, "2", 2, 2, 100, 0, 41, 42, ev("a", 900, 64))),
		wread("c2-1", 2, "a", false, 15, 16, win(0, 1, 1, false)),
		wcommitOp("c3-1", 3, "1", 2, 1, 10000, 20, 100, 110),
		wcommitOp("c3-2", 3, "2", 3, 1, 10000, 21, 111, 120),
		wread("c3-3", 3, "a", true, 130, 140, win(0, 5, 2, true), win(1000, 1, 1, true)),
		wread("c3-4", 3, "b", true, 141, 150, win(0, 1, 1, true), win(1000, 1, 1, true)),
		delivery("c4-1", "21/0", "a", win(0, 5, 2, true), 121),
		delivery("c4-2", "21/1", "a", win(1000, 1, 1, true), 122),
		delivery("c4-3", "21/2", "b", win(0, 1, 1, true), 123),
		delivery("c4-4", "21/3", "b", win(1000, 1, 1, true), 124),
	}
}

func findOp(h History, id string) *Op {
	for i := range h {
		if h[i].ID == id {
			return &h[i]
		}
	}
	panic("no op " + id)
}

func TestCheckWindowsValid(t *testing.T) {
	h := validWindowHistory()
	res := Check(h, KindWindow, Options{Window: testWindowOpts})
	if !res.OK() {
		t.Fatalf("valid history: %s", res.Summary())
	}
	s := res.Windows
	if s == nil || s.Acked != 6 || s.Unknown != 1 || s.Failed != 1 || s.Redelivered != 1 || s.MustEvents != 5 || s.MayEvents != 1 ||
		s.FailedEvents != 1 || s.Windows != 4 || !s.Identifiable || s.Deliveries != 4 || s.FinalReads != 2 || s.ClosedBy != 10000 {
		t.Fatalf("summary %+v", s)
	}
	// The unknown event may be counted once.
	h = validWindowHistory()
	findOp(h, "c3-3").Windows[0] = win(0, 21, 3, true)
	findOp(h, "c4-1").Windows[0].Value, findOp(h, "c4-1").Windows[0].Count = 21, 3
	if res := Check(h, KindWindow, Options{Window: testWindowOpts}); !res.OK() {
		t.Fatalf("unknown event counted once: %s", res.Summary())
	}
	// Round trip through JSON lines.
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, validWindowHistory()); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if res := Check(back, KindWindow, Options{Window: testWindowOpts}); !res.OK() {
		t.Fatalf("after JSON: %s", res.Summary())
	}
}

// TestCheckWindowsPlanted plants one fault at a time into the valid history
// and requires the checker to name it.
func TestCheckWindowsPlanted(t *testing.T) {
	setFinal := func(h History, id string, i int, value, count int64) {
		w := &findOp(h, id).Windows[i]
		w.Value, w.Count = value, count
	}
	cases := []struct {
		name string
		want AnomalyType
		edit func(h History) History
	}{
		{"dropped acknowledged event", AnomalyLostEvent, func(h History) History {
			setFinal(h, "c3-3", 0, 4, 1)
			setFinal(h, "c4-1", 0, 4, 1)
			return h
		}},
		{"duplicated event", AnomalyDuplicateEvent, func(h History) History {
			setFinal(h, "c3-3", 0, 6, 3)
			setFinal(h, "c4-1", 0, 6, 3)
			return h
		}},
		{"double watch delivery", AnomalyDuplicateDelivery, func(h History) History {
			return append(h, delivery("c4-5", "22/0", "a", win(0, 5, 2, true), 125))
		}},
		{"failed event counted", AnomalyPhantomEvent, func(h History) History {
			setFinal(h, "c3-3", 0, 69, 3)
			setFinal(h, "c4-1", 0, 69, 3)
			return h
		}},
		{"event counted before it was sent", AnomalyPhantomEvent, func(h History) History {
			setFinal(h, "c2-1", 0, 5, 2)
			return h
		}},
		{"committed unknown event lost", AnomalyLostEvent, func(h History) History {
			op := findOp(h, "c1-1")
			op.Outcome, op.Return, op.Resolved = OutcomeOK, InfiniteReturn, ResolvedCommitted
			return h
		}},
		{"window missing from the final read", AnomalyMissingWindow, func(h History) History {
			op := findOp(h, "c3-4")
			op.Windows = op.Windows[:1]
			return h
		}},
		{"window no event falls into", AnomalyExtraWindow, func(h History) History {
			op := findOp(h, "c3-3")
			op.Windows = append(op.Windows, win(5000, 1, 1, true))
			return h
		}},
		{"misaligned window", AnomalyExtraWindow, func(h History) History {
			findOp(h, "c3-3").Windows[1].End = 2500
			return h
		}},
		{"window open after the final watermark", AnomalyOpenWindow, func(h History) History {
			findOp(h, "c3-3").Windows[1].Closed = false
			return h
		}},
		{"count disagrees with value", AnomalyCountMismatch, func(h History) History {
			setFinal(h, "c3-3", 0, 5, 3)
			setFinal(h, "c4-1", 0, 5, 3)
			return h
		}},
		{"watch value differs from final read", AnomalyDeliveryMismatch, func(h History) History {
			setFinal(h, "c4-2", 0, 0, 0)
			return h
		}},
		{"closed window never delivered", AnomalyMissingDelivery, func(h History) History {
			return h[:len(h)-1]
		}},
		{"positions go back", AnomalyDeliveryOrder, func(h History) History {
			findOp(h, "c4-3").Position = "20/9"
			return h
		}},
		{"redelivery applied again", AnomalyConflictingResults, func(h History) History {
			op := findOp(h, "c0-5")
			op.Duplicate, op.LogIndex = false, 15
			return h
		}},
		{"acknowledged event rejected as late", AnomalyLateEvent, func(h History) History {
			one := int64(1)
			findOp(h, "c0-4").Late = &one
			return h
		}},
		{"retry with other events", AnomalyConflictingInputs, func(h History) History {
			findOp(h, "c0-3").Events = []WindowEvent{ev("a", 200, 16)}
			return h
		}},
		{"closed window read with another value", AnomalyClosedChanged, func(h History) History {
			findOp(h, "c2-1").Windows[0] = win(0, 1, 1, true)
			return h
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.edit(validWindowHistory())
			res := Check(h, KindWindow, Options{Window: testWindowOpts})
			if res.Verdict != VerdictIllegal {
				t.Fatalf("verdict %s, want illegal: %s", res.Verdict, res.Summary())
			}
			found := false
			for _, a := range res.Anomalies {
				if a.Checker != CheckerWindow {
					t.Errorf("anomaly from checker %q: %s", a.Checker, a)
				}
				found = found || a.Type == tc.want
			}
			if !found {
				t.Fatalf("no %s anomaly: %s", tc.want, res.Summary())
			}
			if !strings.Contains(res.Summary(), string(tc.want)) {
				t.Fatalf("summary does not show %s", tc.want)
			}
		})
	}
}

// A sequence number whose every attempt failed before reaching the log
// was never used: another commit under it is not a conflict (seen in CI: a
// producer gave up on a commit that found no leader and sent its next one
// with the same seq). Once an attempt may have been applied, it is.
func TestCheckWindowsSeqReusedAfterDefiniteFailures(t *testing.T) {
	h := validWindowHistory()
	h = append(h, wfailed(wcommitOp("c0-9", 0, "1", 1, 2, 50, 0, 17, 18, ev("b", 200, 2))))
	if res := Check(h, KindWindow, Options{Window: testWindowOpts}); res.Verdict == VerdictIllegal {
		t.Fatalf("a seq reused after attempts that all failed was flagged: %s", res.Summary())
	}
	h = validWindowHistory()
	h = append(h, wfailed(wcommitOp("c0-9", 0, "1", 1, 2, 50, 0, 32, 33, ev("b", 200, 2))))
	res := Check(h, KindWindow, Options{Window: testWindowOpts})
	if res.Verdict != VerdictIllegal || !strings.Contains(res.Summary(), string(AnomalyConflictingInputs)) {
		t.Fatalf("other inputs after a possibly applied attempt not flagged: %s", res.Summary())
	}
}

// Without NoLate, events of a commit acknowledged with late events may or
// may not be counted.
func TestCheckWindowsLateTolerated(t *testing.T) {
	h := validWindowHistory()
	one := int64(1)
	findOp(h, "c0-4").Late = &one
	findOp(h, "c3-4").Windows = findOp(h, "c3-4").Windows[1:]
	h = append(h[:len(h)-2], h[len(h)-1])
	opts := testWindowOpts
	opts.NoLate = false
	if res := Check(h, KindWindow, Options{Window: opts}); !res.OK() {
		t.Fatalf("late event left out: %s", res.Summary())
	}
}

func TestCheckWindowsNeedsSize(t *testing.T) {
	if res := Check(validWindowHistory(), KindWindow, Options{}); res.Verdict != VerdictInvalid {
		t.Fatalf("verdict %s without a window size", res.Verdict)
	}
	h := validWindowHistory()
	findOp(h, "c4-1").Position = ""
	if res := Check(h, KindWindow, Options{Window: testWindowOpts}); res.Verdict != VerdictInvalid {
		t.Fatalf("watch without position: %s", res.Verdict)
	}
}
