package cli

import (
	"context"
	"errors"
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

// Transfer tuning.
const (
	pieceSize   = 4 << 20  // the page-blob write limit
	clearPiece  = 64 << 20 // the most one clear request covers, for progress and parallelism
	zeroUnit    = 64 << 10 // the unit in which an image's data is checked for zeros
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

// finish prints the summary line: the verb, what (the bytes moved), the
// time taken and the rate over the bytes done.
func (p *progress) finish(what string) {
	secs := clock.Real{}.Now().Sub(p.start).Seconds()
	if p.e.Terminal {
		fmt.Fprintln(p.e.Stderr)
	}
	rate := 0.0
	if secs > 0 {
		rate = float64(p.done.Load()) / secs / (1 << 20)
	}
	fmt.Fprintf(p.e.Stderr, "%s %s in %.1fs (%.1f MiB/s)\n", p.verb, what, secs, rate)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// pieces cuts ranges into pieces of at most n bytes.
func pieces(ranges [][2]int64, n int64) [][2]int64 {
	var out [][2]int64
	for _, r := range ranges {
		for off := r[0]; off < r[1]; off += n {
			out = append(out, [2]int64{off, min(off+n, r[1])})
		}
	}
	return out
}

// within returns the parts of ranges (sorted, disjoint) inside [lo, hi).
func within(ranges [][2]int64, lo, hi int64) [][2]int64 {
	var out [][2]int64
	for _, r := range ranges {
		if s, t := max(r[0], lo), min(r[1], hi); s < t {
			out = append(out, [2]int64{s, t})
		}
	}
	return out
}

// parallel runs fn over the items with a few workers; the first error wins.
func parallel[T any](parent context.Context, items []T, fn func(ctx context.Context, item T) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	work := make(chan T)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range transferers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := fn(ctx, it); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
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

func roundUp512(n int64) int64 { return (n + 511) / 512 * 512 }

// uploadJob is a range of the disk to upload: image data to send, or a
// range the image has as zeros.
type uploadJob struct {
	off, end int64
	zero     bool
}

// uploadDisk makes disk rg/name read exactly as the raw image at path:
// its data is sent in page writes, and every range the image has as zeros
// (holes, zero runs inside its data, and the part of a larger disk past the
// image's end) is cleared where the disk holds data, as page-clear ranges
// (no zero bytes cross the wire). A disk this command creates for the
// upload holds no data, so nothing is cleared on it. The upload's own
// grant is ended at the end; other grants on the disk are left alone.
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
	imgSize := st.Size()
	size := roundUp512(imgSize)
	d, err := c.GetDisk(ctx, rg, name)
	fresh := false
	if ce := client.AsError(err); ce != nil && ce.StatusCode == 404 {
		loc, lerr := resolveLocation(ctx, c, rg, location)
		if lerr != nil {
			return lerr
		}
		if d, err = c.CreateDisk(ctx, rg, name, client.DiskSpec{Location: loc, SKU: sku, UploadSizeBytes: size}, true); err != nil {
			return err
		}
		fresh = true
		fmt.Fprintf(e.Stderr, "Created disk %s for an upload of %d bytes.\n", name, size)
	} else if err != nil {
		return err
	}
	diskSize := d.Properties.DiskSizeBytes
	if diskSize < imgSize {
		return fmt.Errorf("upload: %s holds %d bytes, more than disk %s (%d bytes); grow the disk first (coffer disk update --size-gb) or upload to a new disk",
			path, imgSize, name, diskSize)
	}
	a, err := c.GrantAccess(ctx, client.Disks, rg, name, "Write", 24*time.Hour)
	if err != nil {
		return err
	}
	if a.GrantID == "" {
		return errors.New("upload: the server does not name its access grants (grantId); it is older than this client")
	}

	// Where the disk holds data now: the zeros of the image must be
	// cleared there, and past the image's end.
	var held [][2]int64
	end := size
	if !fresh {
		prs, _, err := c.PageRanges(ctx, a.AccessSAS, "")
		if err != nil {
			return err
		}
		for _, r := range prs {
			held = append(held, [2]int64{r.Start, r.End + 1})
		}
		end = diskSize
		if diskSize > size {
			fmt.Fprintf(e.Stderr, "The image (%d bytes) is smaller than disk %s (%d bytes): past the image's end the disk will read as zeros.\n",
				imgSize, name, diskSize)
		}
	}
	var jobs []uploadJob
	pos := int64(0)
	zeros := func(off, end int64) {
		for _, p := range pieces([][2]int64{{off, end}}, clearPiece) {
			jobs = append(jobs, uploadJob{off: p[0], end: p[1], zero: true})
		}
	}
	for _, r := range dataRanges(f, imgSize) {
		if r[0] > pos {
			zeros(pos, r[0])
		}
		for _, p := range pieces([][2]int64{r}, pieceSize) {
			jobs = append(jobs, uploadJob{off: p[0], end: p[1]})
		}
		pos = r[1]
	}
	if pos = roundUp512(pos); pos < end {
		zeros(pos, end)
	}

	var written, zeroed atomic.Int64
	clearHeld := func(ctx context.Context, off, end int64) error {
		if fresh {
			return nil
		}
		for _, r := range within(held, off, end) {
			if err := c.ClearPages(ctx, a.AccessSAS, r[0], r[1]-r[0]); err != nil {
				return err
			}
			zeroed.Add(r[1] - r[0])
		}
		return nil
	}
	pr := newProgress(e, "Uploaded", end)
	err = parallel(ctx, jobs, func(ctx context.Context, j uploadJob) error {
		if j.zero {
			if err := clearHeld(ctx, j.off, j.end); err != nil {
				return err
			}
			pr.add(j.end - j.off)
			return nil
		}
		n := j.end - j.off
		buf := make([]byte, roundUp512(n))
		if _, err := f.ReadAt(buf[:n], j.off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s at %d: %w", path, j.off, err)
		}
		// Send the data, clear the runs of zeros (checked per 64 KiB).
		for lo := 0; lo < len(buf); {
			zero := allZero(buf[lo:min(lo+zeroUnit, len(buf))])
			hi := lo
			for hi < len(buf) && allZero(buf[hi:min(hi+zeroUnit, len(buf))]) == zero {
				hi = min(hi+zeroUnit, len(buf))
			}
			if zero {
				if err := clearHeld(ctx, j.off+int64(lo), j.off+int64(hi)); err != nil {
					return err
				}
			} else {
				if err := c.PutPages(ctx, a.AccessSAS, j.off+int64(lo), buf[lo:hi]); err != nil {
					return err
				}
				written.Add(int64(hi - lo))
			}
			lo = hi
		}
		pr.add(int64(len(buf)))
		return nil
	})
	what := mib(written.Load()) + " of data"
	if !fresh {
		what += " and zeroed " + mib(zeroed.Load())
	}
	pr.finish(what)
	if err != nil {
		return err
	}
	return c.RevokeGrant(ctx, client.Disks, rg, name, a.GrantID)
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
// allocated page ranges are read, and all-zero pieces are not written. It
// ends its own access grant at the end, not the others.
func downloadData(ctx context.Context, e *Env, c *client.Client, typ, rg, name, path string) error {
	a, err := c.GrantAccess(ctx, typ, rg, name, "Read", 24*time.Hour)
	if err != nil {
		return err
	}
	if a.GrantID == "" {
		return errors.New("download: the server does not name its access grants (grantId); it is older than this client")
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
	err = parallel(ctx, pieces(rs, pieceSize), func(ctx context.Context, p [2]int64) error {
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
	pr.finish(mib(pr.done.Load()) + " of data")
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return c.RevokeGrant(ctx, typ, rg, name, a.GrantID)
}
