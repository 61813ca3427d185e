package command

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleCommands() []*Command {
	return []*Command{
		{Type: TypeBatch, Batch: &Batch{Ops: []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v")}}}},
		{Type: TypeBatch, Batch: &Batch{
			RequestID: 42,
			Producer:  &Producer{ID: 7, Epoch: 2, Seq: 99},
			Ops: []Op{
				{Kind: OpAdd, Key: []byte("clicks/a"), Num: -3},
				{Kind: OpMin, Key: []byte("m"), Num: 1 << 40},
				{Kind: OpMax, Key: []byte("M"), Num: -(1 << 40)},
				{Kind: OpDelete, Key: []byte("gone")},
				{Kind: OpCAS, Key: []byte("c"), Expect: []byte("old"), Value: []byte("new")},
				{Kind: OpCAS, Key: []byte("c2"), ExpectAbsent: true, Value: []byte("first")},
				{Kind: OpWindowAdd, Key: []byte("page"), Table: "t", Time: -5, Num: 1},
			},
			Offsets:    []Offset{{Source: "b", Offset: 2}, {Source: "a", Offset: 1}},
			Watermarks: []Watermark{{Source: "p0", Time: 100, Idle: true}, {Source: "p1", Time: 5, Done: true}},
		}},
		{Type: TypeRegisterProducer, RegisterProducer: &RegisterProducer{RequestID: 1, Name: "op-1"}},
		{Type: TypeSetNodeMeta, SetNodeMeta: &SetNodeMeta{NodeID: "n1", GRPCAddr: "127.0.0.1:7101"}},
		{Type: TypeCreateTable, CreateTable: &CreateTable{Name: "t", Spec: []byte{1, 2, 3}}},
		{Type: TypeDropTable, DropTable: &DropTable{Name: "t"}},
		{Type: TypeBatch, Batch: &Batch{Ops: []Op{{Kind: OpPut, Key: []byte("big"), Value: bytes.Repeat([]byte("abc"), 10000)}}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%v: decode: %v", c.Type, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%v: round trip mismatch\n got %+v\nwant %+v", c.Type, got, c)
		}
		// Canonical: re-encoding the decoded command gives the same bytes.
		b2 := MustEncode(got)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%v: encoding is not canonical", c.Type)
		}
	}
}

func TestCompressionKicksIn(t *testing.T) {
	c := sampleCommands()[len(sampleCommands())-1]
	b := MustEncode(c)
	if b[2]&FlagSnappy == 0 || len(b) > 5000 {
		t.Fatalf("large repetitive payload not compressed: flags=%#x len=%d", b[2], len(b))
	}
}

func TestOffsetsCanonicalOrder(t *testing.T) {
	a := &Command{Type: TypeBatch, Batch: &Batch{Offsets: []Offset{{Source: "x", Offset: 1}, {Source: "a", Offset: 2}}}}
	b := &Command{Type: TypeBatch, Batch: &Batch{Offsets: []Offset{{Source: "a", Offset: 2}, {Source: "x", Offset: 1}}}}
	if !bytes.Equal(MustEncode(a), MustEncode(b)) {
		t.Fatal("offset order changes the encoding")
	}
}

func TestDecodeErrors(t *testing.T) {
	good := MustEncode(sampleCommands()[1])
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"short", []byte{1, 1}, ErrCorrupt},
		{"version", append([]byte{9}, good[1:]...), ErrVersion},
		{"type", []byte{1, 200, 0}, ErrUnknownType},
		{"flags", []byte{1, 1, 0x80, 0}, ErrCorrupt},
		{"truncated", good[:len(good)-3], ErrCorrupt},
		{"trailing", append(append([]byte{}, good...), 0), ErrCorrupt},
		{"bad snappy", []byte{1, 1, FlagSnappy, 0xff, 0xff, 0xff}, ErrCorrupt},
		{"huge count", []byte{1, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrCorrupt},
	}
	for _, tc := range cases {
		_, err := Decode(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	r := &Result{Index: 9, Code: CodeCASFailed, Message: "cas failed on \"k\"", Duplicate: true, Nums: []int64{1, -2}, Producer: 3, Epoch: 4, Late: 5, LastSeq: 6}
	got, err := DecodeResult(EncodeResult(nil, r))
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := DecodeResult([]byte{1, 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated result: %v", err)
	}
	if !strings.Contains(CodeFenced.String(), "fenced") {
		t.Fatal(CodeFenced.String())
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(MustEncode(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same command.
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("decoded command does not encode: %v", err)
		}
		c2, err := Decode(b)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode mismatch: %v", err)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(EncodeResult(nil, &Result{Index: 1, Nums: []int64{1}}))
	f.Fuzz(func(t *testing.T, data []byte) { _, _ = DecodeResult(data) })
}
