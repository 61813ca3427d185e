package api

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// Checkpoint catalog calls. node names the member whose catalog a call
// addresses; "" means the current leader. Checkpoint ids may be the node's
// own snapshot id, the id from the node that created the checkpoint, or
// "latest".

// CheckpointFile is one file of a checkpoint.
type CheckpointFile struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
}

// Verification is the outcome of the last Verify of a checkpoint.
type Verification struct {
	Status       string           `json:"status"` // unverified, ok, corrupt, incomplete, unopenable
	At           time.Time        `json:"at,omitzero"`
	FilesChecked int64            `json:"files_checked"`
	BytesChecked int64            `json:"bytes_checked"`
	Missing      []CheckpointFile `json:"missing,omitempty"`
	Corrupt      []CheckpointFile `json:"corrupt,omitempty"` // quarantined
	Keys         int64            `json:"keys"`
	Problem      string           `json:"problem,omitempty"`
}

// CheckpointInfo summarises one checkpoint in a node's catalog.
type CheckpointInfo struct {
	ID           string        `json:"id"`
	CheckpointID string        `json:"checkpoint_id"`
	Index        uint64        `json:"index"`
	Term         uint64        `json:"term"`
	Created      time.Time     `json:"created,omitzero"`
	Duration     time.Duration `json:"duration_ns"`
	StateBytes   int64         `json:"state_bytes"`
	Files        int           `json:"files"`
	NewFiles     int           `json:"new_files"`
	NewBytes     int64         `json:"new_bytes"`
	SharedFiles  int           `json:"shared_files"`
	SharedBytes  int64         `json:"shared_bytes"`
	Source       string        `json:"source_node"`
	SourceAddr   string        `json:"source_address"`
	Pinned       bool          `json:"pinned"`
	Pending      bool          `json:"pending"`
	Missing      int           `json:"missing_files"`
	Verification Verification  `json:"verification"`
	// Producers are the committed producer sessions and source offsets at Index.
	Producers []CheckpointProducer `json:"producers"`
	Manifest  bool                 `json:"manifest"`
	Previous  string               `json:"previous,omitempty"`
	// StateIndex is the last entry the files hold when it is above Index
	// (the checkpoint was taken while entries were being applied).
	StateIndex uint64 `json:"state_index,omitempty"`
	// RebuiltFrom names the node whose copy this node's delta install
	// rebuilt the state from (its files are this node's own).
	RebuiltFrom string `json:"rebuilt_from,omitempty"`
}

// QuarantinedFile is a stored file found corrupt and moved aside.
type QuarantinedFile struct {
	Name  string    `json:"name"`
	Size  int64     `json:"size"`
	Moved time.Time `json:"moved"`
}

// CheckpointList is one node's catalog.
type CheckpointList struct {
	Node        string            `json:"node"`
	Checkpoints []CheckpointInfo  `json:"checkpoints"` // newest first
	Recovery    RecoveryEstimate  `json:"recovery"`
	Quarantined []QuarantinedFile `json:"quarantined,omitempty"`
}

// RecoveryEstimate is what a restart of the node would replay.
type RecoveryEstimate struct {
	AppliedIndex    uint64        `json:"applied_index"`
	CheckpointIndex uint64        `json:"checkpoint_index"`
	EntriesSince    uint64        `json:"entries_since"`
	SinceCheckpoint time.Duration `json:"since_checkpoint_ns"`
	EstimatedReplay time.Duration `json:"estimated_replay_ns"`
	ApplyRate       float64       `json:"apply_rate"`
	Target          time.Duration `json:"target_ns"`
}

// RaftServer is one member of a raft configuration.
type RaftServer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
}

// CheckpointDetail is one checkpoint in full.
type CheckpointDetail struct {
	Node string `json:"node"`
	CheckpointInfo
	FileList           []CheckpointFile `json:"file_list"`
	Configuration      []RaftServer     `json:"configuration"`
	ConfigurationIndex uint64           `json:"configuration_index"`
	PebbleFormat       uint64           `json:"pebble_format"`
}

// ExportProgress reports an export in flight; Done marks the final report.
type ExportProgress struct {
	Node          string        `json:"node"`
	ID            string        `json:"id"`
	CheckpointID  string        `json:"checkpoint_id"`
	FilesDone     int64         `json:"files_done"`
	FilesTotal    int64         `json:"files_total"`
	FilesUploaded int64         `json:"files_uploaded"`
	FilesSkipped  int64         `json:"files_skipped"` // already in the bucket
	BytesUploaded int64         `json:"bytes_uploaded"`
	BytesSkipped  int64         `json:"bytes_skipped"`
	BytesTotal    int64         `json:"bytes_total"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	Rate          float64       `json:"rate_bytes_per_s"`
	Done          bool          `json:"done"`
}

func unixMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func filesFromPB(fs []*pb.CheckpointFile) []CheckpointFile {
	if len(fs) == 0 {
		return nil
	}
	out := make([]CheckpointFile, len(fs))
	for i, f := range fs {
		out[i] = CheckpointFile{Name: f.GetName(), Size: f.GetSize(), Checksum: f.GetChecksum()}
	}
	return out
}

func verificationFromPB(v *pb.Verification) Verification {
	return Verification{Status: v.GetStatus(), At: unixMs(v.GetAtUnixMs()), FilesChecked: v.GetFilesChecked(),
		BytesChecked: v.GetBytesChecked(), Missing: filesFromPB(v.GetMissing()), Corrupt: filesFromPB(v.GetCorrupt()),
		Keys: v.GetKeys(), Problem: v.GetProblem()}
}

func checkpointFromPB(c *pb.CheckpointInfo) CheckpointInfo {
	out := CheckpointInfo{ID: c.GetId(), CheckpointID: c.GetCheckpointId(), Index: c.GetIndex(), Term: c.GetTerm(),
		Created: unixMs(c.GetCreatedUnixMs()), Duration: time.Duration(c.GetDurationUs()) * time.Microsecond,
		StateBytes: c.GetStateBytes(), Files: int(c.GetFiles()), NewFiles: int(c.GetNewFiles()), NewBytes: c.GetNewBytes(),
		SharedFiles: int(c.GetSharedFiles()), SharedBytes: c.GetSharedBytes(), Source: c.GetSourceNode(),
		SourceAddr: c.GetSourceAddress(), Pinned: c.GetPinned(), Pending: c.GetPending(), Missing: int(c.GetMissing()),
		Verification: verificationFromPB(c.GetVerification()), Manifest: c.GetManifest(), Previous: c.GetPrevious(),
		StateIndex: c.GetStateIndex(), RebuiltFrom: c.GetRebuiltFrom(),
		Producers: []CheckpointProducer{}}
	for _, p := range c.GetProducers() {
		q := CheckpointProducer{Name: p.GetName(), Epoch: p.GetEpoch(), LastSeq: p.GetLastSeq(), Offsets: []SourceOffset{}}
		for _, o := range p.GetOffsets() {
			q.Offsets = append(q.Offsets, SourceOffset{Source: o.GetSource(), Offset: o.GetOffset()})
		}
		out.Producers = append(out.Producers, q)
	}
	return out
}

func exportProgressFromPB(p *pb.ExportProgress) ExportProgress {
	return ExportProgress{Node: p.GetNode(), ID: p.GetId(), CheckpointID: p.GetCheckpointId(), FilesDone: p.GetFilesDone(),
		FilesTotal: p.GetFilesTotal(), FilesUploaded: p.GetFilesUploaded(), FilesSkipped: p.GetFilesSkipped(),
		BytesUploaded: p.GetBytesUploaded(), BytesSkipped: p.GetBytesSkipped(), BytesTotal: p.GetBytesTotal(),
		Elapsed: time.Duration(p.GetElapsedUs()) * time.Microsecond, Rate: p.GetRate(), Done: p.GetDone()}
}

// Checkpoints lists node's checkpoints (newest first), its recovery
// estimate and its quarantined files.
func (c *Client) Checkpoints(ctx context.Context, node string) (*CheckpointList, error) {
	var resp *pb.ListCheckpointsResponse
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewCheckpointClient(cc).List(ctx, &pb.ListCheckpointsRequest{Node: node}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	r := resp.GetRecovery()
	out := &CheckpointList{Node: resp.GetNode(), Checkpoints: []CheckpointInfo{}, Recovery: RecoveryEstimate{
		AppliedIndex: r.GetAppliedIndex(), CheckpointIndex: r.GetCheckpointIndex(), EntriesSince: r.GetEntriesSince(),
		SinceCheckpoint: seconds(r.GetSecondsSince()), EstimatedReplay: seconds(r.GetEstimatedReplaySeconds()),
		ApplyRate: r.GetApplyRate(), Target: seconds(r.GetTargetSeconds())}}
	for _, ci := range resp.GetCheckpoints() {
		out.Checkpoints = append(out.Checkpoints, checkpointFromPB(ci))
	}
	for _, q := range resp.GetQuarantined() {
		out.Quarantined = append(out.Quarantined, QuarantinedFile{Name: q.GetName(), Size: q.GetSize(), Moved: unixMs(q.GetMovedUnixMs())})
	}
	return out, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// ShowCheckpoint returns one checkpoint with its files and raft configuration.
func (c *Client) ShowCheckpoint(ctx context.Context, node, id string) (*CheckpointDetail, error) {
	var resp *pb.ShowCheckpointResponse
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewCheckpointClient(cc).Show(ctx, &pb.ShowCheckpointRequest{Node: node, Id: id}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	d := &CheckpointDetail{Node: resp.GetNode(), CheckpointInfo: checkpointFromPB(resp.GetCheckpoint()),
		FileList: filesFromPB(resp.GetFiles()), ConfigurationIndex: resp.GetConfigurationIndex(), PebbleFormat: resp.GetPebbleFormat()}
	for _, s := range resp.GetConfiguration() {
		d.Configuration = append(d.Configuration, RaftServer{ID: s.GetId(), Address: s.GetAddress(), Suffrage: s.GetSuffrage()})
	}
	return d, nil
}

// CreatedCheckpoint is the answer to CreateCheckpoint.
type CreatedCheckpoint struct {
	Node       string         `json:"node"` // the node that took it
	Checkpoint CheckpointInfo `json:"checkpoint"`
	// Created is false when nothing was applied since the node's newest
	// checkpoint, which is returned instead.
	Created bool `json:"created"`
}

// CreateCheckpoint takes a checkpoint (raft snapshot) on node now.
func (c *Client) CreateCheckpoint(ctx context.Context, node string) (*CreatedCheckpoint, error) {
	var resp *pb.CreateCheckpointResponse
	err := c.callLong(ctx, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewCheckpointClient(cc).Create(ctx, &pb.CreateCheckpointRequest{Node: node}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &CreatedCheckpoint{Node: resp.GetNode(), Checkpoint: checkpointFromPB(resp.GetCheckpoint()), Created: resp.GetCreated()}, nil
}

// VerifyCheckpoint rechecks every file of a checkpoint against its
// checksum (a corrupt one is quarantined) and opens it read-only. It
// takes as long as reading the checkpoint's state.
func (c *Client) VerifyCheckpoint(ctx context.Context, node, id string) (Verification, error) {
	var resp *pb.VerifyCheckpointResponse
	err := c.callLong(ctx, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewCheckpointClient(cc).Verify(ctx, &pb.VerifyCheckpointRequest{Node: node, Id: id}, o...)
		return err
	})
	if err != nil {
		return Verification{}, err
	}
	return verificationFromPB(resp.GetVerification()), nil
}

// PinCheckpoint exempts a checkpoint from retention until UnpinCheckpoint.
// id may be "latest"; the checkpoint pinned is returned.
func (c *Client) PinCheckpoint(ctx context.Context, node, id string) (*CheckpointInfo, error) {
	return c.pin(ctx, node, id, false)
}

// UnpinCheckpoint returns a checkpoint to retention, which may remove it at
// once: then the returned info is nil.
func (c *Client) UnpinCheckpoint(ctx context.Context, node, id string) (*CheckpointInfo, error) {
	return c.pin(ctx, node, id, true)
}

func (c *Client) pin(ctx context.Context, node, id string, unpin bool) (*CheckpointInfo, error) {
	var resp *pb.PinCheckpointResponse
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		req := &pb.PinCheckpointRequest{Node: node, Id: id}
		if unpin {
			resp, err = pb.NewCheckpointClient(cc).Unpin(ctx, req, o...)
		} else {
			resp, err = pb.NewCheckpointClient(cc).Pin(ctx, req, o...)
		}
		return err
	})
	if err != nil || resp.GetCheckpoint() == nil {
		return nil, err
	}
	in := checkpointFromPB(resp.GetCheckpoint())
	return &in, nil
}

// ExportCheckpoint has node upload a checkpoint to the bucket at url (opened
// on that node: file:// paths are the node's). Files the bucket already
// holds are skipped. progress, if not nil, receives the streamed reports;
// the final one (Done) is returned. A broken stream is retried from the
// start, which skips what was uploaded.
func (c *Client) ExportCheckpoint(ctx context.Context, node, id, url string, progress func(ExportProgress)) (ExportProgress, error) {
	var final ExportProgress
	err := c.callLong(ctx, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) error {
		st, err := pb.NewCheckpointClient(cc).Export(ctx, &pb.ExportCheckpointRequest{Node: node, Id: id, Url: url}, o...)
		if err != nil {
			return err
		}
		for {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "export stream ended before completion")
			}
			if err != nil {
				return err
			}
			p := exportProgressFromPB(m)
			if progress != nil {
				progress(p)
			}
			if p.Done {
				final = p
				return nil
			}
		}
	})
	return final, err
}

// callLong runs a call whose length grows with the state (create,
// verify, export): there is no per-attempt timeout and ctx alone bounds
// it. Only Unavailable answers are retried (nothing was done), for at
// most the client's retry budget.
func (c *Client) callLong(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) error) error {
	c.calls.Add(1)
	start := time.Now()
	backoff := c.cfg.BackoffMin
	for {
		cc, err := c.conn(c.pick())
		if err == nil {
			var hdr metadata.MD
			if err = fn(ctx, cc, grpc.Header(&hdr)); err == nil {
				if l := hdr.Get(MDLeader); len(l) > 0 {
					c.setLeader(l[0])
				}
				return nil
			}
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil || time.Since(start) > c.cfg.RetryBudget {
			return c.wrap(err, retryRead, false)
		}
		c.setLeader("")
		c.retries.Add(1)
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		case <-ctx.Done():
			return c.wrap(err, retryRead, false)
		}
		backoff = min(backoff*2, c.cfg.BackoffMax)
	}
}
