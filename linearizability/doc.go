// Package linearizability holds the history format and the checkers used by
// cairn's Jepsen-style harness.
//
// A run produces a [History]: one [Op] per client request, written one JSON
// object per line (history.jsonl, see [Recorder], [WriteJSONL],
// [ReadJSONL]). Each record carries a unique request id, the operation and
// its inputs and outputs, call and return times in monotonic nanoseconds
// since the start of the run, and an [Outcome]: ok, fail (definitely not
// applied) or unknown (may or may not have been applied).
//
// [Check] runs the checkers for a workload [Kind]:
//
//   - register: put/get/cas/delete on string keys, checked for
//     linearizability with porcupine ([RegisterModel]), per key;
//   - counter: exactly-once increments identified by (producer, epoch,
//     seq), checked with porcupine ([CounterModel]) per key and by the
//     accounting checker [CheckExactlyOnce];
//   - bank: atomic transfers and read-all, checked with porcupine
//     ([BankModel]) and the invariant checker [CheckBankInvariants];
//   - window: producer commits of window events, reads of windows and
//     watch deliveries, checked against the acknowledged input by
//     [CheckWindows].
//
// Failed operations are dropped before model checking. Operations with
// unknown outcome are given an infinite return time ([InfiniteReturn]) and
// are stepped by the models without checking their output, so they may
// take effect at any point after their call, or never. [ResolveUnknowns]
// narrows unknown writes using the request ids found in the committed Raft
// log. Illegal partitions are rendered with porcupine's HTML visualiser
// into [Options.VisualizeDir].
//
// This package must not import anything else from cairn. See README.md
// for what each checker proves and what it cannot detect.
package linearizability
