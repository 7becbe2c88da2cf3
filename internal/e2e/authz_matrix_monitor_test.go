package e2e

import (
	"net/http"
)

// Routes of the alerts (Microsoft.AlertsManagement, authorized with the
// vaults' read and write actions at the scope asked about) and of the
// notification targets (Coffer.Monitor, the tenant administrator's).
const (
	pAlerts  = "{scope...}/providers/Microsoft.AlertsManagement/alerts"
	pTargets = "/providers/Coffer.Monitor/notificationTargets"
	vAlerts  = "2019-05-05-preview"
)

func monitorColumns() []mxColumn {
	v := func(m *matrix) string { return m.vaultID(mxVault) }
	sub := func(m *matrix) string { return "/subscriptions/" + m.sub }
	// An alert that does not exist: an allowed caller gets 404 (the
	// authorization passed), a denied one 403.
	const ghost = "00000000-0000-4000-8000-00000000a1e7"
	admin := func(*matrix) mxAccess { return tenantAdmin }
	return []mxColumn{
		get("GET "+pAlerts, "vault", vAlerts, func(m *matrix, _ *mxPrincipal) string { return v(m) + "/providers/Microsoft.AlertsManagement/alerts" },
			func(m *matrix) mxAccess { return needs(need(aVault+"read", v(m))) }),
		get("GET "+pAlerts, "subscription", vAlerts, func(m *matrix, _ *mxPrincipal) string {
			return sub(m) + "/providers/Microsoft.AlertsManagement/alerts"
		}, func(m *matrix) mxAccess { return needs(need(aVault+"read", sub(m))) }),
		route(phaseShared, "GET "+pAlerts+"/{alert}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodGet, path: v(m) + "/providers/Microsoft.AlertsManagement/alerts/" + ghost, version: vAlerts,
				ok: []int{http.StatusNotFound}, access: needs(need(aVault+"read", v(m)))}
		}),
		route(phaseShared, "POST "+pAlerts+"/{alert}/changestate", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: v(m) + "/providers/Microsoft.AlertsManagement/alerts/" + ghost + "/changestate?newState=Acknowledged",
				version: vAlerts, ok: []int{http.StatusNotFound}, access: needs(need(aVault+"write", v(m)))}
		}),
		get("GET "+pTargets, "", vID, fixed(pTargets), admin),
		get("GET "+pTargets+"/{name}", "", vID, fixed(pTargets+"/mx"), admin),
		route(phaseShared, "PUT "+pTargets+"/{name}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPut, path: pTargets + "/" + own("mx", p), version: vID, access: tenantAdmin,
				body: map[string]any{"properties": map[string]any{"kind": "Webhook", "url": "http://127.0.0.1:1/hook"}}}
		}),
		route(phaseShared, "DELETE "+pTargets+"/{name}", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodDelete, path: pTargets + "/mx", version: vID, access: tenantAdmin}
		}),
		route(phaseShared, "POST "+pTargets+"/{name}/test", "", func(m *matrix, p *mxPrincipal) mxRequest {
			return mxRequest{method: http.MethodPost, path: pTargets + "/mx/test", version: vID, access: tenantAdmin}
		}),
	}
}
