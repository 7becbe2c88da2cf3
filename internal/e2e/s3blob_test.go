package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/store/postgres/pgtest"
)

// TestBackupAndRestoreOnS3: `serve --blob s3://BUCKET/PREFIX` keeps the
// packs in a real S3-compatible server (versitygw), with the endpoint from
// --s3-endpoint and the credentials from the standard AWS environment. A
// disk is backed up and restored through the official SDK; the restored
// disk equals the source at its recovery point by hash, the bucket holds
// the packs under the prefix, and the data dir holds none.
func TestBackupAndRestoreOnS3(t *testing.T) { backupAndRestoreOnS3(t, Options{}) }

// TestBackupAndRestoreOnPostgresAndS3 is TestBackupAndRestoreOnS3 with the
// metadata in PostgreSQL (`--db postgres://…`): the scale-out pair, with
// nothing of either in the data dir.
func TestBackupAndRestoreOnPostgresAndS3(t *testing.T) {
	db := pgtest.Start(t).NewDatabase(t)
	e := backupAndRestoreOnS3(t, Options{DB: db})
	checkOnPostgres(t, e.Env, db)
}

// backupAndRestoreOnS3 runs TestBackupAndRestoreOnS3's flow on a server
// started with o and an s3:// --blob on a new versitygw bucket.
func backupAndRestoreOnS3(t *testing.T, o Options) *dpEnv {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	o.Blob, o.S3Endpoint, o.S3PathStyle = "s3://"+bucket+"/coffer", srv.Endpoint, true
	e := startDP(t, o)
	const loc = "local"
	_, want := e.protectedDisk(t, loc, 0xC3, 40<<20)
	// The disk changes after the backup; the restore must show the
	// recovery point's instant, read back from the bucket.
	e.write(t, "rg-disks", "data1", 0xD4, 8<<20)
	rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	target := "/subscriptions/" + e.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored"
	jid, err := e.restore("rg-vault", "vault1", "data1-bi", e.restoreRequest(*rps[0].Name, target, loc))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if j := e.waitJob(t, "rg-vault", "vault1", jid); *j.Status != "Completed" {
		t.Fatalf("restore job: %+v", j)
	}
	if got := e.hash(t, "rg-restore", "restored"); got != want {
		t.Fatalf("restored disk: hash %s, want %s (the source at its recovery point)", got, want)
	}

	// The packs are in the bucket under the prefix, not in the data dir.
	cl := srv.Client(srv.Endpoint)
	out, err := cl.ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	packs := 0
	for _, o := range out.Contents {
		if !strings.HasPrefix(*o.Key, "coffer/") {
			t.Errorf("object %s outside the prefix", *o.Key)
		}
		if strings.HasPrefix(*o.Key, "coffer/packs/") {
			packs++
		}
	}
	if packs == 0 {
		t.Fatalf("no packs in the bucket: %d objects", len(out.Contents))
	}
	if ents, err := os.ReadDir(filepath.Join(e.DataDir, "chunks")); err == nil && len(ents) > 0 {
		t.Fatalf("the data dir's chunks directory holds %d entries with --blob s3://", len(ents))
	}
	return e
}
