package rbac

import (
	"errors"

	"coffer/internal/resource"
)

// Sentinel errors. Functions in this package wrap them with detail; test with
// errors.Is and convert with ErrorFor for the ARM error body.
var (
	// ErrInvalidScope: the string is not a scope ARM accepts.
	ErrInvalidScope = errors.New("invalid scope")
	// ErrUnsupportedScope: a well-formed scope Coffer does not serve
	// (management groups and other tenant-level provider scopes).
	ErrUnsupportedScope = errors.New("unsupported scope")
	// ErrInvalidRoleDefinitionID: not a GUID or a role definition resource ID.
	ErrInvalidRoleDefinitionID = errors.New("invalid role definition ID")
	// ErrRoleDefinitionNotFound: a lookup of a role definition found nothing.
	ErrRoleDefinitionNotFound = errors.New("role definition not found")
	// ErrUnknownRole: an assignment names a role definition that does not exist.
	ErrUnknownRole = errors.New("role definition does not exist")
	// ErrInvalidAssignmentName: a role assignment name is not a GUID.
	ErrInvalidAssignmentName = errors.New("invalid role assignment name")
	// ErrInvalidPrincipalID: a principal ID is missing or not a GUID.
	ErrInvalidPrincipalID = errors.New("invalid principal ID")
	// ErrInvalidPrincipalType: not one of User, Group, ServicePrincipal,
	// ForeignGroup, Device.
	ErrInvalidPrincipalType = errors.New("invalid principal type")
	// ErrScopeNotAssignable: the role's assignableScopes do not cover the scope.
	ErrScopeNotAssignable = errors.New("role is not assignable at scope")
	// ErrAssignmentExists: the same (scope, role, principal) is already
	// assigned under another name.
	ErrAssignmentExists = errors.New("role assignment already exists")
	// ErrAssignmentUpdateNotPermitted: a PUT over an existing assignment tries
	// to change its principal, role or scope.
	ErrAssignmentUpdateNotPermitted = errors.New("role assignment update not permitted")
	// ErrInvalidFilter: a $filter expression this API does not support.
	ErrInvalidFilter = errors.New("invalid $filter")
	// ErrInvalidBody: a request body that does not decode.
	ErrInvalidBody = errors.New("invalid request body")
)

// ErrorFor converts an error from this package into Azure's ARM error (code,
// message and kind, which the API layer maps to an HTTP status). It returns
// nil for nil, and a KindInternal error for errors it does not know. The
// original error is kept as the cause.
func ErrorFor(err error) *resource.Error {
	if err == nil {
		return nil
	}
	if e := resource.AsError(err); e != nil {
		return e
	}
	var out *resource.Error
	switch {
	case errors.Is(err, ErrAssignmentExists):
		out = resource.Errorf(resource.KindConflict, "RoleAssignmentExists", "The role assignment already exists.")
	case errors.Is(err, ErrAssignmentUpdateNotPermitted):
		out = resource.Errorf(resource.KindConflict, "RoleAssignmentUpdateNotPermitted",
			"Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
	case errors.Is(err, ErrInvalidAssignmentName):
		out = resource.Errorf(resource.KindBadRequest, "InvalidRoleAssignmentId",
			"The role assignment ID is not valid. The role assignment ID must be a GUID.")
	case errors.Is(err, ErrInvalidRoleDefinitionID):
		out = resource.Errorf(resource.KindBadRequest, "InvalidRoleDefinitionId", "%s", err.Error())
	case errors.Is(err, ErrUnknownRole):
		out = resource.Errorf(resource.KindBadRequest, "RoleDefinitionDoesNotExist", "%s", err.Error())
	case errors.Is(err, ErrRoleDefinitionNotFound):
		out = resource.Errorf(resource.KindNotFound, "RoleDefinitionDoesNotExist", "%s", err.Error())
	case errors.Is(err, ErrInvalidPrincipalID):
		out = resource.Errorf(resource.KindBadRequest, "InvalidPrincipalId", "%s", err.Error())
	case errors.Is(err, ErrInvalidPrincipalType):
		out = resource.Errorf(resource.KindBadRequest, "InvalidPrincipalType", "%s", err.Error())
	case errors.Is(err, ErrScopeNotAssignable):
		out = resource.Errorf(resource.KindBadRequest, "InvalidRoleAssignmentScope", "%s", err.Error())
	case errors.Is(err, ErrUnsupportedScope), errors.Is(err, ErrInvalidScope):
		out = resource.Errorf(resource.KindBadRequest, "InvalidScope", "%s", err.Error())
	case errors.Is(err, ErrInvalidFilter):
		out = resource.Errorf(resource.KindBadRequest, "InvalidFilter", "%s", err.Error())
	case errors.Is(err, ErrInvalidBody):
		out = resource.Errorf(resource.KindBadRequest, "InvalidRequestContent", "%s", err.Error())
	default:
		out = resource.Errorf(resource.KindInternal, "InternalServerError", "An internal error occurred.")
	}
	out.Err = err
	return out
}
