// Package correction learns, per provider and model, how far token estimates
// read from a request's text are from the counts the vendor reports
// ([Corrector]), so the rate limiter reserves closer to what a call will
// be billed. It keeps per-process state only and depends on no other
// package of the gateway but pkg/quota (for bounding client-supplied model
// names).
package correction
