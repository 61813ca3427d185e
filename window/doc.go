// Package window is cairn's pure windowing core: it decides, for a table
// with a windowing Spec, which windows an event updates, which session
// windows merge, whether an event is late, which windows close (become
// final) and expire (are evicted) as the table watermark advances, and how
// aggregate states and storage keys are encoded.
//
// The package does no I/O and reads no clock, no randomness and no map
// iteration order: every result is a function of its inputs, so all
// replicas applying the same Raft log reach byte-identical state. Time is
// event time in int64 Unix milliseconds and only moves through watermarks
// carried in the log.
//
// An FSM uses it like this, inside one Pebble batch per log entry:
//
//	eng, err := window.NewEngine(table, spec)     // spec from window.ParseSpec
//
//	// "add value v to key k at time t":
//	eff, err := eng.Apply(st, window.Event{Key: k, Time: t, Value: v}, tableWM)
//	for _, m := range eng.EffectMutations(eff) { /* batch.Set / batch.Delete */ }
//
//	// a producer watermark / idleness change:
//	newWM := window.TableWatermark(tableWM, producerWatermarks)
//	p, err := eng.Advance(st, tableWM, newWM)  // p.Closed: final results
//	for _, m := range eng.AdvanceMutations(p) { /* batch.Delete */ }
//	tableWM = newWM                              // persist it
//
// st implements State (Get and a forward Scan) over the batch, so reads see
// the batch's earlier writes. Semantics and the key layout are described in
// DESIGN.md.
package window
