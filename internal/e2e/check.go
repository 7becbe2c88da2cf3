package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"coffer/internal/client"
	"coffer/internal/job"
)

// The checks below drive a server through internal/client only (no SDK),
// so they serve tests whose server runs in another process or was written
// by another release: the upgrade test and the crash matrix.

// DiskID is the ARM ID of a disk.
func DiskID(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/disks/" + name
}

// SASSHA256 returns the SHA-256 of every byte behind a SAS URL (what
// sha256sum prints for a raw image of the disk): the allocated ranges are
// read, the holes hashed as zeros.
func SASSHA256(ctx context.Context, c *client.Client, sas string) (string, error) {
	ranges, size, err := c.PageRanges(ctx, sas, "")
	if err != nil {
		return "", fmt.Errorf("page ranges: %w", err)
	}
	h := sha256.New()
	zeros := func(n int64) {
		_, _ = io.CopyN(h, zeroReader{}, n)
	}
	var pos int64
	const piece = 4 << 20
	for _, r := range ranges {
		if r.Clear || r.End < pos {
			continue
		}
		start := max(r.Start, pos)
		zeros(start - pos)
		for off := start; off <= r.End && off < size; off += piece {
			n := min(piece, r.End+1-off, size-off)
			b, err := c.ReadRange(ctx, sas, off, n)
			if err != nil {
				return "", fmt.Errorf("read at %d: %w", off, err)
			}
			h.Write(b)
		}
		pos = min(r.End+1, size)
	}
	zeros(size - pos)
	return hex.EncodeToString(h.Sum(nil)), nil
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// DiskSHA256 grants read access to a disk (or snapshot: typ), hashes it
// with SASSHA256 and ends the disk's grants.
func DiskSHA256(ctx context.Context, c *client.Client, typ, rg, name string) (string, error) {
	a, err := c.GrantAccess(ctx, typ, rg, name, "Read", time.Hour)
	if err != nil {
		return "", fmt.Errorf("grant read on %s/%s: %w", rg, name, err)
	}
	sum, err := SASSHA256(ctx, c, a.AccessSAS)
	if err != nil {
		return "", fmt.Errorf("hash %s/%s: %w", rg, name, err)
	}
	if err := c.RevokeAccess(ctx, typ, rg, name); err != nil {
		return "", fmt.Errorf("revoke access to %s/%s: %w", rg, name, err)
	}
	return sum, nil
}

// WaitJob polls a vault's job until it leaves InProgress (or ctx ends).
func WaitJob(ctx context.Context, c *client.Client, rg, vault, id string) (client.Job, error) {
	for {
		j, err := c.GetJob(ctx, rg, vault, id)
		if err != nil {
			return j, fmt.Errorf("get job %s: %w", path.Base(id), err)
		}
		if j.Properties.Status != string(job.InProgress) {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, fmt.Errorf("job %s still %s: %w", path.Base(id), j.Properties.Status, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// JobError is the failure of a job that ended other than Completed.
func JobError(j client.Job) error {
	if j.Properties.Status == string(job.Completed) {
		return nil
	}
	var msgs []string
	for _, e := range j.Properties.ErrorDetails {
		msgs = append(msgs, e.Code+": "+e.Message)
	}
	return fmt.Errorf("%s job %s ended %s: %s", j.Properties.Operation, j.Name, j.Properties.Status, strings.Join(msgs, "; "))
}

// RestoreAndHash restores a recovery point of a vault's instance to a new
// disk in targetRG, waits for the job and returns the new disk's SHA-256.
func RestoreAndHash(ctx context.Context, c *client.Client, rg, vault, instance, rp, targetRG, disk, location string) (string, error) {
	id, err := c.Restore(ctx, rg, vault, instance, client.RestoreRequest(rp, DiskID(c.Subscription, targetRG, disk), location))
	if err != nil {
		return "", fmt.Errorf("restore %s to %s: %w", rp, disk, err)
	}
	j, err := WaitJob(ctx, c, rg, vault, id)
	if err != nil {
		return "", err
	}
	if err := JobError(j); err != nil {
		return "", err
	}
	return DiskSHA256(ctx, c, client.Disks, targetRG, disk)
}
