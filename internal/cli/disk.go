package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
)

var diskCols = []column[client.Disk]{
	col("Name", func(d client.Disk) string { return d.Name }),
	col("Location", func(d client.Disk) string { return d.Location }),
	col("SizeGB", func(d client.Disk) string { return fmt.Sprint(d.Properties.DiskSizeGB) }),
	col("Sku", func(d client.Disk) string {
		if d.SKU == nil {
			return ""
		}
		return d.SKU.Name
	}),
	col("DiskState", func(d client.Disk) string { return d.Properties.DiskState }),
	col("ProvisioningState", func(d client.Disk) string { return d.Properties.ProvisioningState }),
}

// resolveLocation returns loc, or the group's location when empty.
func resolveLocation(ctx context.Context, c *client.Client, rg, loc string) (string, error) {
	if loc != "" {
		return loc, nil
	}
	g, err := c.GetGroup(ctx, rg)
	if err != nil {
		return "", err
	}
	return g.Location, nil
}

// resolveID turns a name in group rg (or a full resource ID) into an ID.
func resolveID(c *client.Client, typ, rg, nameOrID string) string {
	if strings.HasPrefix(strings.ToLower(nameOrID), "/subscriptions/") {
		return nameOrID
	}
	return "/subscriptions/" + c.Subscription + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/" + typ + "/" + nameOrID
}

func diskCommand() *command {
	var rg, name, location, sku, source, access string
	var uploadBytes, duration int64
	var sizeGB intFlag
	var yes, noWait bool
	tags := tagsFlag{}
	common := func(fs *flag.FlagSet) {
		stringFlag(fs, &rg, "resource-group", "g", "", "resource group")
		stringFlag(fs, &name, "name", "n", "", "disk name")
	}
	need := func() error { return required("resource-group", rg, "name", name) }
	accessFlags := func(fs *flag.FlagSet) {
		common(fs)
		fs.StringVar(&access, "access", "read", "access: read or write")
		fs.Int64Var(&duration, "duration-in-seconds", 3600, "how long the access lasts")
	}
	grant := func(ctx context.Context, c *client.Client) (client.AccessURI, error) {
		return c.GrantAccess(ctx, client.Disks, rg, name, accessLevel(access), time.Duration(duration)*time.Second)
	}
	return &command{name: "disk", short: "Manage managed disks (Microsoft.Compute/disks)", sub: []*command{
		{name: "create", short: "Create a disk: empty (--size-gb), from a disk or snapshot (--source), or for upload (--upload-size-bytes)",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				stringFlag(fs, &location, "location", "l", "", "location (default: the group's)")
				fs.Var(&sizeGB, "size-gb", "size in GiB")
				fs.StringVar(&sku, "sku", "", "SKU: Standard_LRS, StandardSSD_LRS, Premium_LRS, PremiumV2_LRS, UltraSSD_LRS")
				fs.StringVar(&source, "source", "", "source disk or snapshot (name in the group, or resource ID)")
				fs.Int64Var(&uploadBytes, "upload-size-bytes", 0, "create an empty disk awaiting an upload of this many bytes (a multiple of 512)")
				fs.Var(tags, "tags", "space-separated key=value tags (repeatable)")
				fs.BoolVar(&noWait, "no-wait", false, "return at once")
			},
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				loc, err := resolveLocation(ctx, c, rg, location)
				if err != nil {
					return client.Disk{}, err
				}
				spec := client.DiskSpec{Location: loc, SKU: sku, SizeGB: sizeGB.v, SizeGiven: sizeGB.set, UploadSizeBytes: uploadBytes}
				if len(tags) > 0 {
					spec.Tags = tags
				}
				if source != "" {
					typ := client.Snapshots
					if _, err := c.GetSnapshot(ctx, rg, source); err != nil && !strings.HasPrefix(source, "/") {
						typ = client.Disks
					}
					if strings.Contains(strings.ToLower(source), "/providers/microsoft.compute/disks/") {
						typ = client.Disks
					}
					spec.Source = resolveID(c, typ, rg, source)
				}
				return c.CreateDisk(ctx, rg, name, spec, !noWait)
			}, diskCols)},
		{name: "show", short: "Show a disk", flags: common,
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				return c.GetDisk(ctx, rg, name)
			}, diskCols)},
		{name: "list", short: "List disks (of a group, or of the subscription)",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &rg, "resource-group", "g", "", "resource group (default: all)")
			},
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Disk, error) {
				return c.ListDisks(ctx, rg)
			}, diskCols)},
		{name: "update", short: "Grow a disk (--size-gb) or set its tags",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				fs.Var(&sizeGB, "size-gb", "new size in GiB (larger than the current one)")
				fs.Var(tags, "tags", "space-separated key=value tags (repeatable)")
			},
			run: runShow(func() error {
				if err := need(); err != nil {
					return err
				}
				if !sizeGB.set && len(tags) == 0 {
					return usagef("nothing to update: give --size-gb, --tags or both")
				}
				return nil
			}, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				var t map[string]string
				if len(tags) > 0 {
					t = tags
				}
				return c.UpdateDisk(ctx, rg, name, sizeGB.ptr(), t)
			}, diskCols)},
		{name: "delete", short: "Delete a disk",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				stringFlagBool(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmedDelete("disk", &name, &yes, need, func(ctx context.Context, c *client.Client) error {
				return c.DeleteDisk(ctx, rg, name)
			})},
		{name: "grant-access", short: "Grant read or write access: print the SAS URL and the NBD URL", flags: accessFlags,
			run: runShow(need, grant, []column[client.AccessURI]{
				col("AccessSAS", func(a client.AccessURI) string { return a.AccessSAS }),
				col("NBDURL", func(a client.AccessURI) string { return a.NBDURL }),
			})},
		{name: "revoke-access", short: "End every access grant of a disk", flags: common,
			run: runDo(need, func(ctx context.Context, c *client.Client) error {
				return c.RevokeAccess(ctx, client.Disks, rg, name)
			})},
		{name: "nbd-url", short: "Grant access and print an NBD URL that qemu-img, nbdcopy and nbdinfo accept", flags: accessFlags,
			run: runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
				a, err := grant(ctx, c)
				if err != nil {
					return err
				}
				if a.NBDURL == "" {
					return errors.New("the server does not serve NBD")
				}
				fmt.Fprintln(e.Stdout, a.NBDURL)
				return nil
			})},
		{name: "upload", short: "Upload a raw image into a disk (created for upload if it does not exist)", usage: "FILE",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				stringFlag(fs, &location, "location", "l", "", "location of a new disk (default: the group's)")
				fs.StringVar(&sku, "sku", "", "SKU of a new disk")
			},
			run: runFile("upload", need, func(ctx context.Context, e *Env, c *client.Client, path string) error {
				return uploadDisk(ctx, e, c, rg, name, location, sku, path)
			})},
		{name: "download", short: "Download a disk into a raw image file (sparse)", usage: "FILE", flags: common,
			run: runFile("download", need, func(ctx context.Context, e *Env, c *client.Client, path string) error {
				return downloadData(ctx, e, c, client.Disks, rg, name, path)
			})},
	}}
}

func accessLevel(s string) string {
	switch strings.ToLower(s) {
	case "read":
		return "Read"
	case "write":
		return "Write"
	}
	return s
}

// Transfer tuning.
const (
	pieceSize   = 4 << 20 // the page-blob write limit
	transferers = 4
)

// dataRanges returns the data (non-hole) ranges of f up to size, using
// SEEK_DATA/SEEK_HOLE where the file system has them (else all of it).
func dataRanges(f *os.File, size int64) [][2]int64 {
	const seekData, seekHole = 3, 4
	var out [][2]int64
	for pos := int64(0); pos < size; {
		d, err := f.Seek(pos, seekData)
		if err != nil {
			if pos == 0 && !isNoData(err) {
				return [][2]int64{{0, size}}
			}
			break
		}
		h, err := f.Seek(d, seekHole)
		if err != nil {
			h = size
		}
		h = min(h, size)
		if d >= h {
			break
		}
		out = append(out, [2]int64{d, h})
		pos = h
	}
	return out
}

// isNoData reports SEEK_DATA's "no data past this offset" (ENXIO).
func isNoData(err error) bool { return errors.Is(err, syscall.ENXIO) }

// progress reports bytes done: a bar on a terminal, plain lines otherwise.
type progress struct {
	e        *Env
	verb     string
	total    int64
	done     atomic.Int64
	start    time.Time
	mu       sync.Mutex
	lastLine time.Time
	lastPct  int64
}

func newProgress(e *Env, verb string, total int64) *progress {
	return &progress{e: e, verb: verb, total: total, start: clock.Real{}.Now(), lastPct: -1}
}

func (p *progress) add(n int64) {
	done := p.done.Add(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := clock.Real{}.Now()
	pct := int64(100)
	if p.total > 0 {
		pct = done * 100 / p.total
	}
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(done) / secs / (1 << 20)
	}
	if p.e.Terminal {
		if now.Sub(p.lastLine) < 100*time.Millisecond && done < p.total {
			return
		}
		p.lastLine = now
		const width = 30
		fill := int(pct * width / 100)
		fmt.Fprintf(p.e.Stderr, "\r%s [%s%s] %3d%% %s/%s %.1f MiB/s ", p.verb, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
			pct, mib(done), mib(p.total), rate)
		return
	}
	if pct/10 != p.lastPct/10 || done >= p.total {
		if pct == p.lastPct {
			return
		}
		p.lastPct = pct
		fmt.Fprintf(p.e.Stderr, "%s: %d%% (%s of %s, %.1f MiB/s)\n", p.verb, pct, mib(done), mib(p.total), rate)
	}
}

func (p *progress) finish() {
	secs := clock.Real{}.Now().Sub(p.start).Seconds()
	if p.e.Terminal {
		fmt.Fprintln(p.e.Stderr)
	}
	rate := 0.0
	if secs > 0 {
		rate = float64(p.done.Load()) / secs / (1 << 20)
	}
	fmt.Fprintf(p.e.Stderr, "%s %s of data in %.1fs (%.1f MiB/s)\n", p.verb, mib(p.done.Load()), secs, rate)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// pieces cuts ranges into ≤pieceSize pieces.
func pieces(ranges [][2]int64) [][2]int64 {
	var out [][2]int64
	for _, r := range ranges {
		for off := r[0]; off < r[1]; off += pieceSize {
			out = append(out, [2]int64{off, min(off+pieceSize, r[1])})
		}
	}
	return out
}

// parallel runs fn over the pieces with a few workers; the first error wins.
func parallel(parent context.Context, ps [][2]int64, fn func(ctx context.Context, p [2]int64) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	work := make(chan [2]int64)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range transferers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := fn(ctx, p); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, p := range ps {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = parent.Err()
	}
	return first
}

func uploadDisk(ctx context.Context, e *Env, c *client.Client, rg, name, location, sku, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	size := (st.Size() + 511) / 512 * 512
	d, err := c.GetDisk(ctx, rg, name)
	if ce := client.AsError(err); ce != nil && ce.StatusCode == 404 {
		loc, lerr := resolveLocation(ctx, c, rg, location)
		if lerr != nil {
			return lerr
		}
		if d, err = c.CreateDisk(ctx, rg, name, client.DiskSpec{Location: loc, SKU: sku, UploadSizeBytes: size}, true); err != nil {
			return err
		}
		fmt.Fprintf(e.Stderr, "Created disk %s for an upload of %d bytes.\n", name, size)
	} else if err != nil {
		return err
	}
	if d.Properties.DiskSizeBytes < st.Size() {
		return fmt.Errorf("upload: the disk holds %d bytes, the file %d", d.Properties.DiskSizeBytes, st.Size())
	}
	a, err := c.GrantAccess(ctx, client.Disks, rg, name, "Write", 24*time.Hour)
	if err != nil {
		return err
	}
	ranges := dataRanges(f, st.Size())
	var total int64
	for _, r := range ranges {
		total += r[1] - r[0]
	}
	pr := newProgress(e, "Uploaded", total)
	err = parallel(ctx, pieces(ranges), func(ctx context.Context, p [2]int64) error {
		n := p[1] - p[0]
		buf := make([]byte, (n+511)/512*512)
		if _, err := f.ReadAt(buf[:n], p[0]); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s at %d: %w", path, p[0], err)
		}
		if !allZero(buf) {
			if err := c.PutPages(ctx, a.AccessSAS, p[0], buf); err != nil {
				return err
			}
		}
		pr.add(n)
		return nil
	})
	pr.finish()
	if err != nil {
		return err
	}
	return c.RevokeAccess(ctx, client.Disks, rg, name)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// downloadData writes a disk or snapshot to a sparse file: only the
// allocated page ranges are read, and all-zero pieces are not written.
func downloadData(ctx context.Context, e *Env, c *client.Client, typ, rg, name, path string) error {
	a, err := c.GrantAccess(ctx, typ, rg, name, "Read", 24*time.Hour)
	if err != nil {
		return err
	}
	ranges, size, err := c.PageRanges(ctx, a.AccessSAS, "")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	var rs [][2]int64
	var total int64
	for _, r := range ranges {
		if !r.Clear {
			rs = append(rs, [2]int64{r.Start, r.End + 1})
			total += r.End + 1 - r.Start
		}
	}
	pr := newProgress(e, "Downloaded", total)
	err = parallel(ctx, pieces(rs), func(ctx context.Context, p [2]int64) error {
		b, err := c.ReadRange(ctx, a.AccessSAS, p[0], p[1]-p[0])
		if err != nil {
			return err
		}
		if !allZero(b) {
			if _, err := f.WriteAt(b, p[0]); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
		pr.add(p[1] - p[0])
		return nil
	})
	pr.finish()
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return c.RevokeAccess(ctx, typ, rg, name)
}
