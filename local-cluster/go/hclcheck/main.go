// Command hclcheck checks Terraform configurations where Terraform cannot run (its
// providers come from a registry this project cannot reach): each directory's *.tf
// files must parse (hclsyntax, Terraform's own parser), be formatted as hclwrite.Format
// formats them (the core of `terraform fmt`), use only Terraform's top-level blocks,
// give the resources used here their required arguments, and refer only to declared
// variables, locals and resources.
//
//	hclcheck DIR...
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Terraform's top-level blocks.
var topLevel = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "terraform"},
		{Type: "provider", LabelNames: []string{"name"}},
		{Type: "resource", LabelNames: []string{"type", "name"}},
		{Type: "data", LabelNames: []string{"type", "name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "output", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "module", LabelNames: []string{"name"}},
		{Type: "moved"},
		{Type: "import"},
		{Type: "check", LabelNames: []string{"name"}},
	},
}

// Required arguments of the resource types the examples use (their providers' schemas).
var requiredArguments = map[string][]string{
	"helm_release":        {"name", "chart"},
	"kubernetes_manifest": {"manifest"},
}

// Roots of references that are not resources.
var builtinRoots = map[string]bool{
	"var": true, "local": true, "path": true, "terraform": true, "module": true,
	"data": true, "each": true, "count": true, "self": true,
}

type config struct {
	variables map[string]bool
	locals    map[string]bool
	resources map[string]bool // "type.name"
	bodies    []*hclsyntax.Body
}

func load(dir string) (*config, hcl.Diagnostics) {
	cfg := &config{variables: map[string]bool{}, locals: map[string]bool{}, resources: map[string]bool{}}
	var diags hcl.Diagnostics
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	sort.Strings(files)
	if len(files) == 0 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "no *.tf files", Subject: &hcl.Range{Filename: dir}}}
	}
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: err.Error(), Subject: &hcl.Range{Filename: name}})
			continue
		}
		file, parseDiags := hclsyntax.ParseConfig(src, name, hcl.Pos{Line: 1, Column: 1})
		diags = append(diags, parseDiags...)
		if parseDiags.HasErrors() {
			continue
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "not formatted (run terraform fmt)",
				Subject:  &hcl.Range{Filename: name, Start: hcl.InitialPos, End: hcl.InitialPos},
			})
		}
		body := file.Body.(*hclsyntax.Body)
		cfg.bodies = append(cfg.bodies, body)
		content, contentDiags := body.Content(topLevel)
		diags = append(diags, contentDiags...)
		for _, block := range content.Blocks {
			switch block.Type {
			case "variable":
				cfg.variables[block.Labels[0]] = true
			case "locals":
				attrs, attrDiags := block.Body.JustAttributes()
				diags = append(diags, attrDiags...)
				for name := range attrs {
					cfg.locals[name] = true
				}
			case "resource":
				cfg.resources[block.Labels[0]+"."+block.Labels[1]] = true
				diags = append(diags, checkRequired(block)...)
			}
		}
	}
	return cfg, diags
}

func checkRequired(block *hcl.Block) hcl.Diagnostics {
	var diags hcl.Diagnostics
	attrs := block.Body.(*hclsyntax.Body).Attributes
	for _, name := range requiredArguments[block.Labels[0]] {
		if _, ok := attrs[name]; !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("%s.%s: missing required argument %q", block.Labels[0], block.Labels[1], name),
				Subject:  block.DefRange.Ptr(),
			})
		}
	}
	return diags
}

// checkReferences reports var., local. and resource references nothing declares.
func checkReferences(cfg *config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, body := range cfg.bodies {
		hclsyntax.VisitAll(body, func(node hclsyntax.Node) hcl.Diagnostics {
			// Each reference is one ScopeTraversalExpr (a parent's Variables() repeats it).
			expr, ok := node.(*hclsyntax.ScopeTraversalExpr)
			if !ok || len(expr.Traversal) < 2 {
				return nil
			}
			attr, ok := expr.Traversal[1].(hcl.TraverseAttr)
			if !ok {
				return nil
			}
			root := expr.Traversal.RootName()
			missing := ""
			switch {
			case root == "var" && !cfg.variables[attr.Name]:
				missing = "variable " + attr.Name
			case root == "local" && !cfg.locals[attr.Name]:
				missing = "local " + attr.Name
			case !builtinRoots[root] && !cfg.resources[root+"."+attr.Name]:
				missing = "resource " + root + "." + attr.Name
			}
			if missing != "" {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "reference to undeclared " + missing,
					Subject:  expr.Traversal.SourceRange().Ptr(),
				})
			}
			return nil
		})
	}
	return diags
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hclcheck DIR...")
		os.Exit(2)
	}
	failed := false
	for _, dir := range os.Args[1:] {
		cfg, diags := load(dir)
		if cfg != nil {
			diags = append(diags, checkReferences(cfg)...)
		}
		for _, d := range diags {
			fmt.Fprintln(os.Stderr, d.Error())
		}
		if diags.HasErrors() {
			failed = true
		} else {
			fmt.Printf("%s: ok\n", dir)
		}
	}
	if failed {
		os.Exit(1)
	}
}
