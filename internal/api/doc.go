// Package api is Coffer's HTTP surface: the Azure Resource Manager route
// table, one handler shape, authentication and authorization of every
// request, the mapping of errors to ARM's error body, long-running-operation
// responses and the operation-status endpoints, paging, ETags, and the
// OAuth2/OpenID endpoints that the Azure identity SDK and CLI use.
//
// Routes are matched segment by segment with literal segments compared
// case-insensitively, because ARM paths are case-insensitive
// (`resourcegroups` and `resourceGroups` are the same route) and the
// standard library's ServeMux patterns are not; names are captured with the
// caller's casing.
//
// Handlers return (*Response, error). A *resource.Error becomes
// {"error":{"code","message","target","details"}} with the status of its
// Kind; any other error is logged and answered 500 InternalServerError.
package api
