package linearizability

import (
	"fmt"
	"math/rand"
	"sort"
)

// simConfig drives simulate, which produces histories of a correct
// (linearizable, exactly-once) store: every applied operation takes effect
// at a linearization point inside its interval, or anywhere after its call
// for unknown ones.
type simConfig struct {
	kind       Kind
	seed       int64
	clients    int
	ops        int
	keys       int
	unknownPct int // percent of writes whose outcome the client never learns
	failPct    int // percent of writes rejected before reaching the log
	// identifiable: counter deltas are distinct powers of two per key.
	identifiable bool
	bank         BankOptions
}

type simOp struct {
	op      Op
	lin     int64 // linearization point
	applied bool  // takes effect (reaches the log) at lin
}

// simulate returns the history and the ids that reached the committed log.
func simulate(cfg simConfig) (History, map[string]bool) {
	rng := rand.New(rand.NewSource(cfg.seed))
	clock := make([]int64, cfg.clients)
	seq := make([]uint64, cfg.clients)
	var sims []*simOp
	written := make(map[string][]string) // key -> values put so far
	var retry []*Op                      // per client: unknown add to retry
	retry = make([]*Op, cfg.clients)
	accounts := cfg.bank.accounts()
	bits := make(map[string]int) // key -> next power of two (identifiable)
	for n := 0; n < cfg.ops; n++ {
		c := rng.Intn(cfg.clients)
		call := clock[c] + int64(rng.Intn(50))
		lin := call + 1 + int64(rng.Intn(100))
		ret := lin + 1 + int64(rng.Intn(100))
		op := Op{ID: fmt.Sprintf("c%d-%d", c, n), Client: c, Call: call, Return: ret, Outcome: OutcomeOK}
		key := fmt.Sprintf("k%d", rng.Intn(max(cfg.keys, 1)))
		switch cfg.kind {
		case KindRegister:
			op.Key = key
			switch r := rng.Intn(10); {
			case r < 4:
				op.Type = OpGet
			case r < 7:
				op.Type, op.Value = OpPut, fmt.Sprintf("v%d", n)
				written[key] = append(written[key], op.Value)
			case r < 9:
				op.Type, op.Value, op.Expected = OpCAS, fmt.Sprintf("v%d", n), "v-none"
				if w := written[key]; len(w) > 0 {
					op.Expected = w[len(w)-1-rng.Intn(min(len(w), 3))]
				}
				written[key] = append(written[key], op.Value)
			default:
				op.Type = OpDelete
			}
		case KindCounter:
			op.Key = key
			if r := retry[c]; r != nil && rng.Intn(2) == 0 { // retry the same increment
				op.Type, op.Key, op.Producer, op.Epoch, op.Seq, op.Delta = OpAdd, r.Key, r.Producer, r.Epoch, r.Seq, r.Delta
				retry[c] = nil
			} else if rng.Intn(3) == 0 || (cfg.identifiable && bits[key] > 61) {
				op.Type = OpRead
			} else {
				seq[c]++
				op.Type, op.Producer, op.Epoch, op.Seq, op.Delta = OpAdd, fmt.Sprintf("p%d", c), 1, seq[c], int64(1+rng.Intn(5))
				if cfg.identifiable {
					op.Delta = 1 << bits[key]
					bits[key]++
				}
				retry[c] = nil
			}
		case KindBank:
			if rng.Intn(3) == 0 {
				op.Type = OpReadAll
			} else {
				i := rng.Intn(len(accounts))
				j := (i + 1 + rng.Intn(len(accounts)-1)) % len(accounts)
				op.Type, op.From, op.To, op.Amount = OpTransfer, accounts[i], accounts[j], int64(1+rng.Intn(30))
			}
		}
		s := &simOp{op: op, lin: lin, applied: true}
		if op.Type.IsWrite() {
			switch r := rng.Intn(100); {
			case r < cfg.unknownPct:
				s.op.Outcome = OutcomeUnknown
				s.applied = rng.Intn(2) == 0
				s.lin = call + 1 + int64(rng.Intn(2000)) // may land long after the client gave up
				if op.Type == OpAdd {
					retry[c] = &s.op
				}
			case r < cfg.unknownPct+cfg.failPct:
				s.op.Outcome, s.applied = OutcomeFail, false
			}
		}
		clock[c] = ret + 1
		sims = append(sims, s)
	}
	// Final reads after everything settled.
	end := int64(0)
	for _, s := range sims {
		end = max(end, s.lin, s.op.Return)
	}
	finals := []Op{}
	switch cfg.kind {
	case KindRegister, KindCounter:
		typ := OpGet
		if cfg.kind == KindCounter {
			typ = OpRead
		}
		for k := 0; k < cfg.keys; k++ {
			finals = append(finals, Op{Type: typ, Key: fmt.Sprintf("k%d", k)})
		}
	case KindBank:
		finals = append(finals, Op{Type: OpReadAll})
	}
	for i, f := range finals {
		f.ID, f.Client, f.Call, f.Return, f.Outcome, f.Final = fmt.Sprintf("final-%d", i), i%cfg.clients, end+10, end+20, OutcomeOK, true
		sims = append(sims, &simOp{op: f, lin: end + 15, applied: true})
	}
	sort.SliceStable(sims, func(a, b int) bool { return sims[a].lin < sims[b].lin })
	applyAll(cfg, sims)
	committed := make(map[string]bool)
	h := make(History, 0, len(sims))
	for _, s := range sims {
		if s.applied && s.op.Type.IsWrite() {
			committed[s.op.ID] = true
		}
		h = append(h, s.op)
	}
	sort.SliceStable(h, func(a, b int) bool { return h[a].Call < h[b].Call })
	return h, committed
}

// applyAll executes operations in linearization order against a correct
// store and fills in the outputs of those whose client got an answer.
func applyAll(cfg simConfig, sims []*simOp) {
	reg := make(map[string]string)
	counters := make(map[string]int64)
	dedup := make(map[string]int64)
	bal := make(map[string]int64)
	for a, v := range cfg.bank.Initial {
		bal[a] = v
	}
	for _, s := range sims {
		if !s.applied {
			continue
		}
		op := &s.op
		ok := op.Outcome == OutcomeOK
		switch op.Type {
		case OpPut:
			reg[op.Key] = op.Value
		case OpDelete:
			delete(reg, op.Key)
		case OpGet:
			op.Result, op.Found = reg[op.Key]
		case OpCAS:
			v, found := reg[op.Key]
			applied := found && v == op.Expected
			if applied {
				reg[op.Key] = op.Value
			}
			if ok {
				op.Applied = &applied
			}
		case OpAdd:
			ident := incrementIdent(op)
			total, seen := dedup[ident]
			if !seen {
				counters[op.Key] += op.Delta
				total = counters[op.Key]
				dedup[ident] = total
			}
			if ok {
				op.Total = &total
			}
		case OpRead:
			t := counters[op.Key]
			op.Total = &t
		case OpTransfer:
			applied := !cfg.bank.NoNegative || bal[op.From] >= op.Amount
			if applied {
				bal[op.From] -= op.Amount
				bal[op.To] += op.Amount
			}
			if ok && !applied {
				op.Applied = &applied
			}
		case OpReadAll:
			op.Balances = make(map[string]int64, len(bal))
			for a, v := range bal {
				op.Balances[a] = v
			}
		}
	}
}
