package budget

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
)

// health tracks the backend's state; see backendhealth.Tracker.
type health = backendhealth.Tracker

func newHealth(backend string, hooks Hooks, retry time.Duration) *health {
	return backendhealth.New(backend, hooks.OnStateChange, retry)
}
