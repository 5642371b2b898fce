package server

import (
	"context"
	"encoding/base64"
	"encoding/json"

	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/jobrunner"
)

// Paging of ListJobs (AIP-158). A page stops at the page size or once its
// jobs take maxPageBytes encoded, whichever comes first, so that no
// response nears the 4 MiB message limit whatever the jobs hold (each
// job's command line is kept to 4 KiB, so a job takes under ~5 KiB).
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxPageBytes    = 1 << 20
)

// pageToken is what a page token holds, base64url-encoded JSON: where the
// next page starts and the filters it was made for (a token is only valid
// with the same filters). It is opaque to clients; a forged one can only
// move the position, never widen what the caller may see.
type pageToken struct {
	Started int64  `json:"t"`
	ID      string `json:"i"`
	State   int32  `json:"s,omitempty"`
	Owner   string `json:"o,omitempty"`
}

func encodeToken(tok pageToken) string {
	b, _ := json.Marshal(tok) // cannot fail: strings and numbers
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (pageToken, error) {
	var tok pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &tok)
	}
	if err != nil || tok.ID == "" {
		return pageToken{}, errorf(errInvalidArgument, "page_token is not one this server made: start again without it")
	}
	return tok, nil
}

// ListJobs pages through the jobs the caller may see, newest first. A user
// sees its own jobs; asking for another owner's yields no jobs, exactly as
// a job of someone else's is answered like a missing one. An admin sees
// every job, or one owner's.
func (f *foreman) ListJobs(ctx context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errorf(errInvalidArgument, "page_size %d is negative", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	state, ok := stateFromProto(req.GetState())
	if !ok {
		return nil, errorf(errInvalidArgument, "state %d is not a job state", req.GetState())
	}
	if len(req.GetOwner()) > maxStringBytes {
		return nil, errorf(errInvalidArgument, "owner is %d bytes, more than the %d allowed", len(req.GetOwner()), maxStringBytes)
	}
	q := jobrunner.ListQuery{Owner: req.GetOwner(), State: state, Limit: size}
	if t := req.GetPageToken(); t != "" {
		tok, err := decodeToken(t)
		if err != nil {
			return nil, err
		}
		if tok.State != int32(req.GetState()) || tok.Owner != req.GetOwner() {
			return nil, errorf(errInvalidArgument, "page_token was made for other filters (state, owner): start again without it")
		}
		q.After = jobrunner.Cursor{Started: tok.Started, ID: tok.ID}
	}
	resp := &pb.ListJobsResponse{}
	if !who.isAdmin() {
		if q.Owner != "" && q.Owner != who.Name {
			return resp, nil
		}
		q.Owner = who.Name
	}
	page, more := f.runner.ListPage(q)
	bytes := 0
	for i, st := range page {
		j := jobToProto(st)
		bytes += proto.Size(j)
		if i > 0 && bytes > maxPageBytes {
			more = true
			break
		}
		resp.Jobs = append(resp.Jobs, j)
		q.After = jobrunner.CursorOf(st)
	}
	if more {
		resp.NextPageToken = encodeToken(pageToken{
			Started: q.After.Started, ID: q.After.ID, State: int32(req.GetState()), Owner: req.GetOwner(),
		})
	}
	return resp, nil
}

// DeleteJob removes an ended job of the caller's (any job, for an admin):
// its status and its output. A running job is FailedPrecondition unless
// force, which stops it first.
func (f *foreman) DeleteJob(ctx context.Context, req *pb.DeleteJobRequest) (*pb.DeleteJobResponse, error) {
	who, job, err := f.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := f.runner.Remove(ctx, job.ID, req.GetForce()); err != nil {
		return nil, jobErr(req.GetName(), err)
	}
	f.log.Info("job removed", "job", jobName(job.ID), "owner", job.Owner, "by", who.Name, "force", req.GetForce())
	return &pb.DeleteJobResponse{}, nil
}
