// Package pgtest gives tests a real PostgreSQL: a throwaway cluster that
// Start makes with initdb in a temporary directory and runs with pg_ctl on
// a free loopback port (as the postgres user when the tests run as root,
// since initdb refuses root; the server dies with the test process), or the server named by COFFER_TEST_POSTGRES
// (a URL whose user may create databases). Each NewDatabase is a new,
// empty database. Tests that call Start skip when PostgreSQL's server
// programs are missing, or fail under COFFER_TEST_REQUIRE
// (internal/testenv; the name is "postgres").
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"coffer/internal/testenv"
)

// EnvDSN names the environment variable with the URL of a server to use
// instead of a throwaway cluster.
const EnvDSN = "COFFER_TEST_POSTGRES"

// Cluster is a PostgreSQL server for tests.
type Cluster struct {
	base *url.URL // the server's URL; its path names the admin database

	mu  sync.Mutex
	dbs int
}

// Start returns a running server: COFFER_TEST_POSTGRES's, or a new
// throwaway cluster that is stopped and removed when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: %v", EnvDSN, err)
		}
		return &Cluster{base: u}
	}
	bin := serverBin(t)
	dir, err := os.MkdirTemp("", "coffer-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// initdb and postgres refuse to run as root: the cluster belongs to
	// postgres.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.Missing(t, "postgres", "running PostgreSQL as root needs a postgres user: "+err.Error())
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		// The server dies with the test process, even a killed one.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		cmd.Dir = dir
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-A", "trust", "-U", "coffer", "-E", "UTF8", "--locale", "C", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	for try := 0; ; try++ {
		port := freePort(t)
		// Durability is not under test here: no fsync, for speed.
		cmd := command("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		c := &Cluster{base: &url.URL{Scheme: "postgres", User: url.User("coffer"),
			Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/postgres", RawQuery: "sslmode=disable"}}
		if c.waitReady(exited) {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
				<-exited
			})
			return c
		}
		cmd.Process.Kill()
		<-exited
		if try == 2 {
			t.Fatalf("PostgreSQL did not start on port %d:\n%s", port, out.String())
		}
	}
}

// waitReady waits until the server accepts connections, or its process
// exits, or a minute passes.
func (c *Cluster) waitReady(exited <-chan error) bool {
	for range 600 {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.base.String())
		if err == nil {
			conn.Close(ctx)
			cancel()
			return true
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// serverBin finds the directory of initdb and pg_ctl: on PATH, or the
// newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
func serverBin(t testing.TB) string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	testenv.Missing(t, "postgres", "PostgreSQL's server programs (initdb, pg_ctl) are not installed")
	return ""
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL returns the URL of database name on the server.
func (c *Cluster) URL(name string) string {
	u := *c.base
	u.Path = "/" + name
	return u.String()
}

// NewDatabase creates a new, empty database and returns its URL. It is
// dropped when the test ends.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.dbs++
	name := fmt.Sprintf("coffer_test_%d_%s", c.dbs, randomHex(4))
	c.mu.Unlock()
	ctx := context.Background()
	admin := func(stmt string) error {
		conn, err := pgx.Connect(ctx, c.base.String())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, stmt)
		return err
	}
	if err := admin("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return c.URL(name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
