// Package identity owns Coffer's principals and their credentials: users,
// service principals and the managed identities of resources (a backup
// vault's system-assigned identity), client secrets (stored only as salted
// hashes), and bearer tokens.
//
// Tokens are JWTs signed with an Ed25519 key that the server keeps in its
// data directory. Access tokens come from the OAuth2 client-credentials
// endpoint, for one of the server's audiences (its endpoint URLs), and
// expire after an hour; workers get access tokens for the internal
// audience. Long-lived API tokens (admin.json, `coffer login`, `coffer
// token create`) are recorded so that they can be listed and revoked; they
// live at most the server's maximum API-token lifetime, and only an access
// token from the client-credentials grant can create one, so an API token
// never begets another. Every presented token is checked whole: signature
// and header, issuer, tenant, audience, kind, expiry (required), iat and
// nbf, and an API token's record. A token is only as good as its
// principal: deleting a principal invalidates every token issued to it.
package identity
