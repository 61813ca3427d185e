package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/snapshot/snapshotpb"
)

// DefaultChunkSize is the data carried per Chunk message (well under
// gRPC's 4 MiB default message limit).
const DefaultChunkSize = 1 << 20

// Server serves the store's files to peers (snapshotpb.FileService).
type Server struct {
	snapshotpb.UnimplementedFileServiceServer
	s         *Store
	chunkSize int
}

// NewServer returns the FileService of s. Register it on the node's gRPC
// server with Register (or snapshotpb.RegisterFileServiceServer).
func NewServer(s *Store) *Server { return &Server{s: s, chunkSize: DefaultChunkSize} }

// Register adds the service to a gRPC server.
func (srv *Server) Register(r grpc.ServiceRegistrar) { snapshotpb.RegisterFileServiceServer(r, srv) }

// Fetch streams a file from the requested offset. Only complete files are
// served. A full read (offset 0) also rechecks the checksum: a corrupt copy
// is quarantined and the stream ends with DataLoss.
func (srv *Server) Fetch(req *snapshotpb.FetchRequest, stream grpc.ServerStreamingServer[snapshotpb.Chunk]) error {
	st := ServeStats{Checksum: req.GetFile().GetChecksum(), Offset: req.GetOffset()}
	err := srv.fetch(req, stream, &st)
	st.Err = err
	srv.s.metrics.FileServed(st)
	return err
}

func (srv *Server) fetch(req *snapshotpb.FetchRequest, stream grpc.ServerStreamingServer[snapshotpb.Chunk], st *ServeStats) error {
	id := req.GetFile()
	if !validChecksum(id.GetChecksum()) {
		return status.Errorf(codes.InvalidArgument, "malformed checksum %q", id.GetChecksum())
	}
	path := srv.s.files.path(id.GetChecksum())
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(codes.NotFound, "file %s not held", id.GetChecksum())
	}
	if err != nil {
		return status.Errorf(codes.Internal, "open: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return status.Errorf(codes.Internal, "stat: %v", err)
	}
	// The content is the first Size bytes: a linked WAL is longer (see
	// fileStore).
	end := id.GetSize()
	if fi.Size() < end {
		return status.Errorf(codes.FailedPrecondition, "file %s has %d bytes here, %d requested", id.GetChecksum(), fi.Size(), end)
	}
	off := req.GetOffset()
	if off < 0 || off > end {
		return status.Errorf(codes.OutOfRange, "offset %d outside [0,%d]", off, end)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return status.Errorf(codes.Internal, "seek: %v", err)
	}
	size := srv.chunkSize
	if c := int(req.GetChunkSize()); c > 0 && c < size {
		size = c
	}
	var whole *xxh3.Hasher
	if off == 0 {
		whole = xxh3.New()
	}
	buf := make([]byte, size)
	for off < end {
		n, err := io.ReadFull(f, buf[:min(int64(size), end-off)])
		if err != nil {
			return status.Errorf(codes.Internal, "read at %d: %v", off, err)
		}
		data := buf[:n]
		if whole != nil {
			_, _ = whole.Write(data)
		}
		if err := stream.Send(&snapshotpb.Chunk{Offset: off, Data: data, Xxh3: xxh3.Hash(data)}); err != nil {
			return err
		}
		off += int64(n)
		st.Bytes += int64(n)
	}
	if whole != nil && checksumHex(whole.Sum128()) != id.GetChecksum() {
		_, _ = srv.s.files.moveAside(path, id.GetChecksum())
		srv.s.log.Error("snapshot: served file does not match its checksum; quarantined", "checksum", id.GetChecksum())
		return status.Errorf(codes.DataLoss, "file %s is corrupt here", id.GetChecksum())
	}
	return nil
}

// Has reports which files are held completely.
func (srv *Server) Has(_ context.Context, req *snapshotpb.HasRequest) (*snapshotpb.HasResponse, error) {
	out := &snapshotpb.HasResponse{Present: make([]bool, len(req.GetFiles()))}
	for i, id := range req.GetFiles() {
		if !validChecksum(id.GetChecksum()) {
			continue
		}
		ok, _, err := srv.s.files.stat(File{Checksum: id.GetChecksum(), Size: id.GetSize()})
		out.Present[i] = err == nil && ok
	}
	return out, nil
}

// GRPCFetcher fetches files from peers' FileService. It keeps one client
// connection per address; Close releases them.
type GRPCFetcher struct {
	// IdleTimeout aborts a transfer when no chunk arrived for this long
	// (the partial file is kept). Zero means 30s.
	IdleTimeout time.Duration
	// ChunkSize requested from the server; 0 means the server's default.
	ChunkSize int

	opts  []grpc.DialOption
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

var _ Fetcher = (*GRPCFetcher)(nil)

// NewGRPCFetcher returns a Fetcher dialing peers with opts, which must
// include transport credentials (for example
// grpc.WithTransportCredentials(insecure.NewCredentials()), or the TLS
// credentials the node's other gRPC clients use).
func NewGRPCFetcher(opts ...grpc.DialOption) *GRPCFetcher {
	return &GRPCFetcher{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Conn returns the fetcher's connection to addr (dialled with its options),
// for other calls to the same node; the fetcher owns and closes it.
func (g *GRPCFetcher) Conn(addr string) (*grpc.ClientConn, error) { return g.conn(addr) }

func (g *GRPCFetcher) conn(addr string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, g.opts...)
	if err != nil {
		return nil, err
	}
	g.conns[addr] = c
	return c, nil
}

// Fetch implements Fetcher. Every chunk's offset and checksum is checked;
// the stream ending before the file's end is an error, not EOF.
func (g *GRPCFetcher) Fetch(ctx context.Context, from Source, f File, offset int64) (io.ReadCloser, error) {
	client, ctx, ic, err := g.call(ctx, from.Addr)
	if err != nil {
		return nil, err
	}
	stream, err := client.Fetch(ctx, &snapshotpb.FetchRequest{
		File: &snapshotpb.FileID{Checksum: f.Checksum, Size: f.Size}, Offset: offset, ChunkSize: uint32(g.ChunkSize),
	})
	if err != nil {
		ic.stop()
		return nil, err
	}
	return &chunkReader{stream: stream, idle: ic, off: offset, size: f.Size}, nil
}

// call returns addr's FileService client and a context for one call,
// cancelled when nothing arrived for IdleTimeout (default 30s).
func (g *GRPCFetcher) call(ctx context.Context, addr string) (snapshotpb.FileServiceClient, context.Context, *idleCall, error) {
	c, err := g.conn(addr)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ic := &idleCall{cancel: cancel, idle: g.IdleTimeout}
	if ic.idle <= 0 {
		ic.idle = 30 * time.Second
	}
	ic.timer = time.AfterFunc(ic.idle, cancel)
	return snapshotpb.NewFileServiceClient(c), ctx, ic, nil
}

// idleCall cancels a streaming call's context unless touched within idle.
type idleCall struct {
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
}

// touch restarts the idle period: something arrived.
func (c *idleCall) touch() { c.timer.Reset(c.idle) }

// stop ends the call.
func (c *idleCall) stop() {
	c.timer.Stop()
	c.cancel()
}

// Close closes every connection.
func (g *GRPCFetcher) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for addr, c := range g.conns {
		errs = append(errs, c.Close())
		delete(g.conns, addr)
	}
	return errors.Join(errs...)
}

type chunkReader struct {
	stream    grpc.ServerStreamingClient[snapshotpb.Chunk]
	idle      *idleCall
	buf       []byte
	off, size int64
	err       error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		c, err := r.stream.Recv()
		switch {
		case errors.Is(err, io.EOF) && r.off == r.size:
			r.err = io.EOF
		case errors.Is(err, io.EOF):
			r.err = fmt.Errorf("snapshot: stream ended at %d of %d bytes: %w", r.off, r.size, io.ErrUnexpectedEOF)
		case err != nil:
			r.err = err
		case c.GetOffset() != r.off:
			r.err = fmt.Errorf("%w: chunk at offset %d, expected %d", ErrCorrupt, c.GetOffset(), r.off)
		case xxh3.Hash(c.GetData()) != c.GetXxh3():
			r.err = fmt.Errorf("%w: chunk at offset %d fails its checksum", ErrCorrupt, c.GetOffset())
		case r.off+int64(len(c.GetData())) > r.size:
			r.err = fmt.Errorf("%w: chunk runs past the file's end", ErrCorrupt)
		default:
			r.idle.touch()
			r.buf = c.GetData()
			r.off += int64(len(r.buf))
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error {
	r.idle.stop()
	return nil
}
