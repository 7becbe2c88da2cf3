package e2e

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"coffer/internal/client"
)

const uploadSize = 40<<20 + 512 // Azure's N MiB + 512 shape

func uploadImage(t *testing.T) []byte {
	t.Helper()
	p := sparseImage(t, t.TempDir(), "up.img", uploadSize, 3, []extent{{0, 3 << 20}, {9 << 20, 5<<20 + 4096}, {uploadSize - 8192, 8192}})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uploadPages writes the non-zero 4 MiB pieces of img through sas.
func uploadPages(t *testing.T, c *client.Client, sas string, img []byte) {
	t.Helper()
	for off := 0; off < len(img); off += 4 << 20 {
		end := min(off+4<<20, len(img))
		if isZeros(img[off:end]) {
			continue
		}
		if err := c.PutPages(t.Context(), sas, int64(off), img[off:end]); err != nil {
			t.Fatalf("put pages at %d: %v", off, err)
		}
	}
}

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func downloadRanges(t *testing.T, c *client.Client, sas string, size, step int64) []byte {
	t.Helper()
	var out []byte
	for off := int64(0); off < size; off += step {
		b, err := c.ReadRange(t.Context(), sas, off, min(step, size-off))
		if err != nil {
			t.Fatalf("read range at %d: %v", off, err)
		}
		out = append(out, b...)
	}
	return out
}

// TestComputeHTTPPages uploads an image into an Upload disk with page writes,
// downloads it by ranges, and checks the page-range diff of two snapshots
// lists exactly the pages written and cleared between them.
func TestComputeHTTPPages(t *testing.T) {
	ce := startCompute(t, Options{})
	c := ce.c
	d := ce.createDisk(t, "up", client.DiskSpec{UploadSizeBytes: uploadSize})
	if d.Properties.DiskState != "ReadyToUpload" || d.Properties.DiskSizeBytes != uploadSize || d.Properties.DiskSizeGB != 1 {
		t.Fatalf("upload disk: %+v", d.Properties)
	}
	if _, err := c.GrantAccess(ce.ctx, client.Disks, "rg", "up", "Read", 3600e9); client.AsError(err) == nil || client.AsError(err).Code != "OperationNotAllowed" {
		t.Fatalf("read grant on ReadyToUpload disk: %v", err)
	}
	img := uploadImage(t)
	w := ce.grant(t, client.Disks, "up", "Write")
	if d, _ := c.GetDisk(ce.ctx, "rg", "up"); d.Properties.DiskState != "ActiveUpload" {
		t.Fatalf("state during upload %s", d.Properties.DiskState)
	}
	uploadPages(t, c, w.AccessSAS, img)
	if err := c.RevokeAccess(ce.ctx, client.Disks, "rg", "up"); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.GetDisk(ce.ctx, "rg", "up"); d.Properties.DiskState != "Unattached" {
		t.Fatalf("state after upload %s", d.Properties.DiskState)
	}
	r := ce.grant(t, client.Disks, "up", "Read")
	if n, err := c.DataSize(ce.ctx, r.AccessSAS); err != nil || n != uploadSize {
		t.Fatalf("HEAD size %d %v", n, err)
	}
	if got := downloadRanges(t, c, r.AccessSAS, uploadSize, 3<<20+512); bytesHash(got) != bytesHash(img) {
		t.Fatal("downloaded image differs from the uploaded one")
	}
	// The page list covers every non-zero page.
	ranges, size, err := c.PageRanges(ce.ctx, r.AccessSAS, "")
	if err != nil || size != uploadSize {
		t.Fatalf("page list: %v size %d", err, size)
	}
	covered := make([]bool, uploadSize/512)
	for _, pr := range ranges {
		for p := pr.Start / 512; p <= pr.End/512; p++ {
			covered[p] = true
		}
	}
	for p := range covered {
		if !covered[p] && !isZeros(img[p*512:(p+1)*512]) {
			t.Fatalf("page %d has data but is not in the page list", p)
		}
	}
	if err := c.RevokeAccess(ce.ctx, client.Disks, "rg", "up"); err != nil {
		t.Fatal(err)
	}

	// Diff between two snapshots.
	ce.snapshot(t, "s1", "up")
	w2 := ce.grant(t, client.Disks, "up", "Write") // Coffer extension: write to an existing disk
	p1 := bytes.Repeat([]byte{0x5a}, 512)
	p2 := bytes.Repeat([]byte{0xa5}, 4096)
	if err := c.PutPages(ce.ctx, w2.AccessSAS, 1<<20, p1); err != nil {
		t.Fatal(err)
	}
	if err := c.PutPages(ce.ctx, w2.AccessSAS, 20<<20+64<<10, p2); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearPages(ce.ctx, w2.AccessSAS, 0, 8192); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeAccess(ce.ctx, client.Disks, "rg", "up"); err != nil {
		t.Fatal(err)
	}
	ce.snapshot(t, "s2", "up")
	g1 := ce.grant(t, client.Snapshots, "s1", "Read")
	g2 := ce.grant(t, client.Snapshots, "s2", "Read")
	diff, _, err := c.PageRanges(ce.ctx, g2.AccessSAS, g1.AccessSAS)
	if err != nil {
		t.Fatal(err)
	}
	want := []client.PageRange{{Start: 0, End: 8191, Clear: true}, {Start: 1 << 20, End: 1<<20 + 511}, {Start: 20<<20 + 64<<10, End: 20<<20 + 64<<10 + 4095}}
	if len(diff) != len(want) {
		t.Fatalf("diff %+v, want %+v", diff, want)
	}
	for i := range want {
		if diff[i] != want[i] {
			t.Fatalf("diff %+v, want %+v", diff, want)
		}
	}
	// And the snapshot reads as the image with those changes.
	copy(img[1<<20:], p1)
	copy(img[20<<20+64<<10:], p2)
	clear(img[:8192])
	if got := downloadRanges(t, c, g2.AccessSAS, uploadSize, 4<<20); bytesHash(got) != bytesHash(img) {
		t.Fatal("snapshot s2 differs from the expected image")
	}
}

// TestComputeAzblobPageBlob drives the data plane with the Azure Blob SDK's
// page-blob client: UploadPages, ClearPages, DownloadBuffer, GetProperties,
// NewGetPageRangesPager and NewGetPageRangesDiffPager with PrevSnapshotURL.
func TestComputeAzblobPageBlob(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "az", client.DiskSpec{UploadSizeBytes: uploadSize})
	img := uploadImage(t)
	w := ce.grant(t, client.Disks, "az", "Write")
	opts := &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: ce.HTTP}}
	pb, err := pageblob.NewClientWithNoCredential(w.AccessSAS, opts)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(img); off += 4 << 20 {
		end := min(off+4<<20, len(img))
		if isZeros(img[off:end]) {
			continue
		}
		if _, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(img[off:end])), blob.HTTPRange{Offset: int64(off), Count: int64(end - off)}, nil); err != nil {
			t.Fatalf("UploadPages at %d: %v", off, err)
		}
	}
	// Misaligned and oversized writes are refused with the storage codes.
	_, err = pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 1000))), blob.HTTPRange{Offset: 0, Count: 1000}, nil)
	if code := storageCode(t, err); code != "InvalidPageRange" {
		t.Fatalf("misaligned UploadPages: %s", code)
	}
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "az"); err != nil {
		t.Fatal(err)
	}
	r := ce.grant(t, client.Disks, "az", "Read")
	rb, err := pageblob.NewClientWithNoCredential(r.AccessSAS, opts)
	if err != nil {
		t.Fatal(err)
	}
	props, err := rb.GetProperties(ctx, nil)
	if err != nil || props.ContentLength == nil || *props.ContentLength != uploadSize {
		t.Fatalf("GetProperties: %v %+v", err, props)
	}
	buf := make([]byte, uploadSize)
	if _, err := rb.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{BlockSize: 4 << 20, Concurrency: 4}); err != nil {
		t.Fatalf("DownloadBuffer: %v", err)
	}
	if bytesHash(buf) != bytesHash(img) {
		t.Fatal("azblob download differs from the upload")
	}
	pager := rb.NewGetPageRangesPager(nil)
	n := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("GetPageRanges: %v", err)
		}
		n += len(page.PageRange)
	}
	if n == 0 {
		t.Fatal("no page ranges")
	}
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "az"); err != nil {
		t.Fatal(err)
	}

	// Diff of two snapshots with PrevSnapshotURL.
	ce.snapshot(t, "a1", "az")
	w2 := ce.grant(t, client.Disks, "az", "Write")
	wb, _ := pageblob.NewClientWithNoCredential(w2.AccessSAS, opts)
	if _, err := wb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(bytes.Repeat([]byte{7}, 1024))), blob.HTTPRange{Offset: 30 << 20, Count: 1024}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := wb.ClearPages(ctx, blob.HTTPRange{Offset: 9 << 20, Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "az"); err != nil {
		t.Fatal(err)
	}
	ce.snapshot(t, "a2", "az")
	s1 := ce.grant(t, client.Snapshots, "a1", "Read")
	s2 := ce.grant(t, client.Snapshots, "a2", "Read")
	sb, _ := pageblob.NewClientWithNoCredential(s2.AccessSAS, opts)
	dp := sb.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &s1.AccessSAS})
	var pages, clears [][2]int64
	for dp.More() {
		page, err := dp.NextPage(ctx)
		if err != nil {
			t.Fatalf("GetPageRangesDiff: %v", err)
		}
		for _, pr := range page.PageRange {
			pages = append(pages, [2]int64{*pr.Start, *pr.End})
		}
		for _, cr := range page.ClearRange {
			clears = append(clears, [2]int64{*cr.Start, *cr.End})
		}
	}
	if len(pages) != 1 || pages[0] != [2]int64{30 << 20, 30<<20 + 1023} || len(clears) != 1 || clears[0] != [2]int64{9 << 20, 9<<20 + 511} {
		t.Fatalf("diff pages %v clears %v", pages, clears)
	}
}

func storageCode(t *testing.T, err error) string {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want a storage error, got %v", err)
	}
	if re.StatusCode < http.StatusBadRequest {
		t.Fatalf("status %d", re.StatusCode)
	}
	return re.ErrorCode
}

// TestSecondDeleteConflicts deletes a disk through the API while another
// DELETE of it is between closing its volume and removing its files (the
// block engine's OnDeleting hook holds it there): the second answers 409
// OperationNotAllowed in Azure's error shape, the first ends the deletion,
// and the disk is gone. The second used to get 500: the block engine's
// ErrDeleting reached the API unmapped.
func TestSecondDeleteConflicts(t *testing.T) {
	ce := startCompute(t, Options{})
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	var second error
	ce.Server.Engine.OnDeleting(func(string) {
		ce.Server.Engine.OnDeleting(nil)
		second = ce.c.DeleteDisk(ce.ctx, "rg", "d")
	})
	t.Cleanup(func() { ce.Server.Engine.OnDeleting(nil) })
	if err := ce.c.DeleteDisk(ce.ctx, "rg", "d"); err != nil {
		t.Fatalf("the first DELETE: %v", err)
	}
	e := client.AsError(second)
	if e == nil || e.StatusCode != http.StatusConflict || e.Code != "OperationNotAllowed" || e.Message == "" {
		t.Fatalf("the DELETE during the first: %v (%+v), want 409 OperationNotAllowed", second, e)
	}
	if _, err := ce.c.GetDisk(ce.ctx, "rg", "d"); client.AsError(err) == nil || client.AsError(err).StatusCode != http.StatusNotFound {
		t.Fatalf("the disk after both DELETEs: %v, want 404", err)
	}
}
