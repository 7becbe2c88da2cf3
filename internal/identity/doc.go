// Package identity owns Coffer's principals and their credentials: users,
// service principals and the managed identities of resources (a backup
// vault's system-assigned identity), client secrets (stored only as salted
// hashes), and bearer tokens.
//
// Tokens are JWTs signed with an Ed25519 key that the server keeps in its
// data directory. Short-lived tokens from the OAuth2 client-credentials
// endpoint expire after an hour; long-lived API tokens (the admin token in
// admin.json, `coffer login`) are recorded so that they can be revoked. A
// token is only as good as its principal: deleting a principal invalidates
// every token issued to it.
package identity
