package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"time"
)

// consoleFiles are the console's page, script and style sheet: plain files,
// no build step, no third-party code; the charts are SVG drawn by
// console/console.js.
//
//go:embed console/index.html console/console.js console/console.css
var consoleFiles embed.FS

// consoleCSP keeps the page to its own origin: no inline script, no remote
// resource.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// register adds the console page (GET /), its assets (GET /console/...) and
// the JSON API (GET /api/v1/...) to mux, each behind the admin token.
func (c *Console) register(mux *http.ServeMux, token string, now func() time.Time) {
	assets, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/console/", http.FileServerFS(assets))
	secure := func(h http.Handler) http.Handler {
		return requireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", consoleCSP)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Referrer-Policy", "no-referrer")
			h.ServeHTTP(w, r)
		}))
	}
	mux.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, err := consoleFiles.ReadFile("console/index.html")
		if err != nil {
			http.Error(w, "console missing", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})))
	mux.Handle("GET /console/", secure(files))
	api := http.NewServeMux()
	c.registerAPI(api, now)
	mux.Handle("GET /api/v1/", requireToken(token, api))
}
