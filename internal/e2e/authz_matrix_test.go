package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/rbac"
)

var matrixOut = flag.String("matrix.out", "", "write every cell of the authorization matrix to this file (tab-separated)")

// TestAuthorizationMatrix runs every route of the API's route table and
// every data path (grant creation at Read and Write, SAS reads, page writes
// and clears, NBD read, write, trim and write-zeroes) as each built-in role
// assigned at resource, resource-group and subscription scope, as a
// principal with no role, as one whose roles are in another subscription
// and without a token, against a live server.
//
// The expected answer of each cell is computed from the role's actions and
// notActions (rbac.RoleDefinition.Grants) and the scopes of the row's role
// assignments; each column says only which actions at which scopes its
// request needs. An allowed cell must succeed and have its effect (data
// paths: the bytes are read back); a denied one must be refused (403
// AuthorizationFailed, 401 without a token) and change nothing.
func TestAuthorizationMatrix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	m := newMatrix(ctx, t)
	setup := time.Since(start)

	cols := matrixColumns()
	checkRouteCoverage(t, m, cols)
	checkOracle(t)
	defer checkRouteActions(t, m, cols)

	var cells []mxCell
	var mu sync.Mutex
	var phases []string
	for _, ph := range []mxPhase{phaseShared, phaseOwn, phaseSerial} {
		phaseStart := time.Now()
		var phaseCols []mxColumn
		for _, c := range cols {
			if c.phase == ph {
				phaseCols = append(phaseCols, c)
			}
		}
		workers := 4
		if ph == phaseSerial {
			workers = 1
		}
		forEachParallel(m.rows, workers, func(p *mxPrincipal) {
			for _, c := range phaseCols {
				r := c.run(ctx, m, p)
				mu.Lock()
				cells = append(cells, mxCell{row: p, col: c.name, mxResult: r})
				mu.Unlock()
			}
		})
		phases = append(phases, fmt.Sprintf("%s %.1fs", ph, time.Since(phaseStart).Seconds()))
	}
	t.Logf("authorization matrix: setup %.1fs, %s", setup.Seconds(), strings.Join(phases, ", "))
	m.report(t, cells, time.Since(start))
}

// mxPhase orders the columns: shared fixtures first (cells of all rows in
// parallel), then each row's own disposable resources (in parallel), then
// the columns that change shared state (one row at a time).
type mxPhase int

const (
	phaseShared mxPhase = iota
	phaseOwn
	phaseSerial
)

func (p mxPhase) String() string {
	return [...]string{"shared fixtures", "own resources", "one row at a time"}[p]
}

// mxColumn is one column of the matrix: a route (or a variant of one) or a
// data path.
type mxColumn struct {
	name  string
	route string // route-table key ("METHOD pattern") it covers; "" for data paths
	phase mxPhase
	run   func(ctx context.Context, m *matrix, p *mxPrincipal) mxResult
	// request builds the column's request (route columns only); the
	// API fuzz target seeds its corpus with them.
	request func(m *matrix, p *mxPrincipal) mxRequest
}

// mxResult is the outcome of one cell.
type mxResult struct {
	want, got bool
	status    int
	problem   string // why the cell is a mismatch ("" when it is not)
}

type mxCell struct {
	row *mxPrincipal
	col string
	mxResult
}

// --- what a request needs ---

type accessKind int

const (
	needRoles       accessKind = iota // every need holds
	needNothing                       // anonymous route: everyone, even without a token
	needToken                         // any authenticated principal
	needTenantAdmin                   // tenant administrators only (no row is one)
	needImpossible                    // refused to everyone (e.g. writing a snapshot)
	needWithin                        // the one need, or any role assignment at or below its scope
)

// mxNeed is an action at a scope.
type mxNeed struct{ action, scope string }

type mxAccess struct {
	kind  accessKind
	needs []mxNeed
}

func needs(ns ...mxNeed) mxAccess { return mxAccess{kind: needRoles, needs: ns} }

func need(action, scope string) mxNeed { return mxNeed{action, scope} }

// within is what seeing a subscription takes: n (its read), or any role
// assignment at or below n's scope.
func within(n mxNeed) mxAccess { return mxAccess{kind: needWithin, needs: []mxNeed{n}} }

var (
	anonymous   = mxAccess{kind: needNothing}
	anyone      = mxAccess{kind: needToken}
	tenantAdmin = mxAccess{kind: needTenantAdmin}
	nobody      = mxAccess{kind: needImpossible}
)

// expect is the oracle: whether p may do what a needs, from its roles'
// actions minus notActions and the scopes it holds them at.
func (p *mxPrincipal) expect(a mxAccess) bool {
	switch a.kind {
	case needNothing:
		return true
	case needToken:
		return p.token != ""
	case needTenantAdmin, needImpossible:
		return false
	}
	if p.token == "" {
		return false
	}
	if a.kind == needWithin && slices.ContainsFunc(p.grants, func(g mxGrant) bool { return rbac.ScopeContains(a.needs[0].scope, g.scope) }) {
		return true
	}
	for _, n := range a.needs {
		if !p.holds(n) {
			return false
		}
	}
	return true
}

func (p *mxPrincipal) holds(n mxNeed) bool {
	return slices.ContainsFunc(p.grants, func(g mxGrant) bool {
		return rbac.ScopeContains(g.scope, n.scope) && g.role.Grants(n.action)
	})
}

// checkOracle pins a few decisions the oracle must make, so that a broken
// rbac.RoleDefinition.Grants cannot make the matrix agree with a broken
// server.
func checkOracle(t *testing.T) {
	for _, c := range []struct {
		role, action string
		want         bool
	}{
		{rbac.RoleOwner, rbac.ActionRoleAssignmentsWrite, true},
		{rbac.RoleContributor, rbac.ActionRoleAssignmentsWrite, false}, // notActions
		{rbac.RoleContributor, "Microsoft.Compute/disks/write", true},
		{rbac.RoleReader, "Microsoft.Compute/disks/write", false},
		{rbac.RoleReader, "Microsoft.Compute/disks/beginGetAccess/action", false},
		{rbac.RoleDiskBackupReader, "Microsoft.Compute/disks/beginGetAccess/action", true},
		{rbac.RoleDiskBackupReader, "Microsoft.Compute/disks/write", false},
		{rbac.RoleDiskSnapshotContributor, "Microsoft.Compute/disks/read", false},
		{rbac.RoleUserAccessAdministrator, rbac.ActionRoleAssignmentsWrite, true},
		{rbac.RoleBackupReader, "Microsoft.DataProtection/backupVaults/backupInstances/restore/action", false},
	} {
		d, ok := rbac.BuiltInRoleByID(c.role)
		if !ok || d.Grants(c.action) != c.want {
			t.Errorf("oracle: role %s grants %s = %v, want %v", d.RoleName, c.action, !c.want, c.want)
		}
	}
}

// checkRouteCoverage fails when a route of the table has no column, or a
// column names a route the table does not have.
func checkRouteCoverage(t *testing.T, m *matrix, cols []mxColumn) {
	covered := map[string]bool{}
	for _, c := range cols {
		if c.route != "" {
			covered[c.route] = true
		}
	}
	table := map[string]bool{}
	for _, r := range m.env.Server.API.Routes() {
		key := r.Method + " " + r.Pattern
		table[key] = true
		if !covered[key] {
			t.Errorf("route %s has no column in the authorization matrix", key)
		}
	}
	for key := range covered {
		if !table[key] {
			t.Errorf("matrix column for %s, which is not in the route table", key)
		}
	}
}

// checkRouteActions fails when a route checks an action before its
// handler that none of its columns needs: the column's needs would be out
// of date.
func checkRouteActions(t *testing.T, m *matrix, cols []mxColumn) {
	for _, r := range m.env.Server.API.Routes() {
		if r.Action != "" && !m.columnNeeds(cols, r.Method+" "+r.Pattern, r.Action) {
			t.Errorf("route %s %s checks %s, which its matrix column does not need", r.Method, r.Pattern, r.Action)
		}
	}
}

// columnNeeds reports whether a column of route needs action.
func (m *matrix) columnNeeds(cols []mxColumn, route, action string) bool {
	for _, c := range cols {
		if c.route != route {
			continue
		}
		for _, n := range m.declared[c.name] {
			if strings.EqualFold(n.action, action) {
				return true
			}
		}
	}
	return false
}

// --- running requests ---

// mxRequest is an ARM request of a column.
type mxRequest struct {
	method, path, version string
	query                 url.Values
	body                  any        // JSON body
	form                  url.Values // form body instead (OAuth2)
	token                 *string    // the token to send instead of the row's
	access                mxAccess
	// ok lists the statuses of success; nil means any 2xx.
	ok []int
	// observe reads from the answer whether the request was allowed
	// (lists that leave out what the caller may not see); nil: the
	// status (neither 401 nor 403).
	observe func(status int, body []byte) bool
	// prepare runs (as the admin) before the request.
	prepare func(ctx context.Context) error
	// effect checks, after the request, that what it did (allowed) or
	// did not do (refused) shows.
	effect effectFunc
}

// call runs r as p and judges the cell.
func (m *matrix) call(ctx context.Context, col string, p *mxPrincipal, r mxRequest) mxResult {
	m.declare(col, r.access)
	res := mxResult{want: p.expect(r.access)}
	tok := p.token
	if r.token != nil {
		tok = *r.token
	}
	if r.prepare != nil {
		if err := r.prepare(ctx); err != nil {
			res.problem = "prepare: " + err.Error()
			return res
		}
	}
	status, hdr, body, err := m.do(ctx, tok, r)
	if err != nil {
		res.problem = err.Error()
		return res
	}
	res.status = status
	switch {
	case r.access.kind == needImpossible:
		// Refused by validation as well as by authorization.
		res.got = status/100 == 2
	case r.observe != nil && status/100 == 2:
		res.got = r.observe(status, body)
	default:
		res.got = status != http.StatusUnauthorized && status != http.StatusForbidden
	}
	switch {
	case res.want && !res.got:
		res.problem = fmt.Sprintf("refused (%d %s), want allowed", status, errorCode(hdr, body))
	case !res.want && res.got:
		res.problem = fmt.Sprintf("allowed (%d), want refused", status)
	case res.got && !okStatus(r.ok, status):
		res.problem = fmt.Sprintf("allowed but failed: %d %s %s", status, errorCode(hdr, body), bytes.TrimSpace(body))
	case !res.got && status/100 != 2 && r.access.kind != needImpossible:
		wantStatus, wantCode := http.StatusForbidden, "AuthorizationFailed"
		if tok == "" {
			wantStatus, wantCode = http.StatusUnauthorized, "AuthenticationFailed"
		}
		if code := errorCode(hdr, body); status != wantStatus || (code != wantCode && code != "LinkedAuthorizationFailed") {
			res.problem = fmt.Sprintf("refused with %d %s, want %d %s", status, code, wantStatus, wantCode)
		}
	}
	// The effect runs on mismatches too: a grant wrongly given is kept
	// for the data-path columns, which then show what it allows.
	if r.effect != nil {
		if err := r.effect(ctx, res.got, hdr, body); err != nil {
			res.problem = strings.TrimPrefix(res.problem+"; "+err.Error(), "; ")
		}
	}
	return res
}

// sleepCtx waits ms milliseconds or until ctx ends.
func sleepCtx(ctx context.Context, ms int) error {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func okStatus(ok []int, status int) bool {
	if ok == nil {
		return status/100 == 2
	}
	return slices.Contains(ok, status)
}

func errorCode(h http.Header, body []byte) string {
	if c := h.Get("x-ms-error-code"); c != "" {
		return c
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code
	}
	return ""
}

// do sends one request with token (none when empty).
func (m *matrix) do(ctx context.Context, token string, r mxRequest) (int, http.Header, []byte, error) {
	u := r.path
	if !strings.HasPrefix(u, "http") {
		u = m.env.Endpoint + u
	}
	pu, err := url.Parse(u)
	if err != nil {
		return 0, nil, nil, err
	}
	q := pu.Query()
	for k, vs := range r.query {
		q[k] = vs
	}
	if r.version != "" {
		q.Set("api-version", r.version)
	}
	pu.RawQuery = q.Encode()
	var rd io.Reader
	ctype := ""
	switch {
	case r.form != nil:
		rd, ctype = strings.NewReader(r.form.Encode()), "application/x-www-form-urlencoded"
	case r.body != nil:
		b, err := json.Marshal(r.body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, pu.String(), rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", r.method, pu.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: read answer: %w", r.method, pu.Path, err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// declare records the needs of a column (the same for every row) for the
// route-table consistency check.
func (m *matrix) declare(col string, a mxAccess) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.declared[col]; !ok {
		m.declared[col] = a.needs
	}
}

// forEachParallel calls fn for every item, at most n at a time.
func forEachParallel[T any](items []T, n int, fn func(T)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(it)
		}()
	}
	wg.Wait()
}

// --- the report ---

// report logs the summary and fails the test with one line per column and
// problem, naming the rows that show it.
func (m *matrix) report(t *testing.T, cells []mxCell, total time.Duration) {
	sort.SliceStable(cells, func(i, j int) bool { return cells[i].row.index < cells[j].row.index })
	var allowed, denied, bad int
	cols := map[string]bool{}
	type mismatch struct{ col, problem string }
	var order []mismatch
	rows := map[mismatch][]string{}
	for _, c := range cells {
		cols[c.col] = true
		if c.got {
			allowed++
		} else {
			denied++
		}
		if c.problem != "" {
			bad++
			k := mismatch{c.col, c.problem}
			if rows[k] == nil {
				order = append(order, k)
			}
			rows[k] = append(rows[k], c.row.label)
		}
	}
	t.Logf("authorization matrix: %d rows × %d columns = %d cells (%d allowed, %d refused), %d mismatches, %.1fs",
		len(m.rows), len(cols), len(cells), allowed, denied, bad, total.Seconds())
	for _, k := range order {
		t.Errorf("%s: %s — %s", k.col, k.problem, strings.Join(rows[k], "; "))
	}
	if *matrixOut != "" {
		var b strings.Builder
		b.WriteString("row\tcolumn\twant\tgot\tstatus\tproblem\n")
		for _, c := range cells {
			fmt.Fprintf(&b, "%s\t%s\t%v\t%v\t%d\t%s\n", c.row.label, c.col, c.want, c.got, c.status, c.problem)
		}
		if err := os.WriteFile(*matrixOut, []byte(b.String()), 0o600); err != nil {
			t.Error(err)
		}
	}
}
