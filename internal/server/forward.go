package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"coffer/internal/api"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// ForwardedHeader marks a request one node forwards to another. It only
// stops a second hop and lets the node a new disk was placed on create
// it; it confers no identity and no right: the receiving node
// authenticates and authorizes the caller's own Authorization header or
// SAS token, as for any request, so a client that sends the header itself
// gains nothing.
const ForwardedHeader = "X-Coffer-Forwarded-By"

// forwarder serves the requests that act on a live disk's volume on the
// node that holds it (api.Forwarder): a reverse proxy to that node's API
// address from the registry, over TLS trusting the cluster's shared CA
// when the nodes serve TLS.
type forwarder struct {
	s         *Server
	placement cluster.Placement
	transport http.RoundTripper
}

// errForwardingLoop: a forwarded request reached a node that does not hold
// the volume either (two nodes registered under one name, or a client
// that sent ForwardedHeader itself).
func errForwardingLoop(what, home string) error {
	return resource.Errorf(resource.KindConflict, "ForwardingLoop",
		"%s is held by node '%s'; this request was forwarded to another node and is not forwarded again. Send it to any node without the %s header.",
		what, home, ForwardedHeader)
}

func newForwarder(s *Server, placement cluster.Placement) *forwarder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 5 * time.Minute
	if s.caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &forwarder{s: s, placement: placement, transport: tr}
}

// Forward implements api.Forwarder.
func (f *forwarder) Forward(ctx context.Context, w http.ResponseWriter, hr *http.Request, body []byte, v api.Volume) (bool, error) {
	m := f.s.member
	forwarded := hr.Header.Get(ForwardedHeader) != ""
	home, what, err := f.home(ctx, v, forwarded)
	if err != nil {
		return false, err
	}
	if home == "" || strings.EqualFold(home, m.name) {
		return false, nil
	}
	if forwarded {
		return false, errForwardingLoop(what, home)
	}
	n, err := m.registry.Reach(ctx, home, what)
	if err != nil {
		return false, err
	}
	return true, f.proxy(ctx, w, hr, body, n, what)
}

// home names the node that serves v ("" or this node's name: here), and
// describes v for errors.
func (f *forwarder) home(ctx context.Context, v api.Volume, forwarded bool) (home, what string, err error) {
	m := f.s.member
	err = f.s.store.View(ctx, func(tx store.Tx) error {
		if v.UniqueID != "" {
			what = fmt.Sprintf("The disk volume '%s'", v.UniqueID)
			home, err = cluster.VolumeHome(ctx, tx, v.UniqueID)
			return err
		}
		if id, perr := resource.Parse(v.DiskID); perr == nil {
			what = fmt.Sprintf("The disk '%s'", id.Name())
		} else {
			what = fmt.Sprintf("The disk '%s'", v.DiskID)
		}
		if home, err = cluster.Home(ctx, tx, v.DiskID); err != nil || home != "" || !v.New || forwarded {
			return err
		}
		// A new disk: a copy is made where its source lives, anything
		// else where placement says.
		if v.Source != "" {
			home, err = cluster.Home(ctx, tx, v.Source)
		}
		return err
	})
	if err != nil || home != "" || !v.New || forwarded {
		return home, what, err
	}
	home, err = m.registry.Place(ctx, f.placement, m.name)
	return home, what, err
}

// hopHeaders are not passed on (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// proxy sends hr to node n as the caller sent it (its Authorization
// header and SAS query included, nothing added but ForwardedHeader) and
// copies the answer back. Operation URLs in the answer's headers that name
// n's endpoint or address are rewritten to this node's endpoint, so that
// the caller keeps talking to the endpoint it chose.
func (f *forwarder) proxy(ctx context.Context, w http.ResponseWriter, hr *http.Request, body []byte, n cluster.Node, what string) error {
	target, err := url.Parse(n.API)
	if err != nil || target.Host == "" {
		return fmt.Errorf("node %s registered an API address that is not a URL: %q", n.Name, n.API)
	}
	out := hr.Clone(ctx)
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = target.Scheme, target.Host, "", ""
	if body != nil {
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Set(ForwardedHeader, f.s.member.name)
	out.Header.Set("x-ms-correlation-request-id", w.Header().Get("x-ms-correlation-request-id"))
	resp, err := f.transport.RoundTrip(out)
	if err != nil {
		f.s.log.Warn("forward a request to the node that holds its disk", "node", n.Name, "api", n.API, "method", hr.Method, "path", hr.URL.Path, "err", err)
		return &resource.Error{Kind: resource.KindUnavailable, Code: cluster.CodeNodeUnavailable,
			Message: fmt.Sprintf("%s is held by node '%s', which did not answer. Retry later.", what, n.Name),
			Err:     fmt.Errorf("forward to node %s: %w: %w", n.Name, cluster.ErrNodeUnavailable, err)}
	}
	defer resp.Body.Close()
	h := w.Header()
	for k := range h { // the home node's answer says everything itself
		delete(h, k)
	}
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, hh := range hopHeaders {
		h.Del(hh)
	}
	for _, k := range []string{"Location", "Azure-AsyncOperation"} {
		for _, base := range []string{n.Endpoint, n.API} {
			if u := h.Get(k); base != "" && strings.HasPrefix(u, base+"/") {
				h.Set(k, f.s.Endpoint()+strings.TrimPrefix(u, base))
			}
		}
	}
	w.WriteHeader(resp.StatusCode)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	if _, err := io.CopyBuffer(w, resp.Body, *buf); err != nil && ctx.Err() == nil {
		f.s.log.Warn("copy a forwarded answer", "node", n.Name, "path", hr.URL.Path, "err", err)
	}
	return nil
}

// copyBufs are the buffers forwarded answers are copied through: large
// enough that a 4 MiB page read crosses in a few writes.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// diskHome names the node that holds the disk diskID when that is another
// node ("": this one, or no node recorded).
func (s *Server) diskHome(ctx context.Context, diskID string) (string, error) {
	if !s.member.shared {
		return "", nil
	}
	var home string
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		home, err = cluster.Home(ctx, tx, diskID)
		return err
	})
	if err != nil || strings.EqualFold(home, s.member.name) {
		return "", err
	}
	return home, nil
}

// nbdAddrFor is the address of the NBD server that serves resourceID: a
// disk's home node's, this node's for anything else (snapshots are read
// from the shared chunk store). A home listening on every address is
// named by the host of its API address.
func (s *Server) nbdAddrFor(ctx context.Context, resourceID string) string {
	local := s.NBDAddr()
	id, err := resource.Parse(resourceID)
	if !s.member.shared || local == "" || err != nil || !id.IsType(compute.Provider+"/"+compute.TypeDisks) {
		return local
	}
	home, err := s.diskHome(ctx, id.String())
	if err != nil || home == "" {
		return local
	}
	n, err := s.member.registry.Get(ctx, home)
	if err != nil || n.NBD == "" {
		s.log.Warn("the NBD address of a disk's home node is unknown; the NBD URL names this node", "disk", resourceID, "node", home, "err", err)
		return local
	}
	host, port, err := net.SplitHostPort(n.NBD)
	if ip := net.ParseIP(host); err == nil && (host == "" || (ip != nil && ip.IsUnspecified())) {
		if u, uerr := url.Parse(n.API); uerr == nil && u.Hostname() != "" {
			return net.JoinHostPort(u.Hostname(), port)
		}
	}
	return n.NBD
}

// peerAudiences knows the API endpoints of the nodes sharing the store,
// whose access tokens this node accepts (identity.Service.PeerAudience).
type peerAudiences struct {
	registry *cluster.Registry
	mu       sync.Mutex
	urls     map[string]bool
	read     time.Time
}

// peerRefresh is the least time between two readings of the registry for
// an audience not known.
const peerRefresh = time.Second

func (p *peerAudiences) has(aud string) bool {
	a := strings.ToLower(strings.TrimRight(aud, "/"))
	if a == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.urls[a] {
		return true
	}
	now := p.registry.Clock.Now()
	if now.Sub(p.read) < peerRefresh {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes, err := p.registry.Nodes(ctx)
	if err != nil {
		return false
	}
	p.read = now
	p.urls = make(map[string]bool, len(nodes))
	for _, n := range nodes {
		for _, u := range []string{n.API, n.Endpoint} {
			if u != "" {
				p.urls[strings.ToLower(strings.TrimRight(u, "/"))] = true
			}
		}
	}
	return p.urls[a]
}
