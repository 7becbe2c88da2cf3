package identity

import "context"

type principalCtxKey struct{}

// WithPrincipal returns ctx carrying p, the authenticated principal of the
// request being served, so that what the request starts (a job, an audit
// line) can say who asked for it.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalCtxKey{}, p)
}

// PrincipalFrom returns the principal WithPrincipal put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalCtxKey{}).(Principal)
	return p, ok && p.ID != ""
}
