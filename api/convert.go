package api

import (
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
)

var opKinds = map[pb.Op_Kind]command.OpKind{
	pb.Op_PUT: command.OpPut, pb.Op_DELETE: command.OpDelete, pb.Op_ADD: command.OpAdd,
	pb.Op_MIN: command.OpMin, pb.Op_MAX: command.OpMax, pb.Op_CAS: command.OpCAS, pb.Op_WINDOW_ADD: command.OpWindowAdd,
}

func opsFromPB(in []*pb.Op) []command.Op {
	out := make([]command.Op, len(in))
	for i, o := range in {
		out[i] = command.Op{Kind: opKinds[o.GetKind()], Key: o.GetKey(), Value: o.GetValue(), Expect: o.GetExpect(),
			ExpectAbsent: o.GetExpectAbsent(), Num: o.GetNum(), Table: o.GetTable(), Time: o.GetTime()}
	}
	return out
}

func offsetsFromPB(in []*pb.Offset) []command.Offset {
	out := make([]command.Offset, len(in))
	for i, o := range in {
		out[i] = command.Offset{Source: o.GetSource(), Offset: o.GetOffset()}
	}
	return out
}

func offsetsToPB(in []command.Offset) []*pb.Offset {
	out := make([]*pb.Offset, len(in))
	for i, o := range in {
		out[i] = &pb.Offset{Source: o.Source, Offset: o.Offset}
	}
	return out
}

func watermarksFromPB(in []*pb.Watermark) []command.Watermark {
	out := make([]command.Watermark, len(in))
	for i, w := range in {
		out[i] = command.Watermark{Source: w.GetSource(), Time: w.GetTime(), Idle: w.GetIdle(), Done: w.GetDone()}
	}
	return out
}

func watermarksToPB(in []command.Watermark) []*pb.Watermark {
	out := make([]*pb.Watermark, len(in))
	for i, w := range in {
		out[i] = &pb.Watermark{Source: w.Source, Time: w.Time, Idle: w.Idle, Done: w.Done}
	}
	return out
}

func valueToPB(v fsm.Value) *pb.Value {
	if v.Kind == fsm.KindInt {
		return &pb.Value{Kind: &pb.Value_Int{Int: v.Int}}
	}
	return &pb.Value{Kind: &pb.Value_Bytes{Bytes: v.Bytes}}
}
