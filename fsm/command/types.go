package command

import "sort"

// Version is the envelope version written by this build.
const Version byte = 1

// Type identifies the kind of a command in the envelope.
type Type byte

// Command types. Values are persisted in the Raft log: never renumber.
const (
	TypeBatch            Type = 1 // atomic list of state operations, optionally from a producer session with offsets
	TypeRegisterProducer Type = 2 // open (or fence and reopen) a producer session by name
	TypeSetNodeMeta      Type = 3 // record a node's client-facing (gRPC) address
	TypeCreateTable      Type = 4 // create a windowed table
	TypeDropTable        Type = 5 // drop a windowed table
)

func (t Type) String() string {
	switch t {
	case TypeBatch:
		return "batch"
	case TypeRegisterProducer:
		return "register-producer"
	case TypeSetNodeMeta:
		return "set-node-meta"
	case TypeCreateTable:
		return "create-table"
	case TypeDropTable:
		return "drop-table"
	}
	return "unknown"
}

// Flags of the envelope.
const (
	FlagSnappy byte = 1 << 0
)

// OpKind is the kind of one state operation inside a Batch.
type OpKind byte

// Operation kinds. Persisted: never renumber.
const (
	OpPut       OpKind = 1 // Key = Value (bytes)
	OpDelete    OpKind = 2 // delete Key
	OpAdd       OpKind = 3 // Key += Num (int64, missing key counts as 0)
	OpMin       OpKind = 4 // Key = min(Key, Num) (missing key: Num)
	OpMax       OpKind = 5 // Key = max(Key, Num) (missing key: Num)
	OpCAS       OpKind = 6 // if Key == Expect (ExpectAbsent: Key missing) then Key = Value, else the whole batch fails
	OpWindowAdd OpKind = 7 // add Num at event time Time to Key in windowed table Table
)

func (k OpKind) String() string {
	switch k {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpAdd:
		return "add"
	case OpMin:
		return "min"
	case OpMax:
		return "max"
	case OpCAS:
		return "cas"
	case OpWindowAdd:
		return "window-add"
	}
	return "unknown"
}

// Op is one state operation.
type Op struct {
	Kind         OpKind
	Key          []byte
	Value        []byte // OpPut, OpCAS (new value)
	Expect       []byte // OpCAS: expected current value
	ExpectAbsent bool   // OpCAS: expect the key to be missing
	Num          int64  // OpAdd delta, OpMin/OpMax operand, OpWindowAdd value
	Table        string // OpWindowAdd
	Time         int64  // OpWindowAdd event time, Unix milliseconds
}

// Producer identifies the producer session a batch belongs to.
type Producer struct {
	ID    uint64
	Epoch uint64
	Seq   uint64
}

// Offset is a committed source position, e.g. "clicks/3" -> 1200.
type Offset struct {
	Source string
	Offset int64
}

// Watermark is a producer's event-time watermark for one source partition.
type Watermark struct {
	Source string
	Time   int64 // Unix milliseconds
	Idle   bool  // the partition is idle: it does not hold back table watermarks
	Done   bool  // the partition is finished for good
}

// Batch is an atomic list of operations. With a Producer it is deduplicated
// and fenced, and its Offsets and Watermarks commit with its operations.
type Batch struct {
	RequestID  uint64 // client-chosen id, lets a checker find the entry in the log; 0 = none
	Producer   *Producer
	Ops        []Op
	Offsets    []Offset
	Watermarks []Watermark
}

// Canonicalize sorts offsets and watermarks by source so that equal batches
// encode to equal bytes. Encode calls it.
func (b *Batch) Canonicalize() {
	sort.SliceStable(b.Offsets, func(i, j int) bool { return b.Offsets[i].Source < b.Offsets[j].Source })
	sort.SliceStable(b.Watermarks, func(i, j int) bool { return b.Watermarks[i].Source < b.Watermarks[j].Source })
}

// RegisterProducer opens a producer session by name, fencing older epochs.
type RegisterProducer struct {
	RequestID uint64
	Name      string
}

// SetNodeMeta records the gRPC address a node serves clients on.
type SetNodeMeta struct {
	NodeID   string
	GRPCAddr string
}

// CreateTable creates a windowed table; Spec is the window package's encoding.
type CreateTable struct {
	Name string
	Spec []byte
}

// DropTable drops a windowed table and all its state.
type DropTable struct {
	Name string
}

// Command is the decoded form of one log entry: exactly one field is set.
type Command struct {
	Type             Type
	Batch            *Batch
	RegisterProducer *RegisterProducer
	SetNodeMeta      *SetNodeMeta
	CreateTable      *CreateTable
	DropTable        *DropTable
}
