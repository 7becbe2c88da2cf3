package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/store"
)

// SchedulerLease is the name of the lease whose holder runs the
// DataProtection scheduler.
const SchedulerLease = "scheduler"

// validNodeName: a DNS label's characters, 1 to 63 of them.
var validNodeName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// nodeName returns --node-name, or the host name when it is empty.
func nodeName(name string) (string, error) {
	if name == "" {
		hn, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("--node-name is not set and the host name is unknown: %w", err)
		}
		name = hn
	}
	if !validNodeName.MatchString(name) {
		return "", fmt.Errorf("--node-name %q: want 1 to 63 letters, digits, dots, dashes or underscores, starting and ending with a letter or digit", name)
	}
	return name, nil
}

// member is this server's place among the nodes that share its metadata
// store: its name, the random incarnation of this process, the registry
// it beats in and the leases it contends for.
type member struct {
	name        string
	incarnation string
	registry    *cluster.Registry
	leases      *cluster.Leases
	// shared: the metadata store is one that several nodes can share
	// (PostgreSQL), so disks record their home node and their backups
	// run there. On SQLite there is one node and no home is recorded (a
	// renamed host keeps its disks).
	shared bool
	// placement picks the node that creates a new disk or a restored one
	// (--placement).
	placement cluster.Placement
}

// setHome records that diskID lives on this node (compute.Service.Home).
func (m *member) setHome(ctx context.Context, tx store.Tx, diskID, uniqueID string) error {
	return cluster.SetHome(ctx, tx, diskID, uniqueID, m.name)
}

// volumeHomeElsewhere returns, read in tx, the node that holds the volume
// uniqueID when that is another node; "" when it is this one or none is
// recorded.
func (m *member) volumeHomeElsewhere(ctx context.Context, tx store.Tx, uniqueID string) (string, error) {
	home, err := cluster.VolumeHome(ctx, tx, uniqueID)
	if err != nil || strings.EqualFold(home, m.name) {
		return "", err
	}
	return home, nil
}

// volumeElsewhere reports whether another node holds the volume uniqueID
// (compute.Service.VolumeElsewhere).
func (m *member) volumeElsewhere(ctx context.Context, tx store.Tx, uniqueID string) (bool, error) {
	home, err := m.volumeHomeElsewhere(ctx, tx, uniqueID)
	return home != "", err
}

// deleteVolumeElsewhere queues, in tx, the deletion of the volume uniqueID
// on the node that holds it when that is another node, and reports whether
// it did (compute.Service.DeleteVolumeElsewhere): a resource group deleted
// through one node must not leave the volumes of its disks on the others.
// The task waits for its node if the node is down.
func (s *Server) deleteVolumeElsewhere(ctx context.Context, tx store.Tx, uniqueID string) (bool, error) {
	home, err := s.member.volumeHomeElsewhere(ctx, tx, uniqueID)
	if err != nil || home == "" {
		return false, err
	}
	err = s.Ops.Queue.EnqueueTx(ctx, tx, job.Task{ID: "delete-volume-" + strings.ToLower(uniqueID), Type: compute.DeleteVolumeTask,
		Target: strings.ToLower(uniqueID), Payload: []byte(uniqueID), Node: home})
	if err != nil && !errors.Is(err, job.ErrDuplicate) {
		return false, fmt.Errorf("queue the deletion of volume %s on node %s: %w", uniqueID, home, err)
	}
	return true, nil
}

func (s *Server) openMember() error {
	name, err := nodeName(s.cfg.NodeName)
	if err != nil {
		return err
	}
	placement, err := cluster.ParsePlacement(s.cfg.Placement)
	if err != nil {
		return err
	}
	s.member = &member{name: name, incarnation: identity.NewGUID(),
		registry:  &cluster.Registry{Store: s.store, Clock: s.cfg.Clock},
		leases:    &cluster.Leases{Store: s.store, Clock: s.cfg.Clock},
		shared:    s.meta.Kind == "postgres",
		placement: placement}
	return nil
}

// place names the node that creates a restored disk
// (dataprotection.Service.Place).
func (m *member) place(ctx context.Context) (string, error) {
	return m.registry.Place(ctx, m.placement, m.name)
}

// NodeName is the name this server registers under (--node-name).
func (s *Server) NodeName() string { return s.member.name }

// owner names a lease holder of this process (a worker pool's) in the
// job queue: the node's name, a slash and the incarnation.
func (m *member) owner() string { return m.name + "/" + m.incarnation }

// fence returns the Fence of a holding of a lease.
func fence(l cluster.Lease) func(ctx context.Context, tx store.Tx) error {
	return func(ctx context.Context, tx store.Tx) error { return cluster.Fence(ctx, tx, l) }
}

// register records this node in the registry with the addresses it
// serves at (the API listener's is addr), and beats for it until ctx
// ends; the returned function waits for the beats to stop and records
// that the node stopped (so that nothing is placed on it meanwhile).
func (s *Server) register(ctx context.Context, addr string) (leave func(), err error) {
	m := s.member
	n, err := m.registry.Register(ctx, cluster.Node{Name: m.name, API: s.nodeAPI(addr), Endpoint: s.endpointAt(addr), NBD: s.NBDAddr(),
		Incarnation: m.incarnation})
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.registry.Run(ctx, n, 0, s.usedBytes, s.log)
	}()
	return func() {
		wg.Wait()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.registry.Leave(lctx, n); err != nil {
			s.log.Warn("leave the node registry", "err", err)
		}
	}, nil
}

// nodeAPI is the URL other nodes reach this node's API at: its
// listener's address (addr), not the public endpoint, which may be a load
// balancer in front of every node. A listener on every address is named
// by the host name (its certificate names it too).
func (s *Server) nodeAPI(addr string) string {
	scheme := "http"
	if s.cfg.TLS {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if hn, err := os.Hostname(); err == nil && hn != "" {
			host = hn
		} else {
			host = "localhost"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// usedBytes is the space this node's volumes take on its disk, their
// allocated blocks (least-used placement compares it between nodes;
// the data filesystem's own usage counts whatever else it holds).
func (s *Server) usedBytes() int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(s.cfg.DataDir, "volumes"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // gone meanwhile, or not a file: not counted
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n
}

// Names of the secrets every node shares (cluster.Secret).
const (
	secretSigningKey = "token-signing-key"
	secretGrantKey   = "grant-key"
	secretCA         = "tls-ca"
	secretSigninKey  = "portal-signin-key"
)

// sharedSecret returns the secret every node uses under name: the one in
// the metadata store, or, when there is none yet, the one in file (a data
// dir of a version that kept it there: its tokens and grants stay valid)
// or a new one from gen, which is then stored for every node. A file that
// differs from the stored secret is not used, and said so.
func (s *Server) sharedSecret(ctx context.Context, name, file string, gen func() ([]byte, error)) ([]byte, error) {
	local, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	b, err := cluster.Secret(ctx, s.store, s.masterKey, name, func() ([]byte, error) {
		if local != nil {
			return local, nil
		}
		return gen()
	})
	if err != nil {
		return nil, err
	}
	if local != nil && !bytes.Equal(local, b) {
		s.log.Warn("a key file in the data dir differs from the key the nodes share in the metadata store, which is used; tokens or grants made with the file's key are refused", "file", file, "secret", name)
	}
	return b, nil
}

// signer is the token signer every node shares.
func (s *Server) signer(ctx context.Context) (*identity.Signer, error) {
	b, err := s.sharedSecret(ctx, secretSigningKey, filepath.Join(s.cfg.DataDir, "signing.key"), identity.NewSignerKey)
	if err != nil {
		return nil, err
	}
	sg, err := identity.ParseSigner(b)
	if err != nil {
		return nil, fmt.Errorf("the shared token-signing key: %w", err)
	}
	return sg, nil
}

// bootstrapLease is held by the node that bootstraps the tenant.
const bootstrapLease = "bootstrap"

// bootstrapRetry is how often a node waiting for another's bootstrap
// looks again.
const bootstrapRetry = 250 * time.Millisecond

// bootstrapOnce bootstraps the tenant on the first start of the first
// node: nodes starting at once on an empty store take turns under the
// bootstrap lease, and the first to hold it with no tenant stored
// bootstraps; the others read the tenant it made, which bootstrapOnce
// returns (nil: this node bootstrapped).
func (s *Server) bootstrapOnce(ctx context.Context) (*tenantRecord, error) {
	m := s.member
	for {
		l, ok, err := m.leases.Acquire(ctx, bootstrapLease, m.owner())
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		if ok {
			rec, err := s.tenantRecord(ctx)
			if err == nil && rec == nil {
				err = s.bootstrap(ctx)
			}
			if rerr := m.leases.Release(context.WithoutCancel(ctx), l); rerr != nil {
				s.log.Warn("release the bootstrap lease", "err", rerr)
			}
			return rec, err
		}
		tm := s.cfg.Clock.NewTimer(bootstrapRetry)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil, fmt.Errorf("bootstrap: waiting for %s to bootstrap: %w", l.Holder, ctx.Err())
		case <-tm.C():
		}
		if rec, err := s.tenantRecord(ctx); err != nil || rec != nil {
			return rec, err
		}
	}
}
