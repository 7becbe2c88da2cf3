package portal

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"coffer/internal/resource"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/*
var assetFS embed.FS

// viewSet is one view parsed with the layout and the shared parts.
type viewSet struct{ t *template.Template }

// parseViews parses every view once, each with the layout and the parts.
func parseViews(a *assets) (map[string]*viewSet, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	views := map[string]*viewSet{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs(a)).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", n)
		if err != nil {
			return nil, fmt.Errorf("portal: parse view %s: %w", base, err)
		}
		views[base] = &viewSet{t: t}
	}
	return views, nil
}

// layoutData is what the layout sees; the view's own data is .Page.
type layoutData struct {
	User    *userView
	CSRF    string
	Flash   string
	Nav     string // the nav entry to highlight: the path's first segment
	Refresh int
	Path    string
	Page    any
}

type userView struct {
	Name     string
	ClientID string
	Type     string
	Admin    bool
}

// Render writes view with data as .Page, inside the layout.
func (rq *Request) Render(view string, data any) error {
	if rq.decideEr != nil {
		err := rq.decideEr
		rq.decideEr = nil
		return err
	}
	vs := rq.p.views[view]
	if vs == nil {
		return fmt.Errorf("portal: no view %q", view)
	}
	ld := layoutData{Page: data, Refresh: rq.refresh, Path: rq.R.URL.Path}
	ld.Nav, _, _ = strings.Cut(strings.TrimPrefix(rq.R.URL.Path, "/"), "/")
	ld.CSRF = rq.signinCSRF
	if rq.Session != nil {
		ld.CSRF = rq.Session.CSRF
		var err error
		if ld.Flash, err = rq.p.sessions.takeFlash(rq.Context(), rq.Session); err != nil {
			return err
		}
	}
	if rq.Principal.ID != "" {
		ld.User = &userView{Name: rq.Principal.Name(), ClientID: rq.Principal.ClientID, Type: rq.Principal.TypeName(),
			Admin: rq.Principal.TenantAdmin}
	}
	var buf bytes.Buffer
	if err := vs.t.ExecuteTemplate(&buf, "layout", ld); err != nil {
		return fmt.Errorf("portal: render %s: %w", view, err)
	}
	h := rq.W.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	status := rq.status
	if status == 0 {
		status = http.StatusOK
	}
	rq.W.WriteHeader(status)
	_, err := rq.W.Write(buf.Bytes())
	return err
}

// funcs are the template functions every view may use.
func funcs(a *assets) template.FuncMap {
	return template.FuncMap{
		"asset":  a.url,
		"button": func(label string, c Control) button { return button{Label: label, Control: c} },
		"linkTo": func(label, href string, c Control) button {
			return button{Label: label, Control: c, Href: href}
		},
		"primaryLink": func(label, href string, c Control) button {
			return button{Label: label, Control: c, Href: href, Class: "primary"}
		},
		"post":        postButton,
		"jsonView":    jsonView,
		"pageURL":     PageURL,
		"statusLabel": statusLabel,
		"plural": func(n int, one, many string) string {
			if n == 1 {
				return one
			}
			return many
		},
		"bytes":    formatBytes,
		"time":     formatTime,
		"duration": formatDuration,
		"idName": func(id string) string {
			x, err := resource.Parse(id)
			if err != nil {
				return id
			}
			return x.Name()
		},
		"group": func(id string) string {
			x, err := resource.Parse(id)
			if err != nil {
				return ""
			}
			return x.ResourceGroup
		},
		"lower": strings.ToLower,
		"add":   func(a, b int) int { return a + b },
		"pct": func(a, b int64) int64 {
			if b <= 0 {
				return 0
			}
			return a * 100 / b
		},
	}
}

// button is a Control with its label, for the "submit" and "link" parts.
type button struct {
	Label string
	Control
	Href  string
	Class string
}

// post is a one-button form that POSTs to Action.
type post struct {
	button
	Action string
	CSRF   string
	Fields map[string]string
}

func postButton(label, action string, c Control, csrf string) post {
	return post{button: button{Label: label, Control: c}, Action: action, CSRF: csrf}
}

// jsonView is the pretty JSON of a resource's ARM body: the value the API
// encodes for it, indented.
func jsonView(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("portal: JSON view: %w", err)
	}
	return string(b), nil
}

// statusLabel spells a status word (InProgress, CompletedWithWarnings,
// ProtectionConfigured …) as words.
func statusLabel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return "< 1 s"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
}

// assets are the embedded CSS and JS, served at content-hash URLs so
// that they can be cached for ever.
type assets struct {
	byName map[string]string // portal.css → portal.<hash>.css
	files  map[string][]byte // portal.<hash>.css → content
}

func loadAssets() (*assets, error) {
	a := &assets{byName: map[string]string{}, files: map[string][]byte{}}
	names, err := fs.Glob(assetFS, "assets/*")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		b, err := assetFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		base := path.Base(n)
		ext := path.Ext(base)
		hashed := strings.TrimSuffix(base, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		a.byName[base] = hashed
		a.files[hashed] = b
	}
	return a, nil
}

// url is the content-hash URL of an asset.
func (a *assets) url(name string) (string, error) {
	h, ok := a.byName[name]
	if !ok {
		return "", fmt.Errorf("portal: no asset %q", name)
	}
	return "/assets/" + h, nil
}

var assetTypes = map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}

func (p *Portal) serveAsset(w http.ResponseWriter, r *http.Request) {
	b, ok := p.assets.files[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", assetTypes[path.Ext(r.PathValue("name"))])
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Write(b)
}
