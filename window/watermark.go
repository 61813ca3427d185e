package window

// ProducerStatus is a producer's liveness as recorded in the log.
type ProducerStatus uint8

const (
	// ProducerActive producers hold the table watermark back.
	ProducerActive ProducerStatus = iota
	// ProducerIdle producers have declared they send nothing for now; they
	// do not hold the table watermark back, and may become active again.
	ProducerIdle
	// ProducerFinished producers will never send again. For the table
	// watermark they are treated exactly like idle ones (their last
	// watermark is not promoted to +infinity, which would close and evict
	// every window of the table).
	ProducerFinished
)

// ProducerWatermark is the latest watermark a producer sent for a table.
// The FSM should keep each producer's watermark monotonic (store the max of
// what it has received); TableWatermark does not rely on that.
type ProducerWatermark struct {
	Watermark int64
	Status    ProducerStatus
}

// TableWatermark computes a table's new watermark from its previous one and
// the watermarks of all producers writing to it (in any order: the result
// only depends on the multiset):
//
//   - if some producer is active: the minimum over active producers;
//   - if none is active but some are idle/finished: the maximum over them,
//     so the windows of a table whose producers all went quiet still close
//     (a producer that resumes below that watermark has its old events
//     treated as late);
//   - if there are no producers: prev;
//
// and never less than prev: watermarks do not go backwards.
func TableWatermark(prev int64, producers []ProducerWatermark) int64 {
	active, quiet := false, false
	lo, hi := int64(0), MinWatermark
	for _, p := range producers {
		if p.Status == ProducerIdle || p.Status == ProducerFinished {
			quiet = true
			hi = max(hi, p.Watermark)
			continue
		}
		// Active, or a status this version does not know: hold back.
		if !active || p.Watermark < lo {
			lo = p.Watermark
		}
		active = true
	}
	switch {
	case active:
		return max(prev, lo)
	case quiet:
		return max(prev, hi)
	}
	return prev
}
