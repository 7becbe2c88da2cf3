// Package s3test gives tests a real S3-compatible server: versitygw
// serving a temporary directory on a free loopback port, and a
// fault-injecting reverse proxy to put in front of it (503 SlowDown
// answers, connections dropped in the middle of a body). Tests that call
// Start skip when versitygw is not on PATH, or fail under
// COFFER_TEST_REQUIRE (internal/testenv). CI installs it with
// `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`.
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"coffer/internal/testenv"
)

// Region is the region versitygw serves.
const Region = "us-east-1"

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's base URL (http://127.0.0.1:PORT).
	Endpoint string
	// AccessKey and SecretKey are its root credentials, random per server.
	AccessKey, SecretKey string
	// PID is the server process's ID (its CPU time, for benchmarks).
	PID int

	mu      sync.Mutex
	buckets int
}

// Start runs versitygw with the posix backend on a temporary directory
// and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.NeedProgram(t, "versitygw")
	s := &Server{AccessKey: randomHex(10), SecretKey: randomHex(20)}
	dir := t.TempDir()
	var out bytes.Buffer
	var cmd *exec.Cmd
	for try := 0; ; try++ {
		addr := freeAddr(t)
		cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", Region,
			"--port", addr, "--keep-alive", "--quiet", "posix", dir)
		out.Reset()
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if waitListening(addr, exited) {
			s.Endpoint = "http://" + addr
			s.PID = cmd.Process.Pid
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			return s
		}
		cmd.Process.Kill()
		<-exited
		if try == 2 {
			t.Fatalf("versitygw did not start listening on %s:\n%s", addr, out.String())
		}
	}
}

// waitListening waits until addr accepts connections, or the process
// exits, or 15 seconds pass.
func waitListening(addr string, exited <-chan error) bool {
	for range 300 {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Client returns an SDK client of the server for the test's own checks,
// talking to endpoint (the server's, or a proxy's in front of it).
func (s *Server) Client(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// SetEnv sets the standard AWS environment (access key, secret, region)
// for this server for the rest of the test, as `coffer serve --blob s3://`
// reads it.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_REGION", Region)
}

// NewBucket creates an empty bucket with a new name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.buckets++
	name := fmt.Sprintf("bucket-%d", s.buckets)
	s.mu.Unlock()
	if _, err := s.Client(s.Endpoint).CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}
