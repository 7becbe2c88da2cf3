package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coffer/internal/client"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/rbac"
)

// Actions the columns need that no Coffer package names as a constant.
const (
	aSubRead         = "Microsoft.Resources/subscriptions/read"
	aGroupRead       = "Microsoft.Resources/subscriptions/resourceGroups/read"
	aGroupWrite      = "Microsoft.Resources/subscriptions/resourceGroups/write"
	aGroupDelete     = "Microsoft.Resources/subscriptions/resourceGroups/delete"
	aDiskRead        = "Microsoft.Compute/disks/read"
	aDiskWrite       = "Microsoft.Compute/disks/write"
	aDiskDelete      = "Microsoft.Compute/disks/delete"
	aDiskGrant       = "Microsoft.Compute/disks/beginGetAccess/action"
	aDiskRevoke      = "Microsoft.Compute/disks/endGetAccess/action"
	aSnapRead        = "Microsoft.Compute/snapshots/read"
	aSnapWrite       = "Microsoft.Compute/snapshots/write"
	aSnapDelete      = "Microsoft.Compute/snapshots/delete"
	aSnapGrant       = "Microsoft.Compute/snapshots/beginGetAccess/action"
	aSnapRevoke      = "Microsoft.Compute/snapshots/endGetAccess/action"
	aVault           = "Microsoft.DataProtection/backupVaults/"
	aCheckName       = "Microsoft.DataProtection/locations/checkNameAvailability/action"
	aOperationStatus = aVault + "operationStatus/read"
)

// Route patterns as the route table spells them.
const (
	pGroup  = "/subscriptions/{sub}/resourcegroups/{rg}"
	pDisk   = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{name}"
	pSnap   = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{name}"
	pAuthz  = "{scope...}/providers/Microsoft.Authorization/"
	pVault  = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}"
	pBI     = pVault + "/backupInstances/{bi}"
	pIdent  = "/providers/Coffer.Identity/"
	pAdmin  = "/providers/Coffer.Admin/"
	vID     = client.IdentityVersion
	vRes    = client.ResourcesVersion
	vAuthz  = client.AuthorizationVersion
	vComp   = client.ComputeVersion
	vDP     = client.DataProtectionVersion
	vAlias  = client.AliasVersion
	tagBody = `{"mx":"1"}`
)

// route is a column for one route of the table (variant names a second
// way of calling it); build makes the request a row sends.
func route(ph mxPhase, key, variant string, build func(m *matrix, p *mxPrincipal) mxRequest) mxColumn {
	name := key
	if variant != "" {
		name += " [" + variant + "]"
	}
	return mxColumn{name: name, route: key, phase: ph, request: build, run: func(ctx context.Context, m *matrix, p *mxPrincipal) mxResult {
		return m.call(ctx, name, p, build(m, p))
	}}
}

// get is a GET column on a fixture path.
func get(key, variant string, version string, path func(m *matrix, p *mxPrincipal) string, access func(m *matrix) mxAccess) mxColumn {
	return route(phaseShared, key, variant, func(m *matrix, p *mxPrincipal) mxRequest {
		return mxRequest{method: http.MethodGet, path: path(m, p), version: version, access: access(m), ok: []int{http.StatusOK}}
	})
}

func fixed(path string) func(*matrix, *mxPrincipal) string {
	return func(*matrix, *mxPrincipal) string { return path }
}

func tags() map[string]string { return map[string]string{"mx": "1"} }

// matrixColumns lists every column: all routes of the table, then the data
// paths (which use the grants the grant columns obtained).
func matrixColumns() []mxColumn {
	var cols []mxColumn
	cols = append(cols, anonymousColumns()...)
	cols = append(cols, identityColumns()...)
	cols = append(cols, resourceColumns()...)
	cols = append(cols, authorizationColumns()...)
	cols = append(cols, computeColumns()...)
	cols = append(cols, dataProtectionColumns()...)
	cols = append(cols, adminColumns()...)
	cols = append(cols, monitorColumns()...)
	cols = append(cols, dataColumns()...)
	return cols
}

func anonymousColumns() []mxColumn {
	tenant := func(suffix string) func(m *matrix, p *mxPrincipal) string {
		return func(m *matrix, p *mxPrincipal) string { return "/" + m.tenant + suffix }
	}
	anon := func(*matrix) mxAccess { return anonymous }
	token := func(key string) mxColumn {
		return route(phaseShared, key, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: strings.Replace(key[len("POST "):], "{tenant}", m.tenant, 1), access: anonymous,
				form: url.Values{"grant_type": {"client_credentials"}, "client_id": {p.clientID}, "client_secret": {p.secret},
					"scope": {m.env.Endpoint + "/.default"}}, ok: []int{http.StatusOK}}
		})
	}
	return []mxColumn{
		get("GET /healthz", "", "", fixed("/healthz"), anon),
		get("GET /metrics", "", "", fixed("/metrics"), anon),
		get("GET /{tenant}/v2.0/.well-known/openid-configuration", "", "", tenant("/v2.0/.well-known/openid-configuration"), anon),
		get("GET /{tenant}/.well-known/openid-configuration", "", "", tenant("/.well-known/openid-configuration"), anon),
		get("GET /adfs/{tenant}/.well-known/openid-configuration", "", "", fixed("/adfs/adfs/.well-known/openid-configuration"), anon),
		get("GET /{tenant}/discovery/v2.0/keys", "", "", tenant("/discovery/v2.0/keys"), anon),
		get("GET /metadata/endpoints", "", "2015-01-01", fixed("/metadata/endpoints"), anon),
		token("POST /{tenant}/oauth2/v2.0/token"),
		token("POST /{tenant}/oauth2/token"),
	}
}

func identityColumns() []mxColumn {
	return []mxColumn{
		route(phaseShared, "GET "+pIdent+"self", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodGet, path: pIdent + "self", version: vID, access: anyone,
				effect: func(_ context.Context, allowed bool, _ http.Header, body []byte) error {
					if !allowed {
						return nil
					}
					var me client.Principal
					if err := decodeInto(body, &me); err != nil {
						return err
					}
					if me.PrincipalID != p.id {
						return fmt.Errorf("self is %s, want %s", me.PrincipalID, p.id)
					}
					return nil
				}}
		}),
		get("GET "+pIdent+"principals", "", vID, fixed(pIdent+"principals"), func(*matrix) mxAccess { return tenantAdmin }),
		get("GET "+pIdent+"principals/{id}", "own", vID,
			func(m *matrix, p *mxPrincipal) string { return pIdent + "principals/" + p.id }, func(*matrix) mxAccess { return anyone }),
		get("GET "+pIdent+"principals/{id}", "another principal", vID,
			func(m *matrix, p *mxPrincipal) string { return pIdent + "principals/" + m.sharedSink },
			func(*matrix) mxAccess { return tenantAdmin }),
		route(phaseShared, "POST "+pIdent+"servicePrincipals", "", func(m *matrix, p *mxPrincipal) mxRequest {
			name := own("mx-created", p)
			return mxRequest{method: http.MethodPost, path: pIdent + "servicePrincipals", version: vID, access: tenantAdmin,
				body: map[string]string{"displayName": name},
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					ps, err := m.admin.ListPrincipals(ctx)
					if err != nil {
						return err
					}
					for _, q := range ps {
						if q.DisplayName == name && !allowed {
							return fmt.Errorf("refused, but principal %s was created", name)
						}
					}
					return nil
				}}
		}),
		route(phaseShared, "DELETE "+pIdent+"principals/{id}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := pIdent + "principals/" + p.sink
			return mxRequest{method: http.MethodDelete, path: path, version: vID, access: tenantAdmin,
				effect: m.removed(path, vID)}
		}),
		route(phaseShared, "POST "+pIdent+"tokens", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: pIdent + "tokens", version: vID, access: anyone, ok: []int{http.StatusCreated},
				body: map[string]any{"expiresInDays": 1, "description": "matrix"},
				effect: func(_ context.Context, allowed bool, _ http.Header, body []byte) error {
					if !allowed {
						return nil
					}
					var t client.APIToken
					if err := decodeInto(body, &t); err != nil {
						return err
					}
					p.apiToken, p.apiTokenID = t.Token, t.ID
					return nil
				}}
		}),
		// Token records: one's own, or anyone's for the tenant admin; an
		// answer never holds a token.
		get("GET "+pIdent+"tokens", "own", vID, fixed(pIdent+"tokens"), func(*matrix) mxAccess { return anyone }),
		get("GET "+pIdent+"tokens", "everyone's", vID, fixed(pIdent+"tokens?all=true"), func(*matrix) mxAccess { return tenantAdmin }),
		get("GET "+pIdent+"principals/{id}/tokens", "own", vID,
			func(m *matrix, p *mxPrincipal) string { return pIdent + "principals/" + p.id + "/tokens" }, func(*matrix) mxAccess { return anyone }),
		get("GET "+pIdent+"principals/{id}/tokens", "another principal's", vID,
			func(m *matrix, p *mxPrincipal) string {
				return pIdent + "principals/" + m.env.Admin.PrincipalID + "/tokens"
			},
			func(*matrix) mxAccess { return tenantAdmin }),
		route(phaseOwn, "GET "+pIdent+"tokens/{id}", "own", func(m *matrix, p *mxPrincipal) mxRequest {
			id := p.apiTokenID
			access := anyone
			if id == "" { // the row could not make one: ask for a token of nobody's
				id, access = identity.NewGUID(), nobody
			}
			return mxRequest{method: http.MethodGet, path: pIdent + "tokens/" + id, version: vID, access: access, ok: []int{http.StatusOK},
				effect: noTokenIn(&p.apiToken)}
		}),
		route(phaseShared, "GET "+pIdent+"tokens/{id}", "the admin's", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodGet, path: pIdent + "tokens/" + m.adminTokenID, version: vID, access: tenantAdmin, ok: []int{http.StatusOK},
				effect: noTokenIn(&m.adminAPI)}
		}),
		// A principal revokes its own API token, authenticating with it.
		route(phaseOwn, "DELETE "+pIdent+"tokens/{id}", "own, with it", func(m *matrix, p *mxPrincipal) mxRequest {
			id := p.apiTokenID
			if id == "" {
				id = identity.NewGUID()
			}
			return mxRequest{method: http.MethodDelete, path: pIdent + "tokens/" + id, version: vID, access: anyone, token: &p.apiToken,
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					if !allowed {
						return nil
					}
					if works, err := m.tokenWorks(ctx, p.apiToken); err != nil || works {
						return fmt.Errorf("revoked API token still authenticates (%v)", err)
					}
					return nil
				}}
		}),
		route(phaseOwn, "DELETE "+pIdent+"tokens/{id}", "the admin's", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodDelete, path: pIdent + "tokens/" + m.adminTokenID, version: vID, access: tenantAdmin,
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					if works, err := m.tokenWorks(ctx, m.adminAPI); err != nil || works == allowed {
						return fmt.Errorf("the admin's API token authenticates = %v after the request (%v)", works, err)
					}
					return nil
				}}
		}),
	}
}

// noTokenIn checks that an answer does not hold the token *tok.
func noTokenIn(tok *string) func(context.Context, bool, http.Header, []byte) error {
	return func(_ context.Context, _ bool, _ http.Header, body []byte) error {
		if *tok != "" && bytes.Contains(body, []byte(*tok)) {
			return fmt.Errorf("the answer holds the API token itself")
		}
		return nil
	}
}

// tokenWorks reports whether a bearer token authenticates.
func (m *matrix) tokenWorks(ctx context.Context, tok string) (bool, error) {
	status, _, _, err := m.do(ctx, tok, mxRequest{method: http.MethodGet, path: pIdent + "self", version: vID})
	return status == http.StatusOK, err
}

func resourceColumns() []mxColumn {
	sub := func(m *matrix) string { return "/subscriptions/" + m.sub }
	grp := func(m *matrix, _ *mxPrincipal) string { return m.groupID(m.rg) }
	return []mxColumn{
		route(phaseShared, "GET /subscriptions", "", func(m *matrix, p *mxPrincipal) mxRequest {
			// Listed as Azure lists it: read on it, or any role inside.
			return mxRequest{method: http.MethodGet, path: "/subscriptions", version: vRes,
				access: within(need(aSubRead, sub(m))),
				observe: func(_ int, body []byte) bool {
					var page struct{ Value []client.Subscription }
					if decodeInto(body, &page) != nil {
						return false
					}
					for _, s := range page.Value {
						if s.SubscriptionID == m.sub {
							return true
						}
					}
					return false
				}}
		}),
		get("GET /subscriptions/{sub}", "", vRes, func(m *matrix, _ *mxPrincipal) string { return sub(m) },
			func(m *matrix) mxAccess { return within(need(aSubRead, sub(m))) }),
		get("GET /subscriptions/{sub}/locations", "", vRes, func(m *matrix, _ *mxPrincipal) string { return sub(m) + "/locations" },
			func(m *matrix) mxAccess { return within(need(aSubRead, sub(m))) }),
		route(phaseShared, "PUT /providers/Microsoft.Subscription/aliases/{alias}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := "/providers/Microsoft.Subscription/aliases/" + own("mx-alias", p)
			return mxRequest{method: http.MethodPut, path: path, version: vAlias, access: tenantAdmin,
				body:   map[string]any{"properties": map[string]string{"displayName": "x", "workload": "Production"}},
				effect: m.created(path, vAlias)}
		}),
		get("GET /providers/Microsoft.Subscription/aliases/{alias}", "", vAlias, fixed("/providers/Microsoft.Subscription/aliases/mx-other"),
			func(m *matrix) mxAccess { return within(need(aSubRead, "/subscriptions/"+m.sub2)) }),
		get("GET /subscriptions/{sub}/resourcegroups", "", vRes, func(m *matrix, _ *mxPrincipal) string { return sub(m) + "/resourcegroups" },
			func(m *matrix) mxAccess { return needs(need(aGroupRead, sub(m))) }),
		get("GET "+pGroup, "", vRes, grp, func(m *matrix) mxAccess { return needs(need(aGroupRead, m.groupID(m.rg))) }),
		route(phaseShared, "HEAD "+pGroup, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodHead, path: m.groupID(m.rg), version: vRes, ok: []int{http.StatusNoContent},
				access: needs(need(aGroupRead, m.groupID(m.rg)))}
		}),
		route(phaseShared, "PUT "+pGroup, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: m.groupID(m.rg), version: vRes, ok: []int{http.StatusOK},
				body: map[string]any{"location": "local", "tags": tags()}, access: needs(need(aGroupWrite, m.groupID(m.rg)))}
		}),
		route(phaseShared, "PATCH "+pGroup, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPatch, path: m.groupID(m.rg), version: vRes, ok: []int{http.StatusOK},
				body: map[string]any{"tags": tags()}, access: needs(need(aGroupWrite, m.groupID(m.rg)))}
		}),
		route(phaseOwn, "DELETE "+pGroup, "", func(m *matrix, p *mxPrincipal) mxRequest {
			g := m.groupID(own("g", p))
			return mxRequest{method: http.MethodDelete, path: g, version: vRes, ok: []int{http.StatusAccepted},
				access: needs(need(aGroupDelete, g)), effect: m.deleted(g, vRes)}
		}),
	}
}

// effectFunc checks what a request did; see mxRequest.effect.
type effectFunc = func(ctx context.Context, allowed bool, h http.Header, body []byte) error

// created is the effect of a create: path exists exactly when allowed.
func (m *matrix) created(path, version string) effectFunc {
	return func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
		return m.wantExists(ctx, path, version, allowed)
	}
}

// removed is the effect of a synchronous delete: path is gone exactly
// when allowed.
func (m *matrix) removed(path, version string) effectFunc {
	return func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
		return m.wantExists(ctx, path, version, !allowed)
	}
}

// deleted is the effect of a delete: gone when allowed (waiting for an
// asynchronous delete), still there when refused.
func (m *matrix) deleted(path, version string) effectFunc {
	return func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
		if !allowed {
			return m.wantExists(ctx, path, version, true)
		}
		for i := 0; ; i++ {
			ok, err := m.exists(ctx, path, version)
			if err != nil || !ok {
				return err
			}
			if i == 500 {
				return fmt.Errorf("%s still exists after an allowed delete", path)
			}
			if err := sleepCtx(ctx, 20); err != nil {
				return err
			}
		}
	}
}

func authorizationColumns() []mxColumn {
	// The {scope...} routes are called at disk d, which rows at every
	// level hold their role at or above.
	scope := func(m *matrix) string { return m.diskID(mxDisk) }
	at := func(rest string) func(m *matrix, _ *mxPrincipal) string {
		return func(m *matrix, _ *mxPrincipal) string { return scope(m) + "/providers/Microsoft.Authorization/" + rest }
	}
	read := func(action string) func(m *matrix) mxAccess {
		return func(m *matrix) mxAccess { return needs(need(action, scope(m))) }
	}
	return []mxColumn{
		get("GET "+pAuthz+"roleDefinitions", "", vAuthz, at("roleDefinitions"), read(rbac.ActionRoleDefinitionsRead)),
		get("GET "+pAuthz+"roleDefinitions/{id}", "", vAuthz, at("roleDefinitions/"+rbac.RoleReader), read(rbac.ActionRoleDefinitionsRead)),
		get("GET "+pAuthz+"roleAssignments", "", vAuthz, at("roleAssignments"), read(rbac.ActionRoleAssignmentsRead)),
		get("GET "+pAuthz+"roleAssignments/{name}", "", vAuthz, func(m *matrix, p *mxPrincipal) string {
			return at("roleAssignments/"+m.fixtureAssignment)(m, p)
		}, read(rbac.ActionRoleAssignmentsRead)),
		// Assigning Disk Backup Reader to the row's sink at d.
		route(phaseOwn, "PUT "+pAuthz+"roleAssignments/{name}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := at("roleAssignments/"+identity.NewGUID())(m, p)
			return mxRequest{method: http.MethodPut, path: path, version: vAuthz, ok: []int{http.StatusCreated},
				access: needs(need(rbac.ActionRoleAssignmentsWrite, scope(m))),
				body: map[string]any{"properties": map[string]string{"roleDefinitionId": rbac.RoleDiskBackupReader,
					"principalId": p.sink, "principalType": "ServicePrincipal"}},
				effect: m.created(path, vAuthz)}
		}),
		route(phaseOwn, "DELETE "+pAuthz+"roleAssignments/{name}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := at("roleAssignments/"+m.rowAssignment(p))(m, p)
			return mxRequest{method: http.MethodDelete, path: path, version: vAuthz, ok: []int{http.StatusOK},
				access: needs(need(rbac.ActionRoleAssignmentsDelete, scope(m))),
				effect: m.removed(path, vAuthz)}
		}),
		// Operation polls. The result of a grant holds its SAS URL, so
		// reading another principal's grant needs what making that grant
		// needs: for a Write grant, disks/write as well.
		get("GET {scope...}/operationStatus/{op}", "admin's Read grant", vComp,
			func(m *matrix, _ *mxPrincipal) string { return m.computeOp("operationStatus", m.opRead) },
			func(m *matrix) mxAccess { return needs(need(aDiskGrant, m.diskID(mxDisk))) }),
		route(phaseShared, "GET {scope...}/operationStatus/{op}", "admin's Write grant, monitor=true", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodGet, path: m.computeOp("operationStatus", m.opWrite), version: vComp,
				query: url.Values{"monitor": {"true"}}, ok: []int{http.StatusOK},
				access: needs(need(aDiskGrant, m.diskID(mxDisk)), need(aDiskWrite, m.diskID(mxDisk)))}
		}),
		get("GET {scope...}/operationResults/{op}", "admin's Read grant", vComp,
			func(m *matrix, _ *mxPrincipal) string { return m.computeOp("operationResults", m.opRead) },
			func(m *matrix) mxAccess { return needs(need(aDiskGrant, m.diskID(mxDisk))) }),
		get("GET {scope...}/operationResults/{op}", "admin's Write grant", vComp,
			func(m *matrix, _ *mxPrincipal) string { return m.computeOp("operationResults", m.opWrite) },
			func(m *matrix) mxAccess {
				return needs(need(aDiskGrant, m.diskID(mxDisk)), need(aDiskWrite, m.diskID(mxDisk)))
			}),
		get("GET {scope...}/operations/{op}", "admin's vault PUT", vDP,
			func(m *matrix, _ *mxPrincipal) string {
				return "/subscriptions/" + m.sub + "/providers/Microsoft.DataProtection/locations/local/operations/" + m.opVault
			},
			func(m *matrix) mxAccess { return needs(need(aOperationStatus, m.vaultID(mxVault))) }),
	}
}

func (m *matrix) computeOp(kind, op string) string {
	return "/subscriptions/" + m.sub + "/providers/Microsoft.Compute/locations/local/" + kind + "/" + op
}

// Creating a disk or snapshot from another one needs, besides writing the
// new resource, Azure's linked access check on the source: its
// beginGetAccess action (which is why Disk Snapshot Contributor holds
// disks/beginGetAccess), refused with 403 LinkedAuthorizationFailed.
func computeColumns() []mxColumn {
	d := func(m *matrix) string { return m.diskID(mxDisk) }
	s := func(m *matrix) string { return m.snapID(mxSnap) }
	rg := func(m *matrix) string { return m.groupID(m.rg) }
	sub := func(m *matrix) string { return "/subscriptions/" + m.sub }
	diskBody := map[string]any{"location": "local", "tags": tags(),
		"properties": map[string]any{"creationData": map[string]any{"createOption": "Empty"}, "diskSizeGB": 1}}
	snapBody := func(m *matrix, src string, incremental bool) map[string]any {
		return map[string]any{"location": "local", "tags": tags(),
			"properties": map[string]any{"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": src}, "incremental": incremental}}
	}
	copyBody := func(m *matrix) map[string]any {
		return map[string]any{"location": "local",
			"properties": map[string]any{"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": s(m)}}}
	}
	otherGroup := func(m *matrix) string { return "/subscriptions/" + m.sub2 + "/resourceGroups/" + m.otherRG }
	cols := []mxColumn{
		route(phaseShared, "PUT "+pDisk, "update d", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: d(m), version: vComp, body: diskBody, ok: []int{http.StatusOK},
				access: needs(need(aDiskWrite, d(m)))}
		}),
		route(phaseOwn, "PUT "+pDisk, "new, Copy of snapshot s", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.diskID(own("c", p))
			return mxRequest{method: http.MethodPut, path: path, version: vComp, body: copyBody(m), ok: []int{http.StatusOK, http.StatusAccepted},
				access: needs(need(aDiskWrite, path), need(aSnapGrant, s(m))),
				effect: m.created(path, vComp)}
		}),
		route(phaseShared, "PUT "+pDisk, "new in the row's own group, Copy of disk d", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.ownGroupDisk(p)
			body := map[string]any{"location": "local",
				"properties": map[string]any{"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": d(m)}}}
			return mxRequest{method: http.MethodPut, path: path, version: vComp, body: body, ok: []int{http.StatusOK, http.StatusAccepted},
				access: needs(need(aDiskWrite, path), need(aDiskGrant, d(m))),
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					if allowed {
						return m.waitProvisioned(ctx, path)
					}
					return m.wantExists(ctx, path, vComp, false)
				}}
		}),
		route(phaseOwn, "PUT "+pDisk, "new in another subscription, Copy of snapshot s", func(m *matrix, p *mxPrincipal) mxRequest {
			path := otherGroup(m) + "/providers/Microsoft.Compute/disks/" + own("x", p)
			return mxRequest{method: http.MethodPut, path: path, version: vComp, body: copyBody(m), ok: []int{http.StatusOK, http.StatusAccepted},
				access: needs(need(aDiskWrite, path), need(aSnapGrant, s(m))),
				effect: m.created(path, vComp)}
		}),
		get("GET "+pDisk, "", vComp, func(m *matrix, _ *mxPrincipal) string { return d(m) },
			func(m *matrix) mxAccess { return needs(need(aDiskRead, d(m))) }),
		route(phaseShared, "PATCH "+pDisk, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPatch, path: d(m), version: vComp, body: map[string]any{"tags": tags()},
				ok: []int{http.StatusOK}, access: needs(need(aDiskWrite, d(m)))}
		}),
		route(phaseOwn, "DELETE "+pDisk, "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.diskID(own("dd", p))
			return mxRequest{method: http.MethodDelete, path: path, version: vComp, ok: []int{http.StatusOK},
				access: needs(need(aDiskDelete, path)), effect: m.deleted(path, vComp)}
		}),
		grantColumn(pDisk, "Read", func(m *matrix) mxAccess { return needs(need(aDiskGrant, d(m))) },
			func(p *mxPrincipal) **client.AccessURI { return &p.readGrant }),
		grantColumn(pDisk, "Write", func(m *matrix) mxAccess { return needs(need(aDiskGrant, d(m)), need(aDiskWrite, d(m))) },
			func(p *mxPrincipal) **client.AccessURI { return &p.writeGrant }),
		route(phaseOwn, "POST "+pDisk+"/endGetAccess", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.diskID(own("de", p))
			return mxRequest{method: http.MethodPost, path: path + "/endGetAccess", version: vComp, ok: []int{http.StatusOK},
				access: needs(need(aDiskRevoke, path)), effect: m.revoked(p.endDiskSAS)}
		}),
		get("GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks", "", vComp,
			func(m *matrix, _ *mxPrincipal) string { return rg(m) + "/providers/Microsoft.Compute/disks" },
			func(m *matrix) mxAccess { return needs(need(aDiskRead, rg(m))) }),
		get("GET /subscriptions/{sub}/providers/Microsoft.Compute/disks", "", vComp,
			func(m *matrix, _ *mxPrincipal) string { return sub(m) + "/providers/Microsoft.Compute/disks" },
			func(m *matrix) mxAccess { return needs(need(aDiskRead, sub(m))) }),

		route(phaseShared, "PUT "+pSnap, "update s", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: s(m), version: vComp, body: snapBody(m, d(m), true), ok: []int{http.StatusOK},
				access: needs(need(aSnapWrite, s(m)), need(aDiskGrant, d(m)))}
		}),
		route(phaseOwn, "PUT "+pSnap, "new in another subscription, of disk d", func(m *matrix, p *mxPrincipal) mxRequest {
			path := otherGroup(m) + "/providers/Microsoft.Compute/snapshots/" + own("y", p)
			return mxRequest{method: http.MethodPut, path: path, version: vComp, body: snapBody(m, d(m), false), ok: []int{http.StatusOK, http.StatusAccepted},
				access: needs(need(aSnapWrite, path), need(aDiskGrant, d(m))),
				effect: m.created(path, vComp)}
		}),
		get("GET "+pSnap, "", vComp, func(m *matrix, _ *mxPrincipal) string { return s(m) },
			func(m *matrix) mxAccess { return needs(need(aSnapRead, s(m))) }),
		route(phaseShared, "PATCH "+pSnap, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPatch, path: s(m), version: vComp, body: map[string]any{"tags": tags()},
				ok: []int{http.StatusOK}, access: needs(need(aSnapWrite, s(m)))}
		}),
		route(phaseOwn, "DELETE "+pSnap, "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.snapID(own("sd", p))
			return mxRequest{method: http.MethodDelete, path: path, version: vComp, ok: []int{http.StatusOK},
				access: needs(need(aSnapDelete, path)), effect: m.deleted(path, vComp)}
		}),
		grantColumn(pSnap, "Read", func(m *matrix) mxAccess { return needs(need(aSnapGrant, s(m))) },
			func(p *mxPrincipal) **client.AccessURI { return &p.snapGrant }),
		grantColumn(pSnap, "Write", func(*matrix) mxAccess { return nobody }, nil),
		route(phaseOwn, "POST "+pSnap+"/endGetAccess", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.snapID(own("se", p))
			return mxRequest{method: http.MethodPost, path: path + "/endGetAccess", version: vComp, ok: []int{http.StatusOK},
				access: needs(need(aSnapRevoke, path)), effect: m.revoked(p.endSnapSAS)}
		}),
		get("GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots", "", vComp,
			func(m *matrix, _ *mxPrincipal) string { return rg(m) + "/providers/Microsoft.Compute/snapshots" },
			func(m *matrix) mxAccess { return needs(need(aSnapRead, rg(m))) }),
		get("GET /subscriptions/{sub}/providers/Microsoft.Compute/snapshots", "", vComp,
			func(m *matrix, _ *mxPrincipal) string { return sub(m) + "/providers/Microsoft.Compute/snapshots" },
			func(m *matrix) mxAccess { return needs(need(aSnapRead, sub(m))) }),
	}
	return cols
}

// grantColumn is beginGetAccess at access on d (pDisk) or s (pSnap); an
// allowed grant is kept in *slot for the data-path columns.
func grantColumn(pattern, access string, acc func(m *matrix) mxAccess, slot func(p *mxPrincipal) **client.AccessURI) mxColumn {
	return route(phaseShared, "POST "+pattern+"/beginGetAccess", access, func(m *matrix, p *mxPrincipal) mxRequest {
		path := m.diskID(mxDisk)
		if pattern == pSnap {
			path = m.snapID(mxSnap)
		}
		return mxRequest{method: http.MethodPost, path: path + "/beginGetAccess", version: vComp, ok: []int{http.StatusAccepted},
			access: acc(m), body: map[string]any{"access": access, "durationInSeconds": 3600},
			effect: func(ctx context.Context, allowed bool, h http.Header, _ []byte) error {
				if !allowed {
					return nil
				}
				var g client.AccessURI
				if _, err := m.as(p).Do(ctx, http.MethodGet, h.Get("Location"), "", nil, nil, &g); err != nil {
					return fmt.Errorf("grant result: %w", err)
				}
				if g.AccessSAS == "" || g.NBDURL == "" {
					return fmt.Errorf("grant result without URLs: %+v", g)
				}
				if slot != nil {
					*slot(p) = &g
				}
				return nil
			}}
	})
}

// revoked is the effect of endGetAccess on the admin's grant sas.
func (m *matrix) revoked(sas string) effectFunc {
	return func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
		works, err := m.grantWorks(ctx, sas)
		if err != nil {
			return err
		}
		if works == allowed {
			return fmt.Errorf("the admin's grant works = %v after the request", works)
		}
		return nil
	}
}

func dataProtectionColumns() []mxColumn {
	v := func(m *matrix) string { return m.vaultID(mxVault) }
	bi := func(m *matrix) string { return m.biID(mxBI) }
	rg := func(m *matrix) string { return m.groupID(m.rg) }
	on := func(action string, scope func(*matrix) string) func(*matrix) mxAccess {
		return func(m *matrix) mxAccess { return needs(need(aVault+action, scope(m))) }
	}
	post := func(ph mxPhase, suffix, action string, body func(m *matrix, p *mxPrincipal) any) mxColumn {
		return route(ph, "POST "+pBI+"/"+suffix, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: bi(m) + "/" + suffix, version: vDP, ok: []int{http.StatusAccepted},
				body: body(m, p), access: needs(need(aVault+action, bi(m)))}
		})
	}
	cols := []mxColumn{
		route(phaseShared, "PUT "+pVault, "update v", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: v(m), version: vDP, body: m.vaultBody, ok: []int{http.StatusOK},
				access: needs(need(aVault+"write", v(m)))}
		}),
		get("GET "+pVault, "", vDP, func(m *matrix, _ *mxPrincipal) string { return v(m) }, on("read", v)),
		route(phaseShared, "PATCH "+pVault, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPatch, path: v(m), version: vDP, body: map[string]any{"tags": tags()}, ok: []int{http.StatusOK},
				access: needs(need(aVault+"write", v(m)))}
		}),
		route(phaseOwn, "DELETE "+pVault, "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.vaultID(own("vd", p))
			return mxRequest{method: http.MethodDelete, path: path, version: vDP, ok: []int{http.StatusAccepted},
				access: needs(need(aVault+"delete", path)), effect: m.deleted(path, vDP)}
		}),
		get("GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults", "", vDP,
			func(m *matrix, _ *mxPrincipal) string {
				return rg(m) + "/providers/Microsoft.DataProtection/backupVaults"
			}, on("read", rg)),
		get("GET /subscriptions/{sub}/providers/Microsoft.DataProtection/backupVaults", "", vDP,
			func(m *matrix, _ *mxPrincipal) string {
				return "/subscriptions/" + m.sub + "/providers/Microsoft.DataProtection/backupVaults"
			}, on("read", func(m *matrix) string { return "/subscriptions/" + m.sub })),
		route(phaseShared, "POST /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/locations/{location}/checkNameAvailability", "",
			func(m *matrix, p *mxPrincipal) mxRequest {
				return mxRequest{method: http.MethodPost, path: rg(m) + "/providers/Microsoft.DataProtection/locations/local/checkNameAvailability",
					version: vDP, body: map[string]string{"name": mxVault, "type": "Microsoft.DataProtection/BackupVaults"}, ok: []int{http.StatusOK},
					access: needs(need(aCheckName, rg(m)))}
			}),
		route(phaseShared, "PUT "+pVault+"/backupPolicies/{policy}", "update p", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: m.policyID(mxPolicy), version: vDP, ok: []int{http.StatusOK},
				body: map[string]any{"properties": defaultPolicy()}, access: needs(need(aVault+"backupPolicies/write", m.policyID(mxPolicy)))}
		}),
		get("GET "+pVault+"/backupPolicies/{policy}", "", vDP, func(m *matrix, _ *mxPrincipal) string { return m.policyID(mxPolicy) },
			func(m *matrix) mxAccess { return needs(need(aVault+"backupPolicies/read", m.policyID(mxPolicy))) }),
		route(phaseOwn, "DELETE "+pVault+"/backupPolicies/{policy}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.policyID(own("pol", p))
			return mxRequest{method: http.MethodDelete, path: path, version: vDP, ok: []int{http.StatusOK},
				access: needs(need(aVault+"backupPolicies/delete", path)), effect: m.deleted(path, vDP)}
		}),
		get("GET "+pVault+"/backupPolicies", "", vDP, func(m *matrix, _ *mxPrincipal) string { return v(m) + "/backupPolicies" },
			on("backupPolicies/read", v)),
		route(phaseShared, "POST "+pVault+"/validateForBackup", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: v(m) + "/validateForBackup", version: vDP, ok: []int{http.StatusAccepted},
				body: map[string]any{"backupInstance": m.instanceBody(mxDisk)}, access: needs(need(aVault+"validateForBackup/action", v(m)))}
		}),
		route(phaseSerial, "PUT "+pBI, "update bi", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: bi(m), version: vDP, ok: []int{http.StatusOK},
				body: map[string]any{"properties": m.instanceBody(mxPD)}, access: needs(need(aVault+"backupInstances/write", bi(m))),
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					return m.waitProtection(ctx, dataprotection.StateConfigured)
				}}
		}),
		get("GET "+pBI, "", vDP, func(m *matrix, _ *mxPrincipal) string { return bi(m) }, on("backupInstances/read", bi)),
		route(phaseShared, "DELETE "+pBI, "a name not in use", func(m *matrix, p *mxPrincipal) mxRequest {
			path := m.biID(own("ghost", p))
			return mxRequest{method: http.MethodDelete, path: path, version: vDP, ok: []int{http.StatusNoContent},
				access: needs(need(aVault+"backupInstances/delete", path))}
		}),
		get("GET "+pVault+"/backupInstances", "", vDP, func(m *matrix, _ *mxPrincipal) string { return v(m) + "/backupInstances" },
			on("backupInstances/read", v)),
		// One backup at a time runs per instance, so rows take turns and
		// each waits for the backup it started; rows spread over several
		// instances, which allow ten on-demand backups a day each.
		route(phaseSerial, "POST "+pBI+"/backup", "", func(m *matrix, p *mxPrincipal) mxRequest {
			target := m.biID(backupInstanceOf(p))
			return mxRequest{method: http.MethodPost, path: target + "/backup", version: vDP, ok: []int{http.StatusAccepted},
				body: map[string]any{"backupRuleOptions": map[string]any{"ruleName": "BackupHourly",
					"triggerOption": map[string]any{"retentionTagOverride": "Default"}}},
				access: needs(need(aVault+"backupInstances/backup/action", target)),
				effect: func(ctx context.Context, allowed bool, h http.Header, _ []byte) error {
					if !allowed {
						return nil
					}
					var info struct{ JobID string }
					if _, err := m.admin.Do(ctx, http.MethodGet, h.Get("Location"), "", nil, nil, &info); err != nil {
						return err
					}
					return m.waitJob(ctx, info.JobID)
				}}
		}),
		post(phaseShared, "validateRestore", "backupInstances/validateRestore/action", func(m *matrix, p *mxPrincipal) any {
			return map[string]any{"restoreRequestObject": client.RestoreRequest(m.rpName, m.diskID(own("rv", p)), "local")}
		}),
		route(phaseOwn, "POST "+pBI+"/restore", "", func(m *matrix, p *mxPrincipal) mxRequest {
			target := m.diskID(own("r", p))
			return mxRequest{method: http.MethodPost, path: bi(m) + "/restore", version: vDP, ok: []int{http.StatusAccepted},
				body: client.RestoreRequest(m.rpName, target, "local"), access: needs(need(aVault+"backupInstances/restore/action", bi(m))),
				effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) error {
					if allowed {
						return nil // the restore job creates it later
					}
					return m.wantExists(ctx, target, vComp, false)
				}}
		}),
		// Each state change starts from the state it changes and is undone
		// by the admin afterwards.
		protectionColumn("stopProtection", "backupInstances/write", "", dataprotection.StateStopped),
		protectionColumn("suspendBackups", "backupInstances/SuspendBackups/action", "", dataprotection.StateSuspended),
		protectionColumn("resumeProtection", "backupInstances/resumeProtection/action", "stopProtection", dataprotection.StateConfigured),
		protectionColumn("resumeBackups", "backupInstances/resumeProtection/action", "suspendBackups", dataprotection.StateConfigured),
		post(phaseShared, "sync", "backupInstances/write", func(*matrix, *mxPrincipal) any { return map[string]string{"syncType": "Default"} }),
		get("GET "+pBI+"/recoveryPoints", "", vDP, func(m *matrix, _ *mxPrincipal) string { return bi(m) + "/recoveryPoints" },
			on("backupInstances/recoveryPoints/read", bi)),
		get("GET "+pBI+"/recoveryPoints/{rp}", "", vDP, func(m *matrix, _ *mxPrincipal) string { return bi(m) + "/recoveryPoints/" + m.rpName },
			on("backupInstances/recoveryPoints/read", bi)),
		route(phaseShared, "POST "+pBI+"/recoveryPoints/{rp}/verify", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: bi(m) + "/recoveryPoints/" + m.rpName + "/verify", version: vDP, ok: []int{http.StatusOK},
				access: needs(need(aVault+"backupInstances/validateRestore/action", bi(m)))}
		}),
		get("GET "+pVault+"/backupJobs", "", vDP, func(m *matrix, _ *mxPrincipal) string { return v(m) + "/backupJobs" }, on("read", v)),
		get("GET "+pVault+"/backupJobs/{job}", "", vDP, func(m *matrix, _ *mxPrincipal) string { return v(m) + "/backupJobs/" + m.jobName },
			on("read", v)),
		// Coffer's cancel: an ended job, so an allowed cell is a 409 and
		// changes nothing (cancelling running jobs: TestCancelRunningBackup).
		route(phaseShared, "POST "+pVault+"/backupJobs/{job}/cancel", "an ended job", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: v(m) + "/backupJobs/" + m.jobName + "/cancel", version: vDP, ok: []int{http.StatusConflict},
				access: needs(need(aVault+"read", v(m)), need(aVault+"backupInstances/backup/action", bi(m)))}
		}),
	}
	return cols
}

// protectionColumn posts a protection action on bi (after the admin's
// from, when set) and checks that bi is in state to when allowed and
// unchanged when refused; then the admin restores ProtectionConfigured.
func protectionColumn(action, rbacAction, from, to string) mxColumn {
	return route(phaseSerial, "POST "+pBI+"/"+action, "", func(m *matrix, p *mxPrincipal) mxRequest {
		before := dataprotection.StateConfigured
		switch from {
		case "stopProtection":
			before = dataprotection.StateStopped
		case "suspendBackups":
			before = dataprotection.StateSuspended
		}
		return mxRequest{method: http.MethodPost, path: m.biID(mxBI) + "/" + action, version: vDP, ok: []int{http.StatusAccepted},
			body: map[string]any{}, access: needs(need(aVault+rbacAction, m.biID(mxBI))),
			prepare: func(ctx context.Context) error {
				if from == "" {
					return nil
				}
				return m.admin.InstanceAction(ctx, m.rg, mxVault, mxBI, from)
			},
			effect: func(ctx context.Context, allowed bool, _ http.Header, _ []byte) (err error) {
				defer func() {
					if rerr := m.admin.InstanceAction(ctx, m.rg, mxVault, mxBI, "resumeProtection"); err == nil {
						err = rerr
					}
				}()
				want := to
				if !allowed {
					want = before
				}
				bi, err := m.admin.GetInstance(ctx, m.rg, mxVault, mxBI)
				if err != nil {
					return err
				}
				if st := bi.Properties.CurrentProtectionState; st != want {
					return fmt.Errorf("backup instance is %s after the request, want %s", st, want)
				}
				return nil
			}}
	})
}

// waitProtection waits until bi's protection state is want.
func (m *matrix) waitProtection(ctx context.Context, want string) error {
	for i := 0; ; i++ {
		bi, err := m.admin.GetInstance(ctx, m.rg, mxVault, mxBI)
		if err != nil {
			return err
		}
		if bi.Properties.CurrentProtectionState == want {
			return nil
		}
		if i == 500 {
			return fmt.Errorf("backup instance is %s, want %s", bi.Properties.CurrentProtectionState, want)
		}
		if err := sleepCtx(ctx, 20); err != nil {
			return err
		}
	}
}

func adminColumns() []mxColumn {
	post := func(op string) mxColumn {
		return route(phaseShared, "POST "+pAdmin+op, "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: pAdmin + op, version: vID, access: tenantAdmin}
		})
	}
	return []mxColumn{post("verify"), post("gc"), post("rebuildIndex"),
		get("GET "+pAdmin+"stats", "", vID, fixed(pAdmin+"stats"), func(*matrix) mxAccess { return tenantAdmin })}
}

// --- data paths ---

// A row's region of d: [0, 64K) is read, the next blocks are each written
// (or cleared, trimmed, zeroed) by one column.
const (
	offRead = iota * subRange
	offSASWrite
	offSASClear
	offNBDWrite
	offNBDTrim
	offNBDZero
)

// dataColumn is a data-path column: op tries the path with the row's
// grants and reports whether it was accepted; every column then checks
// the bytes (what an accepted write wrote, or that a refused one changed
// nothing).
func dataColumn(name string, acc func(m *matrix, p *mxPrincipal) mxAccess, op func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error)) mxColumn {
	name = "data: " + name
	return mxColumn{name: name, phase: phaseShared, run: func(ctx context.Context, m *matrix, p *mxPrincipal) mxResult {
		a := acc(m, p)
		m.declare(name, a)
		res := mxResult{want: p.expect(a)}
		got, err := op(ctx, m, p)
		res.got = got
		switch {
		case err != nil:
			res.problem = err.Error()
		case res.want && !got:
			res.problem = "refused, want allowed"
		case !res.want && got:
			res.problem = "allowed, want refused"
		}
		return res
	}}
}

// readGrantOf is the grant a row reads d with (Read, else Write); writeGrantOf
// the one it writes with (Write, else Read: writes must then fail).
func readGrantOf(p *mxPrincipal) *client.AccessURI {
	if p.readGrant != nil {
		return p.readGrant
	}
	return p.writeGrant
}

func writeGrantOf(p *mxPrincipal) *client.AccessURI {
	if p.writeGrant != nil {
		return p.writeGrant
	}
	return p.readGrant
}

func dataColumns() []mxColumn {
	d := func(m *matrix) string { return m.diskID(mxDisk) }
	readD := func(m *matrix, _ *mxPrincipal) mxAccess { return needs(need(aDiskGrant, d(m))) }
	writeD := func(m *matrix, _ *mxPrincipal) mxAccess { return needs(need(aDiskGrant, d(m)), need(aDiskWrite, d(m))) }
	readS := func(m *matrix, _ *mxPrincipal) mxAccess { return needs(need(aSnapGrant, m.snapID(mxSnap))) }
	never := func(*matrix, *mxPrincipal) mxAccess { return nobody }
	// Reading d through a copy the row made in its own group needs what
	// the copy needs and a grant on the copy.
	readCopy := func(m *matrix, p *mxPrincipal) mxAccess {
		c := m.ownGroupDisk(p)
		return needs(need(aDiskWrite, c), need(aDiskGrant, d(m)), need(aDiskGrant, c))
	}
	zeros := make([]byte, subRange)
	return []mxColumn{
		dataColumn("SAS read (disk)", readD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			return m.sasRead(ctx, readGrantOf(p), region(p)+offRead, pattern(p, subRange))
		}),
		dataColumn("SAS page write (disk)", writeD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offSASWrite
			return m.diskWrite(ctx, p, off, invert(pattern(p, regionSize)[offSASWrite:offSASWrite+subRange]), func(g *client.AccessURI) error {
				return m.admin.PutPages(ctx, g.AccessSAS, off, invert(pattern(p, regionSize)[offSASWrite:offSASWrite+subRange]))
			})
		}),
		dataColumn("SAS page clear (disk)", writeD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offSASClear
			return m.diskWrite(ctx, p, off, zeros, func(g *client.AccessURI) error {
				return m.admin.ClearPages(ctx, g.AccessSAS, off, subRange)
			})
		}),
		dataColumn("NBD read (disk)", readD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			return m.nbdRead(ctx, readGrantOf(p), region(p)+offRead, pattern(p, subRange))
		}),
		dataColumn("NBD write (disk)", writeD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offNBDWrite
			data := invert(pattern(p, regionSize)[offNBDWrite : offNBDWrite+subRange])
			return m.diskWrite(ctx, p, off, data, func(g *client.AccessURI) error {
				return nbdDo(ctx, g, nbdtest.CmdWrite, off, data)
			})
		}),
		dataColumn("NBD trim (disk)", writeD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offNBDTrim
			return m.diskWrite(ctx, p, off, zeros, func(g *client.AccessURI) error {
				return nbdDo(ctx, g, nbdtest.CmdTrim, off, nil)
			})
		}),
		dataColumn("NBD write-zeroes (disk)", writeD, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offNBDZero
			return m.diskWrite(ctx, p, off, zeros, func(g *client.AccessURI) error {
				return nbdDo(ctx, g, nbdtest.CmdWriteZeroes, off, nil)
			})
		}),
		dataColumn("SAS read (snapshot)", readS, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			return m.sasRead(ctx, p.snapGrant, region(p)+offRead, pattern(p, subRange))
		}),
		dataColumn("NBD read (snapshot)", readS, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			return m.nbdRead(ctx, p.snapGrant, region(p)+offRead, pattern(p, subRange))
		}),
		dataColumn("SAS read of disk d through a copy in the row's own group", readCopy, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			g, err := m.as(p).GrantAccess(ctx, client.Disks, own("g", p), own("c", p), "Read", time.Hour)
			if err != nil {
				return false, nil
			}
			return m.sasRead(ctx, &g, region(p)+offRead, pattern(p, subRange))
		}),
		dataColumn("SAS page write (snapshot)", never, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offSASWrite
			return m.snapWrite(ctx, p, off, func(g *client.AccessURI) error {
				return m.admin.PutPages(ctx, g.AccessSAS, off, zeros)
			})
		}),
		dataColumn("NBD write (snapshot)", never, func(ctx context.Context, m *matrix, p *mxPrincipal) (bool, error) {
			off := region(p) + offNBDWrite
			return m.snapWrite(ctx, p, off, func(g *client.AccessURI) error {
				return nbdDo(ctx, g, nbdtest.CmdWrite, off, zeros)
			})
		}),
	}
}

func invert(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = ^c
	}
	return out
}

// as returns a client that calls the API as row p.
func (m *matrix) as(p *mxPrincipal) *client.Client {
	c := *m.admin
	c.Token = p.token
	return &c
}

// sasRead reads through a grant's SAS URL (none: refused) and checks the
// bytes.
func (m *matrix) sasRead(ctx context.Context, g *client.AccessURI, off int64, want []byte) (bool, error) {
	if g == nil {
		return false, nil
	}
	b, err := m.admin.ReadRange(ctx, g.AccessSAS, off, int64(len(want)))
	if client.AsError(err) != nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !bytes.Equal(b, want) {
		return true, fmt.Errorf("read through the grant: wrong bytes at %d", off)
	}
	return true, nil
}

// nbdRead reads through a grant's NBD export and checks the bytes.
func (m *matrix) nbdRead(ctx context.Context, g *client.AccessURI, off int64, want []byte) (bool, error) {
	if g == nil {
		return false, nil
	}
	c, err := dialGrant(ctx, g)
	if err != nil {
		return false, nil
	}
	defer c.Close()
	b := make([]byte, len(want))
	if _, err := c.ReadAt(b, off); err != nil {
		return false, nil
	}
	if !bytes.Equal(b, want) {
		return true, fmt.Errorf("NBD read: wrong bytes at %d", off)
	}
	return true, nil
}

func dialGrant(ctx context.Context, g *client.AccessURI) (*nbdtest.Client, error) {
	u, err := url.Parse(g.NBDURL)
	if err != nil {
		return nil, err
	}
	return nbdtest.Dial(ctx, u.Host, strings.TrimPrefix(u.Path, "/"), nbdtest.Options{})
}

// nbdDo sends one NBD command (write, trim, write-zeroes of a 64 KiB
// block) through a grant's export.
func nbdDo(ctx context.Context, g *client.AccessURI, cmd uint16, off int64, payload []byte) error {
	c, err := dialGrant(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do(cmd, 0, uint64(off), subRange, payload)
	return err
}

// diskWrite tries a write of the row's block at off with its best grant
// (none: refused), then reads the block back as the admin: an accepted
// write must show as want, a refused one must leave the row's pattern.
func (m *matrix) diskWrite(ctx context.Context, p *mxPrincipal, off int64, want []byte, write func(*client.AccessURI) error) (bool, error) {
	accepted := false
	if g := writeGrantOf(p); g != nil {
		accepted = write(g) == nil
	}
	b, err := m.admin.ReadRange(ctx, m.adminSAS, off, subRange)
	if err != nil {
		return accepted, err
	}
	if !accepted {
		want = pattern(p, regionSize)[off-region(p) : off-region(p)+subRange]
	}
	if !bytes.Equal(b, want) {
		if accepted {
			return true, fmt.Errorf("write accepted, but the disk does not hold it at %d", off)
		}
		return false, fmt.Errorf("write refused, but the disk changed at %d", off)
	}
	return accepted, nil
}

// snapWrite tries a write through the row's snapshot grant; it must be
// refused and the snapshot unchanged.
func (m *matrix) snapWrite(ctx context.Context, p *mxPrincipal, off int64, write func(*client.AccessURI) error) (bool, error) {
	accepted := false
	if p.snapGrant != nil {
		accepted = write(p.snapGrant) == nil
	}
	b, err := m.admin.ReadRange(ctx, m.adminSnapSAS, off, subRange)
	if err != nil {
		return accepted, err
	}
	if !bytes.Equal(b, pattern(p, regionSize)[off-region(p):off-region(p)+subRange]) {
		return accepted, fmt.Errorf("the snapshot changed at %d", off)
	}
	return accepted, nil
}
