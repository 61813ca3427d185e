package api

import (
	"context"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm/command"
)

const codesNotFound = codes.NotFound

func (s *Server) localStatus() *pb.NodeStatus {
	st := s.raft.Status()
	pid := s.cfg.PID
	if pid == 0 {
		pid = int64(os.Getpid())
	}
	return &pb.NodeStatus{Id: st.ID, GrpcAddress: s.cfg.GRPCAddr, RaftAddress: st.RaftAddr, Role: st.Role,
		Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, Pid: pid,
		LeaderId: st.LeaderID, LastIndex: st.LastIndex, Ready: st.Ready}
}

// Status implements Cluster.Status: this node's view, plus (unless local)
// each member's own report, fetched in parallel; a member that does not
// answer is listed as unreachable.
func (s *Server) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	self := s.localStatus()
	if req.GetLocal() {
		return &pb.StatusResponse{Nodes: []*pb.NodeStatus{self}, LeaderId: self.LeaderId}, nil
	}
	members, err := s.raft.Members()
	if err != nil {
		// Raft is still starting here: report what this node knows.
		return &pb.StatusResponse{Nodes: []*pb.NodeStatus{self}, LeaderId: self.LeaderId}, nil
	}
	addrs, _ := s.state.NodeAddrs()
	out := make([]*pb.NodeStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.ID == s.cfg.NodeID {
			self.Voter = m.Voter
			out[i] = self
			continue
		}
		ns := &pb.NodeStatus{Id: m.ID, RaftAddress: m.Addr, GrpcAddress: addrs[m.ID], Voter: m.Voter, Role: "unreachable"}
		out[i] = ns
		if ns.GrpcAddress == "" {
			ns.Error = "client address not announced yet"
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := s.peerConn(ns.GrpcAddress)
			if err != nil {
				ns.Error = err.Error()
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := pb.NewClusterClient(conn).Status(cctx, &pb.StatusRequest{Local: true})
			if err != nil || len(r.GetNodes()) != 1 {
				if err != nil {
					ns.Error = err.Error()
				}
				return
			}
			got := r.GetNodes()[0]
			got.Voter = m.Voter
			out[i] = got
		}(i)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return &pb.StatusResponse{Nodes: out, LeaderId: self.LeaderId}, nil
}

// Announce implements Cluster.Announce (leader only; followers forward).
func (s *Server) Announce(ctx context.Context, req *pb.AnnounceRequest) (*pb.AnnounceResponse, error) {
	if req.GetId() == "" || req.GetGrpcAddress() == "" {
		return nil, invalid("announce needs id and grpc_address")
	}
	res, err := s.apply(ctx, &command.Command{Type: command.TypeSetNodeMeta,
		SetNodeMeta: &command.SetNodeMeta{NodeID: req.GetId(), GRPCAddr: req.GetGrpcAddress()}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewClusterClient, pb.ClusterClient.Announce)
	}
	if err == nil {
		err = resultError(res)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.AnnounceResponse{}, nil
}

// AddNode implements Cluster.AddNode.
func (s *Server) AddNode(ctx context.Context, req *pb.AddNodeRequest) (*pb.AddNodeResponse, error) {
	if req.GetId() == "" || req.GetRaftAddress() == "" {
		return nil, invalid("add node needs id and raft_address")
	}
	err := s.raft.AddMember(req.GetId(), req.GetRaftAddress(), !req.GetNonVoter())
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewClusterClient, pb.ClusterClient.AddNode)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetGrpcAddress() != "" {
		if _, err := s.Announce(ctx, &pb.AnnounceRequest{Id: req.GetId(), GrpcAddress: req.GetGrpcAddress()}); err != nil {
			return nil, err
		}
	}
	return &pb.AddNodeResponse{}, nil
}

// RemoveNode implements Cluster.RemoveNode.
func (s *Server) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("remove node needs an id")
	}
	err := s.raft.RemoveMember(req.GetId())
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewClusterClient, pb.ClusterClient.RemoveNode)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RemoveNodeResponse{}, nil
}

// TransferLeader implements Cluster.TransferLeader.
func (s *Server) TransferLeader(ctx context.Context, req *pb.TransferLeaderRequest) (*pb.TransferLeaderResponse, error) {
	err := s.raft.TransferLeadership(req.GetId())
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewClusterClient, pb.ClusterClient.TransferLeader)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	id, _ := s.raft.Leader()
	return &pb.TransferLeaderResponse{LeaderId: id}, nil
}

// AnnounceLoop makes sure this node's client address is in the replicated
// state (so that others can forward to it), retrying every 100 ms until it
// is (until then other members cannot reach this node's client port, and
// `cluster status` shows it unreachable); then it re-checks every 500 ms in
// case the state was restored from elsewhere.
func (s *Server) AnnounceLoop(ctx context.Context) {
	for {
		wait := 500 * time.Millisecond
		addrs, err := s.state.NodeAddrs()
		if err == nil && addrs[s.cfg.NodeID] != s.cfg.GRPCAddr && s.cfg.GRPCAddr != "" {
			wait = 100 * time.Millisecond
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = s.Announce(cctx, &pb.AnnounceRequest{Id: s.cfg.NodeID, GrpcAddress: s.cfg.GRPCAddr})
			cancel()
			if err != nil {
				s.log.Debug("announce: will retry", "err", err)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
