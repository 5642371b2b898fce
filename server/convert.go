package server

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// jobToProto converts the runner's view of a job to the API's.
func jobToProto(st jobrunner.Status) *pb.Job {
	js := &pb.JobStatus{
		State:            stateToProto(st.State),
		ExitCode:         int32(st.ExitCode),
		Signal:           int32(st.Signal),
		Stopped:          st.Stopped,
		OomKilled:        st.OOMKilled,
		Stats:            statsToProto(st.Stats),
		OutputBytes:      st.OutputBytes,
		OutputTruncated:  st.OutputTruncated,
		EndReason:        endReasonToProto(st.Reason),
		CommandTruncated: st.CommandTruncated,
		// stream (issue 10.4-10.5)
		OutputTruncation:   truncationToProto(st.OutputTruncation),
		OutputDroppedBytes: st.OutputDropped,
		OutputError:        st.OutputError,
	}
	if st.State == jobrunner.StateRunning {
		js.ExitCode = -1 // the API's "no exit status yet"
	}
	if !st.Started.IsZero() {
		js.StartTime = timestamppb.New(st.Started)
	}
	if !st.Ended.IsZero() {
		js.EndTime = timestamppb.New(st.Ended)
	}
	return &pb.Job{
		Name:        jobName(st.ID),
		Owner:       st.Owner,
		Command:     st.Command,
		Args:        st.Args,
		WorkingDir:  st.Dir,
		Limits:      limitsToProto(st.Limits),
		Status:      js,
		Stdin:       st.Stdin,
		Tty:         st.TTY,
		Network:     st.Network,
		DisplayName: st.Name,
		Init:        st.Init,
	}
}

func stateToProto(s jobrunner.State) pb.State {
	switch s {
	case jobrunner.StateRunning:
		return pb.State_STATE_RUNNING
	case jobrunner.StateCompleted:
		return pb.State_STATE_COMPLETED
	case jobrunner.StateFailed:
		return pb.State_STATE_FAILED
	}
	return pb.State_STATE_UNSPECIFIED
}

func stateFromProto(s pb.State) (jobrunner.State, bool) {
	switch s {
	case pb.State_STATE_UNSPECIFIED:
		return 0, true
	case pb.State_STATE_RUNNING:
		return jobrunner.StateRunning, true
	case pb.State_STATE_COMPLETED:
		return jobrunner.StateCompleted, true
	case pb.State_STATE_FAILED:
		return jobrunner.StateFailed, true
	}
	return 0, false
}

func endReasonToProto(r jobrunner.EndReason) pb.EndReason {
	switch r {
	case jobrunner.ReasonStopped:
		return pb.EndReason_END_REASON_STOPPED
	case jobrunner.ReasonServerLost:
		return pb.EndReason_END_REASON_SERVER_LOST
	case jobrunner.ReasonServerShutdown:
		return pb.EndReason_END_REASON_SERVER_SHUTDOWN
	}
	return pb.EndReason_END_REASON_UNSPECIFIED
}

func truncationToProto(t jobrunner.Truncation) pb.TruncationReason {
	switch t {
	case jobrunner.TruncatedCap:
		return pb.TruncationReason_TRUNCATION_REASON_CAP
	case jobrunner.TruncatedWriteError:
		return pb.TruncationReason_TRUNCATION_REASON_WRITE_ERROR
	}
	return pb.TruncationReason_TRUNCATION_REASON_UNSPECIFIED
}

func streamToProto(s jobrunner.Stream) pb.Stream {
	switch s {
	case jobrunner.Stdout:
		return pb.Stream_STREAM_STDOUT
	case jobrunner.Stderr:
		return pb.Stream_STREAM_STDERR
	}
	return pb.Stream_STREAM_UNSPECIFIED
}

// limitsToProto converts sandbox limits to the API's (zero = no limit).
func limitsToProto(l sandbox.Limits) *pb.Limits {
	return &pb.Limits{
		CpuMilli:    l.CPUMilli,
		MemoryBytes: l.MemoryBytes,
		IoReadBps:   l.IOReadBPS,
		IoWriteBps:  l.IOWriteBPS,
		IoReadIops:  l.IOReadIOPS,
		IoWriteIops: l.IOWriteIOPS,
		Pids:        l.Pids,
		NetworkBps:  l.NetworkBPS,
	}
}

// limitsFromProto converts the API's limits to the sandbox's; nil is all
// zero.
func limitsFromProto(l *pb.Limits) sandbox.Limits {
	return sandbox.Limits{
		CPUMilli:    l.GetCpuMilli(),
		MemoryBytes: l.GetMemoryBytes(),
		IOReadBPS:   l.GetIoReadBps(),
		IOWriteBPS:  l.GetIoWriteBps(),
		IOReadIOPS:  l.GetIoReadIops(),
		IOWriteIOPS: l.GetIoWriteIops(),
		Pids:        l.GetPids(),
		NetworkBPS:  l.GetNetworkBps(),
	}
}

func statsToProto(s sandbox.Stats) *pb.Stats {
	return &pb.Stats{
		CpuUsage:           durationpb.New(s.CPUUsage),
		MemoryCurrentBytes: s.MemoryCurrent,
		MemoryPeakBytes:    s.MemoryPeak,
		IoReadBytes:        s.IOReadBytes,
		IoWriteBytes:       s.IOWriteBytes,
		OomKills:           s.OOMKills,
	}
}
