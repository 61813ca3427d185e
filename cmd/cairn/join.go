package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/node"
)

// joinCluster asks the cluster reachable at addr to add this node as a voter.
func joinCluster(ctx context.Context, addr string, cfg node.Config, grpcAddr string) error {
	ccfg := api.DefaultClientConfig(addr)
	tlsCfgs, err := cfg.TLS.Load()
	if err != nil {
		return err
	}
	if tlsCfgs != nil {
		ccfg.TLS = tlsCfgs.PeerClient // the node's own certificate, as for any call between members
	}
	c, err := api.NewClient(ccfg)
	if err != nil {
		return err
	}
	defer c.Close()
	raftAddr := cfg.RaftAdvertise
	if raftAddr == "" {
		raftAddr = cfg.RaftAddr
	}
	if cfg.GRPCAdvertise != "" {
		grpcAddr = cfg.GRPCAdvertise
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.AddNode(ctx, cfg.NodeID, raftAddr, grpcAddr, false); err != nil {
		return fmt.Errorf("join via %s: %w", addr, err)
	}
	return nil
}
