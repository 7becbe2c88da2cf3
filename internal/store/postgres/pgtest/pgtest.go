// Package pgtest gives tests a real PostgreSQL: a throwaway cluster that
// Start makes with initdb in a temporary directory and runs with pg_ctl on
// a free loopback port (as the postgres user when the tests run as root,
// since initdb refuses root), or the server named by COFFER_TEST_POSTGRES
// (a URL whose user may create databases). Each NewDatabase is a new,
// empty database. Tests that call Start skip when PostgreSQL's server
// programs are missing, or fail under COFFER_TEST_REQUIRE
// (internal/testenv; the name is "postgres").
package pgtest

import (
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
	"testing"

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
	// initdb refuses to run as root: the cluster belongs to postgres.
	var asUser []string
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
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	command := func(args ...string) *exec.Cmd {
		a := append(append([]string(nil), asUser...), args...)
		return exec.Command(a[0], a[1:]...)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := command(args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(args[0]), err, out)
		}
	}
	data := filepath.Join(dir, "data")
	run(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "coffer", "-E", "UTF8", "--locale", "C", "--no-sync")
	for try := 0; ; try++ {
		port := freePort(t)
		// Durability is not under test here: no fsync, for speed.
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
		pgctl := filepath.Join(bin, "pg_ctl")
		cmd := command(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Cleanup(func() {
				if out, err := command(pgctl, "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
					t.Errorf("stop PostgreSQL: %v\n%s", err, out)
				}
			})
			return &Cluster{base: &url.URL{Scheme: "postgres", User: url.User("coffer"),
				Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/postgres", RawQuery: "sslmode=disable"}}
		}
		if try == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("start PostgreSQL: %v\n%s\n%s", err, out, log)
		}
	}
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
