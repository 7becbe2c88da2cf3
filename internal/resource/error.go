package resource

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an Error; the API layer maps each Kind to one HTTP status.
// Domain packages speak in Kinds so that they never import net/http.
type Kind int

// The kinds of error, with the HTTP status the API answers for each.
const (
	KindInternal            Kind = iota // 500
	KindBadRequest                      // 400
	KindUnauthorized                    // 401
	KindForbidden                       // 403
	KindNotFound                        // 404
	KindMethodNotAllowed                // 405
	KindConflict                        // 409
	KindPreconditionFailed              // 412
	KindTooLarge                        // 413
	KindTooManyRequests                 // 429
	KindUnavailable                     // 503
	KindInsufficientStorage             // 507: the node's data filesystem is full
)

// Error is an error in Azure Resource Manager's shape:
// {"error":{"code","message","target","details","additionalInfo"}}.
// Codes and messages come from the catalogues of the packages that raise
// them; they are Azure's where Azure defines one.
type Error struct {
	Kind           Kind             `json:"-"`
	Code           string           `json:"code"`
	Message        string           `json:"message"`
	Target         string           `json:"target,omitempty"`
	Details        []*Error         `json:"details,omitempty"`
	AdditionalInfo []AdditionalInfo `json:"additionalInfo,omitempty"`
	// Err is an underlying cause, logged but never sent to the client.
	Err error `json:"-"`
}

// AdditionalInfo is an ARM error's additionalInfo entry.
type AdditionalInfo struct {
	Type string `json:"type"`
	Info any    `json:"info"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind and code with a formatted message.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithTarget returns e with Target set.
func (e *Error) WithTarget(target string) *Error { e.Target = target; return e }

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// IsCode reports whether err carries an *Error with the given code.
func IsCode(err error, code string) bool {
	e := AsError(err)
	return e != nil && e.Code == code
}

// InvalidFilter is the 400 for a $filter a list cannot evaluate: it names
// the filter and says why (both escaped, as they echo user input).
func InvalidFilter(filter, reason string) *Error {
	return Errorf(KindBadRequest, "InvalidFilter", "The $filter '%s' is invalid: %s.", Printable(filter), Printable(reason))
}

// CodeResourceNotFound is ARM's code for a resource that does not exist.
const CodeResourceNotFound = "ResourceNotFound"

// ErrNotFound is wrapped by NotFound's 404, so that the domain tells a
// missing resource with errors.Is (IsNotFound) rather than by its ARM code.
var ErrNotFound = errors.New("resource not found")

// IsNotFound reports whether err is (or wraps) NotFound's 404.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// NotFound is ARM's 404 for the resource id, in ARM's words: the provider
// namespace followed by every type/name pair in order, then the group ("The
// Resource 'Microsoft.DataProtection/backupVaults/v1/backupInstances/x' under
// resource group 'rg' was not found."). Every provider raises it through
// this one function; it wraps ErrNotFound (IsNotFound).
func NotFound(id ID) *Error {
	var path strings.Builder
	path.WriteString(id.Provider)
	for i := range id.Types {
		path.WriteString("/" + id.Types[i] + "/" + id.Names[i])
	}
	where := ""
	if id.ResourceGroup != "" {
		where = fmt.Sprintf(" under resource group '%s'", id.ResourceGroup)
	}
	e := Errorf(KindNotFound, CodeResourceNotFound,
		"The Resource '%s'%s was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", path.String(), where)
	e.Err = ErrNotFound
	return e
}
