package portal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"coffer/internal/api"
	"coffer/internal/compute"
	"coffer/internal/resource"
)

func (p *Portal) diskRoutes() {
	p.page("GET /disks", p.diskList)
	p.page("GET /disks/new", p.diskNew)
	p.page("POST /disks", p.diskCreate)
	p.page("GET /disks/upload", p.diskUploadForm)
	p.page("POST /disks/upload", p.diskUploadStart)
	p.page("GET /disks/{sub}/{rg}/{name}", p.diskShow)
	p.page("POST /disks/{sub}/{rg}/{name}/grant", p.diskGrant)
	p.page("POST /disks/{sub}/{rg}/{name}/revoke", p.diskRevoke)
	p.page("POST /disks/{sub}/{rg}/{name}/resize", p.diskResize)
	p.page("POST /disks/{sub}/{rg}/{name}/delete", p.diskDelete)
	p.page("GET /snapshots/{sub}/{rg}/{name}", p.snapshotShow)
}

type snapshotRow struct {
	compute.Snapshot
	URL, Group, SourceName, SourceURL string
}

func newSnapshotRow(sn compute.Snapshot) snapshotRow {
	r := snapshotRow{Snapshot: sn, URL: PageURL(sn.ID), Group: groupOf(sn.ID)}
	if src := sn.CreationData.SourceResourceID; src != "" {
		if id, err := resource.Parse(src); err == nil {
			r.SourceName = id.Name()
		}
		r.SourceURL = PageURL(src)
	}
	return r
}

type diskListPage struct {
	Disks     []diskRow
	Snapshots []snapshotRow
	Create    Control
	Tab       string
}

func (p *Portal) diskList(rq *Request) error {
	ds, err := rq.disks()
	if err != nil {
		return err
	}
	sns, err := rq.snapshots()
	if err != nil {
		return err
	}
	now := p.cfg.Clock.Now()
	page := diskListPage{Create: rq.createControl(compute.ActionDiskWrite), Tab: rq.R.URL.Query().Get("tab")}
	sort.Slice(ds, func(i, j int) bool { return strings.ToLower(ds[i].ID) < strings.ToLower(ds[j].ID) })
	for _, d := range ds {
		page.Disks = append(page.Disks, diskRow{Disk: d, URL: PageURL(d.ID), Group: groupOf(d.ID), Protection: d.State(now)})
	}
	for _, sn := range sns {
		page.Snapshots = append(page.Snapshots, newSnapshotRow(sn))
	}
	return rq.Render("disks", page)
}

// diskForm is the create-a-disk form (empty, or for an upload).
type diskForm struct {
	placeForm
	Name, SizeGB string
	Upload       bool
	CLI          *CLI
}

func (rq *Request) diskForm(f diskForm) (diskForm, error) {
	if err := rq.place(&f.placeForm, compute.ActionDiskWrite); err != nil {
		return f, err
	}
	rg := f.groupName()
	if f.Upload {
		f.CLI = Command("disk", "upload").Field("resource-group", "group", rg).Field("name", "name", f.Name).
			Field("location", "location", f.Location).Arg("IMAGE_FILE")
		return f, nil
	}
	if f.SizeGB == "" {
		f.SizeGB = "32"
	}
	f.CLI = Command("disk", "create").Field("resource-group", "group", rg).Field("name", "name", f.Name).
		Field("size-gb", "size", f.SizeGB).Field("location", "location", f.Location)
	return f, nil
}

// postedDisk reads a disk create form: the form, the disk it names, and a
// refusal that re-renders view with a message.
func (rq *Request) postedDisk(view string, upload bool) (diskForm, resource.ID, func(string) error, bool) {
	f := diskForm{Upload: upload, Name: strings.TrimSpace(rq.R.PostFormValue("name")), SizeGB: strings.TrimSpace(rq.R.PostFormValue("size")),
		placeForm: placeForm{Group: rq.R.PostFormValue("group"), Location: rq.R.PostFormValue("location")}}
	refuse := func(msg string) error {
		f, err := rq.diskForm(f)
		if err != nil {
			return err
		}
		return rq.formError(view, &f.placeForm, f, msg)
	}
	sub, rg, ok := f.groupID()
	if !ok {
		return f, resource.ID{}, refuse, false
	}
	return f, compute.DiskID(sub, rg, f.Name), refuse, true
}

func (p *Portal) diskNew(rq *Request) error {
	f, err := rq.diskForm(diskForm{placeForm: placeForm{Group: rq.R.URL.Query().Get("group")}})
	if err != nil {
		return err
	}
	return rq.Render("disk-new", f)
}

// userError is the message of a domain error the user can correct (a
// 4xx other than a refusal), or "".
func userError(err error) string {
	if e := resource.AsError(err); e != nil && e.Kind != resource.KindInternal && e.Kind != resource.KindForbidden &&
		e.Kind != resource.KindUnauthorized {
		return e.Message
	}
	return ""
}

func (p *Portal) diskCreate(rq *Request) error {
	f, id, refuse, ok := rq.postedDisk("disk-new", false)
	if !ok {
		return refuse("Choose a resource group.")
	}
	if err := rq.Require(Need(compute.ActionDiskWrite, id.String())); err != nil {
		return err
	}
	size, err := strconv.ParseInt(f.SizeGB, 10, 64)
	if err != nil || size <= 0 {
		return refuse("The size must be a whole number of GiB, at least 1.")
	}
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String(), New: true}); done || err != nil {
		return err
	}
	d, err := p.cfg.Compute.CreateDisk(rq.Context(), rq.Principal, id, compute.DiskInput{Location: f.Location,
		CreationData: compute.CreationData{CreateOption: compute.OptionEmpty}, DiskSizeGB: size})
	if msg := userError(err); msg != "" {
		return refuse(msg)
	}
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(d.ID), "Disk "+d.Name+" created.")
}

func (p *Portal) diskUploadForm(rq *Request) error {
	f, err := rq.diskForm(diskForm{Upload: true, placeForm: placeForm{Group: rq.R.URL.Query().Get("group")}})
	if err != nil {
		return err
	}
	return rq.Render("disk-upload", f)
}

// uploadStart is what the upload page's script gets back: where to PUT the
// image's pages and where to post when done.
type uploadStart struct {
	Data   string `json:"data"` // the write grant's data-plane URL, relative to this server
	Finish string `json:"finish"`
	Disk   string `json:"disk"`
}

// diskUploadStart creates a disk for an upload of the image's size and
// grants write access to it, as `coffer disk upload` does; the page's
// script then writes the image through the grant (with progress) and
// posts to Finish, which ends the grant and so the upload.
func (p *Portal) diskUploadStart(rq *Request) error {
	f, id, refuse, ok := rq.postedDisk("disk-upload", true)
	if !ok {
		return refuse("Choose a resource group.")
	}
	if err := rq.Require(Need(compute.ActionDiskWrite, id.String()), Need(compute.ActionDiskGrant, id.String())); err != nil {
		return err
	}
	n, err := strconv.ParseInt(rq.R.PostFormValue("bytes"), 10, 64)
	if err != nil || n <= 0 {
		return refuse("Choose an image file (uploading needs JavaScript; without it, use the CLI command below).")
	}
	n = (n + 511) / 512 * 512
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String(), New: true}); done || err != nil {
		return err
	}
	ctx := rq.Context()
	d, err := p.cfg.Compute.CreateDisk(ctx, rq.Principal, id, compute.DiskInput{Location: f.Location,
		CreationData: compute.CreationData{CreateOption: compute.OptionUpload, UploadSizeBytes: n}})
	if msg := userError(err); msg != "" {
		return refuse(msg)
	}
	if err != nil {
		return err
	}
	g, err := p.cfg.Compute.GrantAccess(ctx, rq.Principal, id, compute.GrantInput{Access: compute.AccessWrite, Duration: 24 * time.Hour})
	if err != nil {
		return err
	}
	sas := api.SASURL("", g.Ref(), g.Token)
	rq.W.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(rq.W).Encode(uploadStart{Data: sas, Finish: PageURL(d.ID) + "/revoke", Disk: PageURL(d.ID)})
}

type grantRow struct {
	compute.Grant
	Revoke post
}

type diskPage struct {
	Disk      compute.Disk
	Group     string
	State     string
	Grants    []grantRow
	Snapshots []snapshotRow
	GrantForm Control
	RevokeAll Control
	Resize    Control
	Delete    Control
	NBD       bool
	JSON      string
	GrantCLI  *CLI
	NBDCLI    *CLI
	ResizeCLI *CLI
	DeleteCLI *CLI
	Access    *accessShown
}

// accessShown is a grant's URLs, shown once on the page that made it.
type accessShown struct {
	SAS, NBD string
	Expires  time.Time
	Access   compute.Access
}

func diskIDOf(r *http.Request) resource.ID {
	return compute.DiskID(r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
}

func (p *Portal) diskShow(rq *Request) error {
	id := diskIDOf(rq.R)
	if err := rq.Require(Need(compute.ActionDiskRead, id.String())); err != nil {
		return err
	}
	return p.renderDisk(rq, id, nil)
}

func (p *Portal) renderDisk(rq *Request, id resource.ID, shown *accessShown) error {
	ctx := rq.Context()
	d, err := p.cfg.Compute.GetDisk(ctx, id)
	if err != nil {
		return err
	}
	now := p.cfg.Clock.Now()
	page := diskPage{Disk: d, Group: id.ResourceGroup, State: d.State(now), Access: shown,
		GrantForm: rq.Can(compute.ActionDiskGrant, id.String()), RevokeAll: rq.Can(compute.ActionDiskRevoke, id.String()),
		NBD:      p.cfg.NBDAddress(ctx, "") != "",
		GrantCLI: Command("disk", "grant-access").Flag("resource-group", id.ResourceGroup).Flag("name", d.Name).Field("access", "access", "read").Field("duration-in-seconds", "duration", "3600"),
		NBDCLI:   Command("disk", "nbd-url").Flag("resource-group", id.ResourceGroup).Flag("name", d.Name),
		Resize:   rq.Can(compute.ActionDiskWrite, id.String()), Delete: rq.Can(compute.ActionDiskDelete, id.String()),
		ResizeCLI: Command("disk", "update").Flag("resource-group", id.ResourceGroup).Flag("name", d.Name).
			Field("size-gb", "size", strconv.FormatInt(d.DiskSizeGB, 10)),
		DeleteCLI: Command("disk", "delete").Flag("resource-group", id.ResourceGroup).Flag("name", d.Name).Bool("yes", true)}
	revoke := PageURL(d.ID) + "/revoke"
	for _, g := range d.ActiveGrants(now) {
		b := postButton("Revoke", revoke, page.RevokeAll, rq.Session.CSRF)
		b.Fields = map[string]string{"grant": g.ID}
		page.Grants = append(page.Grants, grantRow{Grant: g, Revoke: b})
	}
	sns, err := rq.snapshots()
	if err != nil {
		return err
	}
	for _, sn := range sns {
		if strings.EqualFold(sn.CreationData.SourceResourceID, d.ID) {
			page.Snapshots = append(page.Snapshots, newSnapshotRow(sn))
		}
	}
	sort.Slice(page.Snapshots, func(i, j int) bool { return page.Snapshots[i].TimeCreated.After(page.Snapshots[j].TimeCreated) })
	if page.JSON, err = jsonView(api.DiskBody(d, now)); err != nil {
		return err
	}
	return rq.Render("disk", page)
}

// diskGrant grants read or write access to a disk and shows its URLs
// (the data-plane SAS URL and the NBD URL) on the page, once.
func (p *Portal) diskGrant(rq *Request) error {
	id := diskIDOf(rq.R)
	if err := rq.Require(Need(compute.ActionDiskGrant, id.String())); err != nil {
		return err
	}
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String()}); done || err != nil {
		return err
	}
	acc, err := compute.ParseAccess(rq.R.PostFormValue("access"))
	if err != nil {
		return err
	}
	secs, err := strconv.ParseInt(rq.R.PostFormValue("duration"), 10, 64)
	if err != nil || secs <= 0 {
		return resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The duration must be a whole number of seconds, at least 1.")
	}
	g, err := p.cfg.Compute.GrantAccess(rq.Context(), rq.Principal, id, compute.GrantInput{Access: acc, Duration: time.Duration(secs) * time.Second})
	if err != nil {
		return err
	}
	shown := &accessShown{SAS: api.SASURL(p.cfg.Endpoint, g.Ref(), g.Token),
		NBD: api.NBDURL(p.cfg.Endpoint, p.cfg.NBDAddress(rq.Context(), id.String()), p.cfg.NBDTLS, g.Token), Expires: g.Grant.Expires, Access: acc}
	return p.renderDisk(rq, id, shown)
}

// onHome serves the request on the node that holds the disk v names (or,
// for a new disk, the node placement chooses, as for the API's PUT) when
// that is another node, through the server's one forwarder, and reports
// whether it did. Acting here instead would leave that node's view of the
// disk behind (a revoked grant still cached there, a resize or a flush of
// a volume this node does not have). The handler has authenticated,
// checked the CSRF token and authorized the request first; the home node
// does all three again from the session cookie and the form it gets, as
// the API's home node does from the caller's token: the hop grants
// nothing. A dead home is 503 NodeUnavailable, naming it.
func (p *Portal) onHome(rq *Request, v api.Volume) (bool, error) {
	if p.cfg.Forwarder == nil {
		return false, nil
	}
	// checkCSRF parsed the form (or the script sent its token in a
	// header and the body is unread): pass the form on as it was read.
	if err := rq.R.ParseForm(); err != nil {
		return false, resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The form does not parse: %v", err)
	}
	rq.R.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return p.cfg.Forwarder.Forward(rq.Context(), rq.W, rq.R, []byte(rq.R.PostForm.Encode()), v)
}

// diskRevoke ends one grant (form field grant) or all of a disk's grants;
// ending the write grant of a disk created for upload finishes the upload.
func (p *Portal) diskRevoke(rq *Request) error {
	id := diskIDOf(rq.R)
	if err := rq.Require(Need(compute.ActionDiskRevoke, id.String())); err != nil {
		return err
	}
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String()}); done || err != nil {
		return err
	}
	var err error
	if g := rq.R.PostFormValue("grant"); g != "" {
		err = p.cfg.Compute.RevokeGrant(rq.Context(), id, g)
	} else {
		err = p.cfg.Compute.RevokeAccess(rq.Context(), id)
	}
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(id.String()), "Access revoked.")
}

// diskResize grows a disk to the size (GiB) of form field size.
func (p *Portal) diskResize(rq *Request) error {
	id := diskIDOf(rq.R)
	if err := rq.Require(Need(compute.ActionDiskWrite, id.String())); err != nil {
		return err
	}
	size, err := strconv.ParseInt(strings.TrimSpace(rq.R.PostFormValue("size")), 10, 64)
	if err != nil {
		return resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The size must be a whole number of GiB.")
	}
	if err := compute.CheckDiskSizeGB(size); err != nil {
		return err
	}
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String()}); done || err != nil {
		return err
	}
	d, err := p.cfg.Compute.UpdateDisk(rq.Context(), rq.Principal, id, compute.DiskUpdate{DiskSizeGB: size})
	if err != nil {
		return err
	}
	return rq.Redirect(PageURL(d.ID), fmt.Sprintf("Disk %s resized to %d GiB.", d.Name, d.DiskSizeGB))
}

// diskDelete deletes a disk and its volume (its snapshots stay), once its
// name was typed as confirmation.
func (p *Portal) diskDelete(rq *Request) error {
	id := diskIDOf(rq.R)
	if err := rq.Require(Need(compute.ActionDiskDelete, id.String())); err != nil {
		return err
	}
	if rq.R.PostFormValue("confirm") != id.Name() {
		return resource.Errorf(resource.KindBadRequest, "InvalidParameter", "Type the disk's name, %s, to confirm its deletion.", id.Name())
	}
	if done, err := p.onHome(rq, api.Volume{DiskID: id.String()}); done || err != nil {
		return err
	}
	if _, err := p.cfg.Compute.DeleteDisk(rq.Context(), id); err != nil {
		return err
	}
	return rq.Redirect("/disks", "Disk "+id.Name()+" deleted.")
}

type snapshotPage struct {
	Snapshot snapshotRow
	JSON     string
	State    string
}

func (p *Portal) snapshotShow(rq *Request) error {
	id := compute.SnapshotID(rq.R.PathValue("sub"), rq.R.PathValue("rg"), rq.R.PathValue("name"))
	if err := rq.Require(Need(compute.ActionSnapshotRead, id.String())); err != nil {
		return err
	}
	sn, err := p.cfg.Compute.GetSnapshot(rq.Context(), id)
	if err != nil {
		return err
	}
	now := p.cfg.Clock.Now()
	page := snapshotPage{Snapshot: newSnapshotRow(sn), State: sn.State(now)}
	if page.JSON, err = jsonView(api.SnapshotBody(sn, now)); err != nil {
		return err
	}
	return rq.Render("snapshot", page)
}
