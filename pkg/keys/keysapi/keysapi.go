// Package keysapi is the HTTP admin API for gateway keys and teams, served
// on the admin listener behind an [adminauth.Guard]:
//
//	POST   /admin/keys              create; 201 with the secret ("key"), shown only here
//	GET    /admin/keys              list (?team=, ?owner= filter); never secrets
//	GET    /admin/keys/{id}         one key
//	PATCH  /admin/keys/{id}         change owner, team, description, expiry, providers, models, limits, budget, labels
//	DELETE /admin/keys/{id}         revoke (the record stays, for attribution)
//	POST   /admin/keys/{id}/rotate  new secret; {"grace_period_seconds": n} keeps the old one n seconds
//	POST   /admin/teams             create a team
//	GET    /admin/teams             list teams
//	GET    /admin/teams/{id}        one team
//	PATCH  /admin/teams/{id}        change description, limits, budget, labels
//	DELETE /admin/teams/{id}        delete a team no active key belongs to; 204
//
// Bodies are JSON objects with the field names of [keys.KeySpec],
// [keys.KeyPatch], [keys.TeamSpec] and [keys.TeamPatch]; unknown fields
// are refused. Errors are {"error": "..."} with 400 (bad input), 404, 409
// (exists, conflict), 413 (body over 64 KiB), 503 (store unavailable) or
// 500. Responses carrying a secret are marked Cache-Control: no-store.
package keysapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/adminauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 64 << 10

// Options tune the handler.
type Options struct {
	// OnChange runs after every successful change, for example the local
	// Authenticator's Sync so this instance sees the change at once.
	OnChange func(ctx context.Context)
	// Log receives internal errors (never secrets); discarded when nil.
	Log *slog.Logger
}

type api struct {
	m    *keys.Manager
	opts Options
}

// New returns the admin API over m, behind guard (every route refused
// unless the guard has a token and the request carries it).
func New(m *keys.Manager, guard *adminauth.Guard, o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{m: m, opts: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/keys", a.createKey)
	mux.HandleFunc("GET /admin/keys", a.listKeys)
	mux.HandleFunc("GET /admin/keys/{id}", a.getKey)
	mux.HandleFunc("PATCH /admin/keys/{id}", a.updateKey)
	mux.HandleFunc("DELETE /admin/keys/{id}", a.revokeKey)
	mux.HandleFunc("POST /admin/keys/{id}/rotate", a.rotateKey)
	mux.HandleFunc("POST /admin/teams", a.createTeam)
	mux.HandleFunc("GET /admin/teams", a.listTeams)
	mux.HandleFunc("GET /admin/teams/{id}", a.getTeam)
	mux.HandleFunc("PATCH /admin/teams/{id}", a.updateTeam)
	mux.HandleFunc("DELETE /admin/teams/{id}", a.deleteTeam)
	return guard.Wrap(mux)
}

// withSecret is a key as returned once by create and rotate.
type withSecret struct {
	keys.Key
	// Secret is the gateway key itself.
	Secret string `json:"key"`
}

type rotateRequest struct {
	// GracePeriodSeconds keeps the old secret working this long; absent
	// means the configured default, 0 means none.
	GracePeriodSeconds *int64 `json:"grace_period_seconds,omitempty"`
}

func (a *api) createKey(w http.ResponseWriter, r *http.Request) {
	var spec keys.KeySpec
	if !a.decode(w, r, &spec, false) {
		return
	}
	k, secret, err := a.m.CreateKey(r.Context(), spec)
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	w.Header().Set("Location", "/admin/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, withSecret{Key: k, Secret: secret}, true)
}

func (a *api) listKeys(w http.ResponseWriter, r *http.Request) {
	list, err := a.m.ListKeys(r.Context())
	if a.fail(w, r, err) {
		return
	}
	team, owner := r.URL.Query().Get("team"), r.URL.Query().Get("owner")
	out := make([]keys.Key, 0, len(list))
	for _, k := range list {
		if (team == "" || k.Team == team) && (owner == "" || k.Owner == owner) {
			out = append(out, k)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out}, false)
}

func (a *api) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.m.GetKey(r.Context(), r.PathValue("id"))
	if a.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, k, false)
}

func (a *api) updateKey(w http.ResponseWriter, r *http.Request) {
	var p keys.KeyPatch
	if !a.decode(w, r, &p, false) {
		return
	}
	k, err := a.m.UpdateKey(r.Context(), r.PathValue("id"), p)
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	writeJSON(w, http.StatusOK, k, false)
}

func (a *api) revokeKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.m.Revoke(r.Context(), r.PathValue("id"))
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	writeJSON(w, http.StatusOK, k, false)
}

func (a *api) rotateKey(w http.ResponseWriter, r *http.Request) {
	var req rotateRequest
	if !a.decode(w, r, &req, true) {
		return
	}
	grace := time.Duration(-1)
	if s := req.GracePeriodSeconds; s != nil {
		if *s < 0 || *s > int64(keys.MaxRotationGrace/time.Second) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("grace_period_seconds must be between 0 and %d", int64(keys.MaxRotationGrace/time.Second)))
			return
		}
		grace = time.Duration(*s) * time.Second
	}
	k, secret, err := a.m.Rotate(r.Context(), r.PathValue("id"), grace)
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	writeJSON(w, http.StatusOK, withSecret{Key: k, Secret: secret}, true)
}

func (a *api) createTeam(w http.ResponseWriter, r *http.Request) {
	var spec keys.TeamSpec
	if !a.decode(w, r, &spec, false) {
		return
	}
	t, err := a.m.CreateTeam(r.Context(), spec)
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	w.Header().Set("Location", "/admin/teams/"+t.ID)
	writeJSON(w, http.StatusCreated, t, false)
}

func (a *api) listTeams(w http.ResponseWriter, r *http.Request) {
	list, err := a.m.ListTeams(r.Context())
	if a.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"teams": list}, false)
}

func (a *api) getTeam(w http.ResponseWriter, r *http.Request) {
	t, err := a.m.GetTeam(r.Context(), r.PathValue("id"))
	if a.fail(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, t, false)
}

func (a *api) updateTeam(w http.ResponseWriter, r *http.Request) {
	var p keys.TeamPatch
	if !a.decode(w, r, &p, false) {
		return
	}
	t, err := a.m.UpdateTeam(r.Context(), r.PathValue("id"), p)
	if a.fail(w, r, err) {
		return
	}
	a.changed(r.Context())
	writeJSON(w, http.StatusOK, t, false)
}

func (a *api) deleteTeam(w http.ResponseWriter, r *http.Request) {
	if a.fail(w, r, a.m.DeleteTeam(r.Context(), r.PathValue("id"))) {
		return
	}
	a.changed(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) changed(ctx context.Context) {
	if a.opts.OnChange != nil {
		a.opts.OnChange(ctx)
	}
}

// decode reads one JSON object into v, refusing unknown fields and
// trailing data. An empty body is accepted when optional.
func (a *api) decode(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "cannot read body")
		return false
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+jsonProblem(err))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: trailing data")
		return false
	}
	return true
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("field %s must be %s", te.Field, te.Type)
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.Is(err, keys.ErrInvalid):
		return err.Error()
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

// fail writes the response for err and reports whether there was one.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, keys.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, keys.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, keys.ErrExists), errors.Is(err, keys.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, keys.ErrStoreUnavailable):
		a.opts.Log.Error("gateway key store unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusServiceUnavailable, "key store unavailable")
	default:
		a.opts.Log.Error("gateway key admin request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any, secret bool) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if secret {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg}, false)
}
