// Package arch holds tests that enforce Coffer's architecture rules across
// packages: every package has a doc comment, domain packages do not import
// net/http or a concrete store, the CLI reaches the server only through the
// client package, and only internal/clock reads the wall clock.
package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type pkg struct {
	dir     string
	imports map[string][]string // import path → files importing it
	hasDoc  bool
	files   []*ast.File
	names   []string
}

func loadPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	root := filepath.Join("..", "..")
	out := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := out[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string][]string{}}
			out[rel] = p
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.hasDoc = true
		}
		for _, im := range f.Imports {
			ip := strings.Trim(im.Path.Value, `"`)
			p.imports[ip] = append(p.imports[ip], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPackageDocs(t *testing.T) {
	for dir, p := range loadPackages(t) {
		if !p.hasDoc {
			t.Errorf("package %s has no package doc comment saying what it owns", dir)
		}
	}
}

// Domain packages hold rules and data; they never speak HTTP or pick a
// concrete store (DESIGN.md, "Packages").
var domain = []string{"internal/rbac", "internal/schedule", "internal/dataprotection", "internal/chunkstore",
	"internal/blockdev", "internal/chunk", "internal/compute", "internal/job", "internal/tenant", "internal/identity",
	"internal/authorization", "internal/operation", "internal/resource", "internal/clock", "internal/blobstore",
	"internal/worker", "internal/odata", "internal/monitor", "internal/audit", "internal/prom"}

// stricter lists what particular domain packages must not import on top.
var stricter = map[string][]string{
	// RBAC is data plus a pure function: no store, no clock, no I/O.
	"internal/rbac": {"coffer/internal/store", "coffer/internal/clock", "os"},
}

func TestDomainImports(t *testing.T) {
	pkgs := loadPackages(t)
	for _, d := range domain {
		p := pkgs[filepath.FromSlash(d)]
		if p == nil {
			continue
		}
		for ip, files := range p.imports {
			if ip == "net/http" || ip == "database/sql" || strings.HasPrefix(ip, "coffer/internal/store/") ||
				ip == "coffer/internal/api" || ip == "coffer/internal/server" {
				t.Errorf("domain package %s imports %s (%v)", d, ip, files)
			}
			for _, bad := range stricter[d] {
				if ip == bad {
					t.Errorf("package %s must not import %s (%v)", d, ip, files)
				}
			}
		}
	}
}

// services are the domain packages whose services the API and the portal
// call with typed inputs: their exported functions and methods take no
// request bodies ([]byte, json.RawMessage, io.Reader) and no HTTP types.
var services = []string{"internal/dataprotection", "internal/compute", "internal/tenant", "internal/authorization", "internal/rbac"}

// TestServicesTakeTypedInputs: no exported function or method of a domain
// service takes a raw body; the API decodes ARM bodies into typed inputs.
func TestServicesTakeTypedInputs(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	raw := func(e ast.Expr) string {
		switch x := e.(type) {
		case *ast.ArrayType:
			if id, ok := x.Elt.(*ast.Ident); ok && x.Len == nil && id.Name == "byte" {
				return "[]byte"
			}
		case *ast.SelectorExpr:
			if pkg, ok := x.X.(*ast.Ident); ok {
				switch name := pkg.Name + "." + x.Sel.Name; name {
				case "json.RawMessage", "io.Reader", "http.Request", "http.ResponseWriter":
					return name
				}
			}
		case *ast.StarExpr:
			if sel, ok := x.X.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "http" {
					return "*http." + sel.Sel.Name
				}
			}
		}
		return ""
	}
	for _, dir := range services {
		files, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(dir), "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || !fn.Name.IsExported() || !serviceLevel(fn) {
					continue
				}
				for _, p := range fn.Type.Params.List {
					if what := raw(p.Type); what != "" {
						t.Errorf("%s: %s takes a %s: domain services take typed inputs (package api decodes request bodies)",
							fset.Position(fn.Pos()), fn.Name.Name, what)
					}
				}
			}
		}
	}
}

// serviceLevel reports whether fn is what a handler calls: a package-level
// function or a method of the package's Service (not a model's JSON codec
// or a data path's I/O method, which take bytes by contract).
func serviceLevel(fn *ast.FuncDecl) bool {
	if fn.Recv == nil {
		return true
	}
	t := fn.Recv.List[0].Type
	if st, ok := t.(*ast.StarExpr); ok {
		t = st.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.Name == "Service"
}

func TestCLIUsesClientOnly(t *testing.T) {
	p := loadPackages(t)[filepath.FromSlash("internal/cli")]
	if p == nil {
		t.Skip("no cli package")
	}
	allowed := map[string]bool{"coffer/internal/client": true, "coffer/internal/server": true, // serve runs the server
		"coffer/internal/identity": true, // NewGUID for assignment names
		"coffer/internal/bench":    true, // `coffer bench` runs the engine locally, like serve
		"coffer/internal/clock":    true} // progress bars measure throughput
	for ip, files := range p.imports {
		if strings.HasPrefix(ip, "coffer/") && !allowed[ip] {
			t.Errorf("internal/cli imports %s (%v): commands must go through internal/client", ip, files)
		}
	}
}

// TestNoWallClock bans time.Now outside internal/clock (and tests).
func TestNoWallClock(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		if strings.Contains(filepath.ToSlash(path), "internal/clock/") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Error(err)
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "time" && (sel.Sel.Name == "Now" || sel.Sel.Name == "Since") {
					t.Errorf("%s: time.%s outside internal/clock: take a clock.Clock", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
}
