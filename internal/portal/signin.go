package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/store"
)

// Failed sign-ins are limited per client ID and per remote address,
// across every node sharing the metadata store (signinLimiter): after
// signinMaxFailures within signinWindow, sign-in is refused until the
// oldest of them leaves the window.
const (
	signinMaxFailures = 5
	signinWindow      = 15 * time.Minute
)

type signinPage struct {
	ClientID string
	Next     string
	Error    string
}

func (p *Portal) signinPage(rq *Request) error {
	s := rq.Session
	if s != nil && s.PrincipalID != "" {
		http.Redirect(rq.W, rq.R, "/", http.StatusSeeOther)
		return nil
	}
	if s == nil {
		rq.signinCSRF = p.signinTokens.forForm(rq.W, rq.R, p.cfg.Secure)
	}
	return rq.Render("signin", signinPage{Next: localPath(rq.R.URL.Query().Get("next"))})
}

// signin checks a client ID and secret (a service principal's, or the
// admin's from admin.json) and starts a signed-in session with a new ID
// and CSRF token.
func (p *Portal) signin(rq *Request) error {
	clientID := strings.TrimSpace(rq.R.PostFormValue("client_id"))
	secret := rq.R.PostFormValue("client_secret")
	page := signinPage{ClientID: clientID, Next: localPath(rq.R.PostFormValue("next"))}
	if rq.Session == nil {
		// The form shown again carries the token just checked.
		rq.signinCSRF = p.signinTokens.cookie(rq.R)
	}
	addr := remoteHost(rq.R)
	wait, err := p.limiter.blocked(rq.Context(), addr, clientID)
	if err != nil {
		return err
	}
	if wait > 0 {
		rq.Status(http.StatusTooManyRequests)
		page.Error = "Too many failed sign-ins. Try again in " + wait.Round(time.Minute).String() + "."
		return rq.Render("signin", page)
	}
	pr, err := p.cfg.Identity.CheckClientSecret(rq.Context(), clientID, secret)
	if errors.Is(err, identity.ErrInvalidClient) || (err == nil && clientID == "") {
		if err := p.limiter.fail(rq.Context(), addr, clientID); err != nil {
			return err
		}
		p.log.Info("portal sign-in refused", "clientId", clientID, "remote", addr)
		rq.Status(http.StatusUnauthorized)
		page.Error = "The client ID or secret is not valid."
		return rq.Render("signin", page)
	}
	if err != nil {
		return err
	}
	// A new session with a new ID: one the browser held (another
	// principal's, or an ID another party planted) ends, and so does the
	// sign-in form's token.
	if err := p.sessions.end(rq.Context(), rq.W, rq.R, p.cfg.Secure); err != nil {
		return err
	}
	p.signinTokens.clear(rq.W, p.cfg.Secure)
	if _, err := p.sessions.start(rq.Context(), rq.W, pr.ID, p.cfg.Secure); err != nil {
		return err
	}
	next := page.Next
	if next == "" {
		next = "/"
	}
	http.Redirect(rq.W, rq.R, next, http.StatusSeeOther)
	return nil
}

func (p *Portal) signout(rq *Request) error {
	if err := p.sessions.end(rq.Context(), rq.W, rq.R, p.cfg.Secure); err != nil {
		return err
	}
	http.Redirect(rq.W, rq.R, "/signin", http.StatusSeeOther)
	return nil
}

// localPath returns next when it is a path of this server (so that the
// sign-in page cannot send a browser elsewhere), else "".
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n") {
		return ""
	}
	return next
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signinLimiter counts failed sign-ins per remote address and per client
// ID over a sliding window, in the metadata store, so that every node
// sharing it counts the same failures: N nodes behind one load balancer
// give an attacker no more attempts than one. A key's row holds the times
// of its last signinMaxFailures failures within the window (so it is
// bounded), and expires with the newest of them; the sweeper deletes
// expired rows, a batch at a failure.
//
// Failures are counted by group commit: a failure that arrives while
// another's count is being written joins the next batch, and one write
// transaction counts the whole batch. A spray of failures from addresses
// never refused (many IPv4 addresses) thus costs the store one write at a
// time whatever its rate, where a write per failure let about 200 a second
// keep SQLite's one writer busy; a failure is still counted durably before
// its answer goes out.
type signinLimiter struct {
	db      store.Store
	clk     clock.Clock
	sweeper *sweeper

	mu         sync.Mutex
	cond       *sync.Cond   // signalled when a batch's write ends
	queued     *failBatch   // failures waiting for the next write
	committing bool         // a batch is being written
	batches    atomic.Int64 // batches written (for tests and the benchmark)
}

// failBatch is failures counted by one write transaction.
type failBatch struct {
	keys []string    // a row key per failure and key
	at   []time.Time // when, for each of keys
	done chan struct{}
	err  error
}

// kindSigninFailures is the metadata-store kind of failed sign-in counts.
const (
	kindSigninFailures = "portal.signin-failures"
	failuresPrefix     = "/portal/signin-failures/"
)

// failuresRecord is a key's row: the times of its last failures within
// the window, oldest first, at most signinMaxFailures.
type failuresRecord struct {
	At []time.Time `json:"at"`
}

// live returns the failures still within the window at now.
func (rec failuresRecord) live(now time.Time) []time.Time {
	i := 0
	for i < len(rec.At) && now.Sub(rec.At[i]) >= signinWindow {
		i++
	}
	return rec.At[i:]
}

func newSigninLimiter(db store.Store, clk clock.Clock) *signinLimiter {
	l := &signinLimiter{db: db, clk: clk, sweeper: &sweeper{db: db, kind: kindSigninFailures, prefix: failuresPrefix,
		expired: func(data []byte, now time.Time) bool {
			var rec failuresRecord
			return json.Unmarshal(data, &rec) != nil || len(rec.live(now)) == 0
		}}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// limiterKeys are the row keys counting the failures of addr (its /64
// for an IPv6 address: limiterSource) and of clientID (hashed: the rows
// name no address or client ID).
func limiterKeys(addr, clientID string) []string {
	keys := make([]string, 0, 2)
	for _, k := range []string{"addr:" + limiterSource(addr), "client:" + strings.ToLower(clientID)} {
		h := sha256.Sum256([]byte(k))
		keys = append(keys, failuresPrefix+hex.EncodeToString(h[:]))
	}
	return keys
}

// limiterSource is the source whose failures addr's count with: the
// address itself for IPv4, its /64 for IPv6, since one host (or one
// customer of an ISP) holds a whole /64 and could otherwise try from a
// fresh address each time, never refused, each failure a write to the
// store. What does not parse as an address counts as itself.
func limiterSource(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// read returns the row of key (empty when there is none).
func (l *signinLimiter) read(ctx context.Context, tx store.Tx, key string) (failuresRecord, error) {
	var rec failuresRecord
	o, err := tx.Get(ctx, kindSigninFailures, key)
	if errors.Is(err, store.ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(o.Data, &rec); err != nil {
		return rec, fmt.Errorf("decode failed sign-ins %s: %w", key, err)
	}
	return rec, nil
}

// blocked returns how long sign-ins from addr or for clientID stay
// refused (0: not refused).
func (l *signinLimiter) blocked(ctx context.Context, addr, clientID string) (time.Duration, error) {
	now := l.clk.Now().UTC()
	var wait time.Duration
	err := l.db.View(ctx, func(tx store.Tx) error {
		wait = 0
		for _, k := range limiterKeys(addr, clientID) {
			rec, err := l.read(ctx, tx, k)
			if err != nil {
				return err
			}
			if fs := rec.live(now); len(fs) >= signinMaxFailures {
				wait = max(wait, fs[len(fs)-signinMaxFailures].Add(signinWindow).Sub(now))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read failed sign-ins: %w", err)
	}
	return wait, nil
}

// fail counts a failed sign-in from addr for clientID, durably, before it
// returns. The failure joins the batch waiting for the next write; the
// failure that opened the batch writes it once the write before it ended,
// and the others wait for that write (group commit).
func (l *signinLimiter) fail(ctx context.Context, addr, clientID string) error {
	now := l.clk.Now().UTC()
	l.mu.Lock()
	b := l.queued
	lead := b == nil
	if lead {
		b = &failBatch{done: make(chan struct{})}
		l.queued = b
	}
	for _, k := range limiterKeys(addr, clientID) {
		b.keys = append(b.keys, k)
		b.at = append(b.at, now)
	}
	if !lead {
		l.mu.Unlock()
		select {
		case <-b.done:
			return b.err
		case <-ctx.Done():
			return fmt.Errorf("count a failed sign-in: %w", ctx.Err())
		}
	}
	for l.committing {
		l.cond.Wait()
	}
	l.queued, l.committing = nil, true
	l.mu.Unlock()
	// The batch is the waiters' too: their requests' cancellation does
	// not stop its write, nor does this one's.
	b.err = l.write(context.WithoutCancel(ctx), b, now)
	close(b.done)
	l.batches.Add(1)
	l.mu.Lock()
	l.committing = false
	l.cond.Broadcast()
	l.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	l.sweeper.sweep(ctx, now)
	return nil
}

// write counts the failures of b in one write transaction: each key's row
// is read once and keeps its last signinMaxFailures failures in the window.
func (l *signinLimiter) write(ctx context.Context, b *failBatch, now time.Time) error {
	err := l.db.Update(ctx, func(tx store.Tx) error {
		rows := map[string]failuresRecord{}
		var order []string
		for i, k := range b.keys {
			rec, ok := rows[k]
			if !ok {
				var err error
				if rec, err = l.read(ctx, tx, k); err != nil {
					return err
				}
				rec.At = slices.Clone(rec.live(now))
				order = append(order, k)
			}
			rec.At = append(rec.At, b.at[i])
			rec.At = rec.At[max(0, len(rec.At)-signinMaxFailures):]
			rows[k] = rec
		}
		for _, k := range order {
			data, err := json.Marshal(rows[k])
			if err != nil {
				return fmt.Errorf("encode failed sign-ins: %w", err)
			}
			if err := tx.Put(ctx, &store.Object{Kind: kindSigninFailures, Key: k, Data: data}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count %d failed sign-in keys: %w", len(b.keys), err)
	}
	return nil
}
