package server

import (
	"context"
	"net/http"

	"coffer/internal/cluster"
	"coffer/internal/portal"
)

// openPortal builds the web portal on the services the API uses and puts
// it in front of the API: a request the portal owns (its pages, assets and
// sign-in) goes to it, everything else to the API. Its sign-in forms'
// key is a secret every node shares, so that a form one node served may
// be posted to another.
func (s *Server) openPortal(ctx context.Context) error {
	key, err := cluster.Secret(ctx, s.store, s.masterKey, secretSigninKey, newRandomKey)
	if err != nil {
		return err
	}
	p, err := portal.New(portal.Config{SigninKey: key, Identity: s.IDs, Authz: s.Authz, Tenant: s.Tenant, DataProtection: s.dp.svc,
		Compute: s.Compute, Store: s.store, Clock: s.cfg.Clock, Logger: s.log, Endpoint: s.Endpoint(), NBDAddress: s.nbdAddrFor,
		NBDTLS: s.cfg.TLS, Secure: s.cfg.TLS, Storage: s.storageUsage, Forwarder: s.API.Forwarder})
	if err != nil {
		return err
	}
	s.Portal = p
	s.handler = portalSplit{portal: p, next: s.handler}
	return nil
}

// portalSplit sends the portal's requests to it and the rest on.
type portalSplit struct {
	portal *portal.Portal
	next   http.Handler
}

func (p portalSplit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.portal.Owns(r) {
		p.portal.ServeHTTP(w, r)
		return
	}
	p.next.ServeHTTP(w, r)
}

// storageUsage is the portal's storage figures: the chunk store's size and
// the data filesystem's free space.
func (s *Server) storageUsage(ctx context.Context) (portal.StorageUsage, error) {
	st, err := s.Chunks.Stats(ctx)
	if err != nil {
		return portal.StorageUsage{}, err
	}
	sp := s.space.Status()
	return portal.StorageUsage{StoredBytes: st.StoredBytes, RawBytes: st.RawBytes, FreeBytes: sp.FreeBytes, TotalBytes: sp.TotalBytes}, nil
}
