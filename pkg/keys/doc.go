// Package keys issues, stores and checks gateway keys: the secrets clients
// present instead of a vendor key when a provider runs in gateway_keys
// mode.
//
// A gateway key is "llmp-" followed by 43 base64url characters (256 bits
// from crypto/rand). It is shown once, when created or rotated; the store
// keeps only its SHA-256 and a short random id (key_…) used for display,
// logs, metrics and limits. Each key has an owner, a team, a description,
// creation and expiry times, glob patterns of the providers and models it
// may use, optional limits and budgets (plain numbers for the quota engine)
// and labels. Teams carry limits and a budget shared by their keys.
//
// Pieces:
//   - [Record], [Key], [Team]: the data; [Store] with a file backend
//     ([OpenFileStore], one instance) and a Redis backend ([NewRedisStore],
//     shared by every instance), both run through one test suite.
//   - [Manager]: create, update, rotate (with a grace period for the old
//     secret), revoke; team CRUD. The admin API (keysapi) and the CLI
//     (keyscli) are thin layers over it.
//   - [Authenticator]: an in-process index of every key by hash, kept in
//     step with the store by a version poll; a lookup never leaves the
//     process. [Authenticator.Authorize] checks provider and model.
//   - [FailureLimiter]: failed lookups per client IP, so guessing costs.
//   - [Extract]: where each vendor SDK sends its key.
//
// No secret is ever logged, returned in an error, or written to the store.
package keys
