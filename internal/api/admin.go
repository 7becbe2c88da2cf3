package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"coffer/internal/operation"
)

// Maintenance is the storage engine's whole-store work, exposed to tenant
// administrators under Coffer.Admin. Each method returns a JSON-encodable
// result.
type Maintenance interface {
	Verify(ctx context.Context) (any, error)
	GC(ctx context.Context) (any, error)
	RebuildIndex(ctx context.Context) (any, error)
	Stats(ctx context.Context) (any, error)
}

// RegisterAdmin adds Coffer.Admin: POST verify, gc and rebuildIndex run as
// long-running operations (202 + Location to the result); GET stats answers
// at once. Only tenant administrators may call them.
func (s *Server) RegisterAdmin(m Maintenance) {
	v := IdentityVersions
	// Each runs as a durable operation on any node; verifying, collecting
	// and rebuilding again from the start is harmless.
	long := func(kind string, fn func(context.Context) (any, error)) func(context.Context, *Request) (*Response, error) {
		s.Operations.Register("admin/"+kind, func(ctx context.Context, _ operation.Record) (any, error) { return fn(ctx) })
		return func(ctx context.Context, r *Request) (*Response, error) {
			op, err := s.Operations.Start(ctx, operation.Record{ResourceID: "/providers/Coffer.Admin", Kind: "admin/" + kind,
				CreatedBy: r.Principal.ID}, nil)
			if err != nil {
				return nil, err
			}
			q := url.Values{"api-version": {r.APIVersion}}
			resp := &Response{Status: http.StatusAccepted}
			resp.SetHeader("Location", r.URL("/providers/Coffer.Admin/operationResults/"+op.ID, q))
			resp.SetHeader("Retry-After", fmt.Sprint(RetryAfter))
			return resp, nil
		}
	}
	s.Handle(
		Route{Method: "POST", Pattern: "/providers/Coffer.Admin/verify", Type: "Coffer.Admin", Versions: v,
			TenantAction: "Coffer.Admin/verify/action", Handle: long("verify", m.Verify)},
		Route{Method: "POST", Pattern: "/providers/Coffer.Admin/gc", Type: "Coffer.Admin", Versions: v,
			TenantAction: "Coffer.Admin/gc/action", Handle: long("gc", m.GC)},
		Route{Method: "POST", Pattern: "/providers/Coffer.Admin/rebuildIndex", Type: "Coffer.Admin", Versions: v,
			TenantAction: "Coffer.Admin/rebuildIndex/action", Handle: long("rebuildIndex", m.RebuildIndex)},
		Route{Method: "GET", Pattern: "/providers/Coffer.Admin/stats", Type: "Coffer.Admin", Versions: v,
			TenantAction: ActionAdminStatsRead,
			Handle: func(ctx context.Context, r *Request) (*Response, error) {
				res, err := m.Stats(ctx)
				if err != nil {
					return nil, err
				}
				return JSON(http.StatusOK, res), nil
			}},
	)
}

// ActionAdminStatsRead reads the storage engine's statistics (a
// tenant-level action; the portal's storage figures need it too).
const ActionAdminStatsRead = "Coffer.Admin/stats/read"
