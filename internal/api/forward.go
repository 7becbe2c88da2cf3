package api

import (
	"context"
	"encoding/json"
	"net/http"

	"coffer/internal/compute"
	"coffer/internal/resource"
)

// Volume names the live disk whose volume a request acts on: by resource
// ID (the ARM routes) or by the volume's unique ID (the data plane's SAS
// URLs). New says the request may create the disk: when it has no home
// yet, it is created on the source disk's home (Source, a copy) or where
// placement says.
type Volume struct {
	DiskID   string
	UniqueID string
	New      bool
	Source   string
}

// Forwarder sends a request that acts on a live disk's volume to the node
// that holds the volume, when several nodes share the metadata store
// (server's forwarding). The home node authenticates and authorizes the
// request again from what the caller sent (its Authorization header, its
// SAS token): a forwarded request carries no identity of its own.
type Forwarder interface {
	// Forward serves hr on the node that holds (or is to create) v and
	// reports true, or reports false when that node is this one. body is
	// the request body when it has been read (nil: hr.Body, unread). An
	// error (such as 503 NodeUnavailable) is answered in the surface's
	// format by the caller.
	Forward(ctx context.Context, w http.ResponseWriter, hr *http.Request, body []byte, v Volume) (bool, error)
}

// diskVolume: the routes of a disk act on its volume; a PUT may create it,
// from a source disk's volume when it copies one.
func diskVolume(id func(*Request) resource.ID) func(*Request) (Volume, bool) {
	return func(r *Request) (Volume, bool) {
		v := Volume{DiskID: id(r).String()}
		if r.HTTP.Method == http.MethodPut {
			v.New = true
			v.Source = sourceDisk(r.Body)
		}
		return v, true
	}
}

// snapshotVolume: a snapshot's PUT reads its source disk's volume when the
// source is a disk (a snapshot of a snapshot reads the chunk store, which
// every node shares).
func snapshotVolume(r *Request) (Volume, bool) {
	if src := sourceDisk(r.Body); src != "" {
		return Volume{DiskID: src}, true
	}
	return Volume{}, false
}

// sourceDisk is the disk a PUT body's creationData.sourceResourceId names
// ("" when it names none, or the body does not decode: the handler then
// answers the error).
func sourceDisk(body []byte) string {
	var in struct {
		Properties struct {
			CreationData struct {
				SourceResourceID string `json:"sourceResourceId"`
			} `json:"creationData"`
		} `json:"properties"`
	}
	if json.Unmarshal(body, &in) != nil {
		return ""
	}
	id, err := resource.Parse(in.Properties.CreationData.SourceResourceID)
	if err != nil || !id.IsType(compute.Provider+"/"+compute.TypeDisks) {
		return ""
	}
	return id.String()
}

// forward hands the request to the Forwarder when its route acts on a live
// volume; it reports whether the request was served there.
func (s *Server) forward(ctx context.Context, rt *Route, req *Request, w http.ResponseWriter) (bool, error) {
	if s.Forwarder == nil || rt.Volume == nil {
		return false, nil
	}
	v, ok := rt.Volume(req)
	if !ok {
		return false, nil
	}
	return s.Forwarder.Forward(ctx, w, req.HTTP, req.Body, v)
}
