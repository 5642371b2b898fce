package client

import (
	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/limits"
)

// limitsToProto converts the limit flags' values to the API's (zero = the
// server's default).
func limitsToProto(v limits.Values) *pb.Limits {
	return &pb.Limits{
		CpuMilli:    v.CPUMilli,
		MemoryBytes: v.MemoryBytes,
		IoReadBps:   v.IOReadBPS,
		IoWriteBps:  v.IOWriteBPS,
		IoReadIops:  v.IOReadIOPS,
		IoWriteIops: v.IOWriteIOPS,
		Pids:        v.Pids,
		NetworkBps:  v.NetworkBPS,
	}
}
