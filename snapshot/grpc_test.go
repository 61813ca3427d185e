package snapshot

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/snapshot/snapshotpb"
)

// fakeStream replays chunks as a FileService.Fetch client stream.
type fakeStream struct {
	grpc.ClientStream
	chunks []*snapshotpb.Chunk
}

func (f *fakeStream) Recv() (*snapshotpb.Chunk, error) {
	if len(f.chunks) == 0 {
		return nil, io.EOF
	}
	c := f.chunks[0]
	f.chunks = f.chunks[1:]
	return c, nil
}

func chunk(off int64, data string) *snapshotpb.Chunk {
	return &snapshotpb.Chunk{Offset: off, Data: []byte(data), Xxh3: xxh3.HashString(data)}
}

func TestChunkReaderChecksEveryChunk(t *testing.T) {
	bad := chunk(3, "def")
	bad.Xxh3++
	cases := []struct {
		name   string
		start  int64
		size   int64
		chunks []*snapshotpb.Chunk
		want   error // nil: reads "abcdef"[start:]
	}{
		{"whole", 0, 6, []*snapshotpb.Chunk{chunk(0, "abc"), chunk(3, "def")}, nil},
		{"resumed", 3, 6, []*snapshotpb.Chunk{chunk(3, "def")}, nil},
		{"bad checksum", 0, 6, []*snapshotpb.Chunk{chunk(0, "abc"), bad}, ErrCorrupt},
		{"gap", 0, 6, []*snapshotpb.Chunk{chunk(0, "abc"), chunk(4, "ef")}, ErrCorrupt},
		{"past the end", 0, 6, []*snapshotpb.Chunk{chunk(0, "abcdefg")}, ErrCorrupt},
		{"short", 0, 6, []*snapshotpb.Chunk{chunk(0, "abc")}, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idle := &idleCall{cancel: func() {}, timer: time.NewTimer(time.Hour), idle: time.Hour}
			r := &chunkReader{stream: &fakeStream{chunks: c.chunks}, idle: idle, off: c.start, size: c.size}
			defer r.Close()
			got, err := io.ReadAll(r)
			if c.want == nil {
				if err != nil || string(got) != "abcdef"[c.start:] {
					t.Fatalf("read %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("read %q, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestServerRefusesToServeCorruptFile(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 300, 1000, 1)
	_, m := checkpoint(t, a.Store, a.db, 10, 1)
	sst := largestSST(m)
	flipByte(t, a.files.path(sst.Checksum), 7)
	f := newFetcher(t)
	rc, err := f.Fetch(context.Background(), Source{NodeID: "a", Addr: a.addr}, sst, 0)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		_ = rc.Close()
	}
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("fetch of a corrupt file: %v, want DataLoss", err)
	}
	if q, _ := a.Quarantined(); len(q) != 1 {
		t.Fatalf("source quarantined %d files", len(q))
	}
	// Now it is simply not held.
	rc, err = f.Fetch(context.Background(), Source{NodeID: "a", Addr: a.addr}, sst, 0)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		_ = rc.Close()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("fetch after quarantine: %v, want NotFound", err)
	}
	conn, err := f.conn(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	var other File
	for _, x := range m.Files {
		if x.Checksum != sst.Checksum {
			other = x
			break
		}
	}
	has, err := snapshotpb.NewFileServiceClient(conn).Has(context.Background(), &snapshotpb.HasRequest{Files: []*snapshotpb.FileID{
		{Checksum: sst.Checksum, Size: sst.Size}, {Checksum: other.Checksum, Size: other.Size}, {Checksum: "../x", Size: 1}}})
	if err != nil || len(has.Present) != 3 || has.Present[0] || !has.Present[1] || has.Present[2] {
		t.Fatalf("Has: %v, %v", has, err)
	}
	if a.m.Totals().ServeFailures != 2 {
		t.Fatalf("serve failures %+v", a.m.Totals())
	}
}
