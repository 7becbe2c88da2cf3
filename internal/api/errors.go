package api

import (
	"net/http"

	"coffer/internal/resource"
)

// StatusOf maps an error kind to its HTTP status (the API and the portal
// answer a domain error with the same status).
func StatusOf(k resource.Kind) int {
	switch k {
	case resource.KindBadRequest:
		return http.StatusBadRequest
	case resource.KindUnauthorized:
		return http.StatusUnauthorized
	case resource.KindForbidden:
		return http.StatusForbidden
	case resource.KindNotFound:
		return http.StatusNotFound
	case resource.KindMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case resource.KindConflict:
		return http.StatusConflict
	case resource.KindPreconditionFailed:
		return http.StatusPreconditionFailed
	case resource.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case resource.KindTooManyRequests:
		return http.StatusTooManyRequests
	case resource.KindUnavailable:
		return http.StatusServiceUnavailable
	case resource.KindInsufficientStorage:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// The API layer's own error catalogue. Provider-specific errors live with
// their providers; all share resource.Error.
var (
	errMissingAPIVersion = func() *resource.Error {
		return resource.Errorf(resource.KindBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
	}
	errInvalidAPIVersion = func(v, typ, supported string) *resource.Error {
		return resource.Errorf(resource.KindBadRequest, "InvalidApiVersionParameter",
			"The api-version '%s' is invalid for resource type '%s'. The supported api-versions are '%s'.", v, typ, supported)
	}
	errNotFoundRoute = func(path string) *resource.Error {
		return resource.Errorf(resource.KindNotFound, "NotFound", "No HTTP resource was found that matches the request URI '%s'.", resource.Printable(path))
	}
	errMethodNotAllowed = func(method, path string) *resource.Error {
		return resource.Errorf(resource.KindMethodNotAllowed, "MethodNotAllowed",
			"The requested resource does not support http method '%s' at '%s'.", resource.Printable(method), resource.Printable(path))
	}
	errTooLarge = func(limit int64) *resource.Error {
		return resource.Errorf(resource.KindTooLarge, "RequestEntityTooLarge",
			"The request content exceeds the maximum size of %d bytes.", limit)
	}
	errInvalidContent = func(detail string) *resource.Error {
		return resource.Errorf(resource.KindBadRequest, "InvalidRequestContent",
			"The request content was invalid and could not be deserialized: %s", detail)
	}
	errPrecondition = func(msg string) *resource.Error {
		return resource.Errorf(resource.KindPreconditionFailed, "PreconditionFailed", "%s", msg)
	}
	errInternal = func() *resource.Error {
		return resource.Errorf(resource.KindInternal, "InternalServerError",
			"The server encountered an internal error. Retry the request; if it persists, report the x-ms-request-id.")
	}
)
