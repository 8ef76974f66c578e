// Package usage keeps the spend ledger that GET /usage reports: for today
// and this month (UTC), totals and rows by user, by key id and by
// "<provider>/<model>" (requests, cost in integer nano-dollars, input and
// output tokens, requests of unknown cost), on one instance (memory) or
// exactly across many (Redis, integer HINCRBY; every key of the ledger
// shares one hash tag built from the key prefix, so one script touches one
// Cluster slot). It records whether or not budgets are enforced; its
// configuration comes from the budgets block (budget.Config.Ledger).
//
// [Ledger.Record] is not idempotent: call it exactly once per request. The
// Redis ledger never retries a command whose reply was lost, so a network
// fault loses that record (the error says so) rather than counting it
// twice. The package never logs: [Hooks] report health transitions.
package usage
