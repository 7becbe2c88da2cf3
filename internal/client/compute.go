package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ComputeVersion is the Microsoft.Compute api-version the client sends.
const ComputeVersion = "2024-03-02"

// CreationData says how a disk or snapshot was made.
type CreationData struct {
	CreateOption     string `json:"createOption"`
	SourceResourceID string `json:"sourceResourceId,omitempty"`
	SourceUniqueID   string `json:"sourceUniqueId,omitempty"`
	UploadSizeBytes  int64  `json:"uploadSizeBytes,omitempty"`
}

// DiskProperties are the properties of a disk or a snapshot.
type DiskProperties struct {
	CreationData                CreationData `json:"creationData"`
	DiskSizeGB                  int64        `json:"diskSizeGB,omitempty"`
	DiskSizeBytes               int64        `json:"diskSizeBytes,omitempty"`
	UniqueID                    string       `json:"uniqueId,omitempty"`
	TimeCreated                 string       `json:"timeCreated,omitempty"`
	ProvisioningState           string       `json:"provisioningState,omitempty"`
	DiskState                   string       `json:"diskState,omitempty"`
	Incremental                 *bool        `json:"incremental,omitempty"`
	IncrementalSnapshotFamilyID string       `json:"incrementalSnapshotFamilyId,omitempty"`
}

// SKU is a disk or snapshot SKU.
type SKU struct {
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
}

// Disk is a managed disk (or, with Type Microsoft.Compute/snapshots, a
// snapshot: both share a shape).
type Disk struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	SKU        *SKU              `json:"sku,omitempty"`
	Properties DiskProperties    `json:"properties"`
}

// Snapshot is a snapshot.
type Snapshot = Disk

// Compute resource types for the methods that take one.
const (
	Disks     = "disks"
	Snapshots = "snapshots"
)

func (c *Client) computePath(typ, rg, name string) (string, error) {
	sub, err := c.sub()
	if err != nil {
		return "", err
	}
	p := "/subscriptions/" + url.PathEscape(sub)
	if rg != "" {
		p += "/resourceGroups/" + url.PathEscape(rg)
	}
	p += "/providers/Microsoft.Compute/" + typ
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p, nil
}

// DiskSpec describes a disk to create.
type DiskSpec struct {
	Location string
	SKU      string
	// SizeGB is the size in GiB. 0 leaves diskSizeGB out of the request (a
	// copy keeps its source's size; an empty disk needs one) unless
	// SizeGiven says the caller gave 0, which the server then refuses as
	// out of range.
	SizeGB    int64
	SizeGiven bool
	// CreateOption is Empty (default), Copy, Restore or Upload.
	CreateOption    string
	Source          string // resource ID of the source disk or snapshot
	UploadSizeBytes int64
	Tags            map[string]string
}

// CreateDisk creates a disk and, if wait, waits until it is provisioned.
func (c *Client) CreateDisk(ctx context.Context, rg, name string, spec DiskSpec, wait bool) (Disk, error) {
	opt := spec.CreateOption
	if opt == "" {
		opt = "Empty"
		if spec.Source != "" {
			opt = "Copy"
		}
		if spec.UploadSizeBytes > 0 {
			opt = "Upload"
		}
	}
	body := diskRequest{Location: spec.Location, Tags: spec.Tags, SKU: skuOf(spec.SKU)}
	body.Properties.CreationData = CreationData{CreateOption: opt, SourceResourceID: spec.Source, UploadSizeBytes: spec.UploadSizeBytes}
	if spec.SizeGB != 0 || spec.SizeGiven {
		body.Properties.DiskSizeGB = &spec.SizeGB
	}
	return c.putCompute(ctx, Disks, rg, name, body, wait)
}

// diskRequest is the body of a disk PUT: diskSizeGB is sent when given,
// even as 0.
type diskRequest struct {
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	SKU        *SKU              `json:"sku,omitempty"`
	Properties struct {
		CreationData CreationData `json:"creationData"`
		DiskSizeGB   *int64       `json:"diskSizeGB,omitempty"`
	} `json:"properties"`
}

// skuOf is the SKU named name, or nil (the server's default) for "".
func skuOf(name string) *SKU {
	if name == "" {
		return nil
	}
	return &SKU{Name: name}
}

func (c *Client) putCompute(ctx context.Context, typ, rg, name string, body any, wait bool) (Disk, error) {
	p, err := c.computePath(typ, rg, name)
	if err != nil {
		return Disk{}, err
	}
	var d Disk
	resp, err := c.Do(ctx, http.MethodPut, p, ComputeVersion, nil, body, &d)
	if err != nil {
		return d, err
	}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(resp.Body, &d); err != nil {
			return d, fmt.Errorf("decode answer: %w", err)
		}
		if !wait {
			return d, nil
		}
		if _, err := c.Wait(ctx, resp, nil); err != nil {
			return d, err
		}
		return c.getCompute(ctx, typ, rg, name)
	}
	return d, nil
}

func (c *Client) getCompute(ctx context.Context, typ, rg, name string) (Disk, error) {
	p, err := c.computePath(typ, rg, name)
	if err != nil {
		return Disk{}, err
	}
	var d Disk
	_, err = c.Do(ctx, http.MethodGet, p, ComputeVersion, nil, nil, &d)
	return d, err
}

func (c *Client) listCompute(ctx context.Context, typ, rg string) ([]Disk, error) {
	p, err := c.computePath(typ, rg, "")
	if err != nil {
		return nil, err
	}
	return listAs[Disk](ctx, c, p, ComputeVersion, nil)
}

func (c *Client) deleteCompute(ctx context.Context, typ, rg, name string) error {
	p, err := c.computePath(typ, rg, name)
	if err != nil {
		return err
	}
	_, err = c.doWait(ctx, http.MethodDelete, p, ComputeVersion, nil)
	return err
}

// GetDisk reads a disk.
func (c *Client) GetDisk(ctx context.Context, rg, name string) (Disk, error) {
	return c.getCompute(ctx, Disks, rg, name)
}

// ListDisks lists the disks of a group, or of the subscription if rg is "".
func (c *Client) ListDisks(ctx context.Context, rg string) ([]Disk, error) {
	return c.listCompute(ctx, Disks, rg)
}

// UpdateDisk patches a disk: a new size (nil: unchanged; any value given,
// 0 too, is sent for the server to check) and tags (nil: unchanged).
func (c *Client) UpdateDisk(ctx context.Context, rg, name string, sizeGB *int64, tags map[string]string) (Disk, error) {
	p, err := c.computePath(Disks, rg, name)
	if err != nil {
		return Disk{}, err
	}
	body := map[string]any{}
	if tags != nil {
		body["tags"] = tags
	}
	if sizeGB != nil {
		body["properties"] = map[string]any{"diskSizeGB": *sizeGB}
	}
	var d Disk
	_, err = c.Do(ctx, http.MethodPatch, p, ComputeVersion, nil, body, &d)
	return d, err
}

// DeleteDisk deletes a disk.
func (c *Client) DeleteDisk(ctx context.Context, rg, name string) error {
	return c.deleteCompute(ctx, Disks, rg, name)
}

// SnapshotSpec describes a snapshot to take.
type SnapshotSpec struct {
	Location    string
	Source      string // the disk's resource ID
	Incremental bool
	SKU         string
	Tags        map[string]string
}

// CreateSnapshot takes a snapshot of a disk and, if wait, waits for it.
func (c *Client) CreateSnapshot(ctx context.Context, rg, name string, spec SnapshotSpec, wait bool) (Snapshot, error) {
	inc := spec.Incremental
	body := Disk{Location: spec.Location, Tags: spec.Tags, Properties: DiskProperties{Incremental: &inc,
		CreationData: CreationData{CreateOption: "Copy", SourceResourceID: spec.Source}}}
	body.SKU = skuOf(spec.SKU)
	return c.putCompute(ctx, Snapshots, rg, name, body, wait)
}

// GetSnapshot reads a snapshot.
func (c *Client) GetSnapshot(ctx context.Context, rg, name string) (Snapshot, error) {
	return c.getCompute(ctx, Snapshots, rg, name)
}

// ListSnapshots lists snapshots of a group, or of the subscription if rg is "".
func (c *Client) ListSnapshots(ctx context.Context, rg string) ([]Snapshot, error) {
	return c.listCompute(ctx, Snapshots, rg)
}

// DeleteSnapshot deletes a snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, rg, name string) error {
	return c.deleteCompute(ctx, Snapshots, rg, name)
}

// AccessURI is the answer of beginGetAccess.
type AccessURI struct {
	AccessSAS string `json:"accessSAS"`
	NBDURL    string `json:"nbdUrl,omitempty"`
	ExpiresOn string `json:"expiresOn,omitempty"`
	// GrantID names the grant for RevokeGrant.
	GrantID string `json:"grantId,omitempty"`
}

// AccessSpec describes an access grant to ask for.
type AccessSpec struct {
	Access   string // Read or Write
	Duration time.Duration
	// OutlivesCreator (a Coffer extension) keeps the grant usable when the
	// principal asking for it loses its roles or is deleted.
	OutlivesCreator bool
}

// GrantAccess grants Read or Write access to a disk or snapshot (typ Disks
// or Snapshots) for d and returns the SAS and NBD URLs.
func (c *Client) GrantAccess(ctx context.Context, typ, rg, name, access string, d time.Duration) (AccessURI, error) {
	return c.Grant(ctx, typ, rg, name, AccessSpec{Access: access, Duration: d})
}

// Grant is GrantAccess with every option of the request.
func (c *Client) Grant(ctx context.Context, typ, rg, name string, spec AccessSpec) (AccessURI, error) {
	p, err := c.computePath(typ, rg, name)
	if err != nil {
		return AccessURI{}, err
	}
	req := map[string]any{"access": spec.Access, "durationInSeconds": int64(spec.Duration / time.Second)}
	if spec.OutlivesCreator {
		req["outlivesCreator"] = true
	}
	body, err := c.doWait(ctx, http.MethodPost, p+"/beginGetAccess", ComputeVersion, req)
	if err != nil {
		return AccessURI{}, err
	}
	var a AccessURI
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("decode access URI: %w", err)
	}
	return a, nil
}

// RevokeAccess ends every access grant of a disk or snapshot.
func (c *Client) RevokeAccess(ctx context.Context, typ, rg, name string) error {
	return c.endAccess(ctx, typ, rg, name, nil)
}

// RevokeGrant ends one access grant of a disk or snapshot (the GrantID of
// its AccessURI) and leaves the others alone.
func (c *Client) RevokeGrant(ctx context.Context, typ, rg, name, grantID string) error {
	return c.endAccess(ctx, typ, rg, name, map[string]string{"grantId": grantID})
}

func (c *Client) endAccess(ctx context.Context, typ, rg, name string, body any) error {
	p, err := c.computePath(typ, rg, name)
	if err != nil {
		return err
	}
	_, err = c.doWait(ctx, http.MethodPost, p+"/endGetAccess", ComputeVersion, body)
	return err
}

// --- data plane (the SAS URL of a grant: Azure page-blob operations) ---

func (c *Client) dataRequest(ctx context.Context, method, sas, comp string, body io.Reader, n int64, hdr map[string]string) (*http.Response, error) {
	u, err := url.Parse(sas)
	if err != nil {
		return nil, fmt.Errorf("access URL: %w", err)
	}
	if comp != "" {
		q := u.Query()
		q.Set("comp", comp)
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	if body != nil {
		req.ContentLength = n
	}
	req.Header.Set("x-ms-version", "2021-12-02")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{StatusCode: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code"), RequestID: resp.Header.Get("x-ms-request-id")}
		var xe struct {
			Message string `xml:"Message"`
		}
		if xml.Unmarshal(b, &xe) == nil {
			e.Message, _, _ = strings.Cut(xe.Message, "\n")
		}
		return nil, e
	}
	return resp, nil
}

// DataSize returns the size in bytes of the disk or snapshot behind sas.
func (c *Client) DataSize(ctx context.Context, sas string) (int64, error) {
	resp, err := c.dataRequest(ctx, http.MethodHead, sas, "", nil, 0, nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// ReadRange reads n bytes at off through sas.
func (c *Client) ReadRange(ctx context.Context, sas string, off, n int64) ([]byte, error) {
	resp, err := c.dataRequest(ctx, http.MethodGet, sas, "", nil, 0, map[string]string{"x-ms-range": fmt.Sprintf("bytes=%d-%d", off, off+n-1)})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read range at %d: %w", off, err)
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("read range at %d: got %d bytes, want %d", off, len(b), n)
	}
	return b, nil
}

// PutPages writes data (a multiple of 512 bytes, at most 4 MiB) at off.
func (c *Client) PutPages(ctx context.Context, sas string, off int64, data []byte) error {
	resp, err := c.dataRequest(ctx, http.MethodPut, sas, "page", bytes.NewReader(data), int64(len(data)), map[string]string{
		"x-ms-page-write": "update", "x-ms-range": fmt.Sprintf("bytes=%d-%d", off, off+int64(len(data))-1)})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ClearPages makes [off, off+n) read as zeros.
func (c *Client) ClearPages(ctx context.Context, sas string, off, n int64) error {
	resp, err := c.dataRequest(ctx, http.MethodPut, sas, "page", nil, 0, map[string]string{
		"x-ms-page-write": "clear", "x-ms-range": fmt.Sprintf("bytes=%d-%d", off, off+n-1)})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// PageRange is a range of a page list; Clear marks a range that changed to
// zeros (diffs only).
type PageRange struct {
	Start, End int64 // inclusive
	Clear      bool
}

// PageRanges lists the allocated ranges of the disk or snapshot behind sas,
// or with prevSAS (another snapshot's SAS URL) the ranges changed since it.
func (c *Client) PageRanges(ctx context.Context, sas, prevSAS string) ([]PageRange, int64, error) {
	hdr := map[string]string{}
	if prevSAS != "" {
		hdr["x-ms-previous-snapshot-url"] = prevSAS
	}
	resp, err := c.dataRequest(ctx, http.MethodGet, sas, "pagelist", nil, 0, hdr)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	size, _ := strconv.ParseInt(resp.Header.Get("x-ms-blob-content-length"), 10, 64)
	dec := xml.NewDecoder(resp.Body)
	var out []PageRange
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("decode page list: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || (se.Name.Local != "PageRange" && se.Name.Local != "ClearRange") {
			continue
		}
		var r struct {
			Start int64 `xml:"Start"`
			End   int64 `xml:"End"`
		}
		if err := dec.DecodeElement(&r, &se); err != nil {
			return nil, 0, fmt.Errorf("decode page list: %w", err)
		}
		out = append(out, PageRange{Start: r.Start, End: r.End, Clear: se.Name.Local == "ClearRange"})
	}
	return out, size, nil
}
