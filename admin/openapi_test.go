package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pyaml "github.com/pb33f/go-yaml"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/content"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// The OpenAPI document (openapi.yaml, served as JSON at /api/v1/openapi.json)
// is held to the code four ways: it must be a valid OpenAPI 3.1 document
// (TestOpenAPIDocumentIsValid); it must list exactly the routes of
// routes.go with the rights they need (TestOpenAPIMatchesRoutes); its
// schemas must have the fields of the Go types the API encodes and decodes
// (TestOpenAPISchemasMatchTypes); and every response the API's tests see
// must match it (newResponseValidator, used by the other tests of this
// package).

// jsonlType is the media type of the audit export.
const jsonlType = "application/jsonl"

// lineSchemaExt names, on a JSON Lines media type, the schema every line
// must match (OpenAPI 3.1 has no itemSchema).
const lineSchemaExt = "x-gatehouse-line-schema"

// oasVersion is the OpenAPI version the document is written in, as the
// validator's schema functions take it.
const oasVersion float32 = 3.1

// --- the document is valid ---

func TestOpenAPIDocumentIsValid(t *testing.T) {
	for _, c := range []struct {
		name string
		spec []byte
	}{
		{"openapi.yaml", openapiYAML},
		{"served JSON", OpenAPI},
	} {
		t.Run(c.name, func(t *testing.T) {
			if problems := checkDocument(c.spec); len(problems) > 0 {
				t.Errorf("%s is not a valid OpenAPI 3.1 document:\n  %s", c.name, strings.Join(problems, "\n  "))
			}
		})
	}
	// The check itself must catch what it is there for.
	t.Run("catches", func(t *testing.T) {
		for name, mutate := range map[string]func(string) string{
			"dangling $ref": func(s string) string {
				return strings.Replace(s, `$ref: "#/components/schemas/OrgView"`, `$ref: "#/components/schemas/NoSuchView"`, 1)
			},
			"3.0 version": func(s string) string { return strings.Replace(s, "openapi: 3.1.0", "openapi: 3.0.3", 1) },
			"schema error": func(s string) string {
				return strings.Replace(s, "operationId: getMe", "operationId: [getMe]", 1)
			},
			// Only the OpenAPI 3.1 schema catches this one.
			"bad security scheme": func(s string) string {
				return strings.Replace(s, "      type: http\n", "      type: basicauth\n", 1)
			},
		} {
			broken := mutate(string(openapiYAML))
			if broken == string(openapiYAML) {
				t.Errorf("%s: the mutation did not apply", name)
				continue
			}
			if problems := checkDocument([]byte(broken)); len(problems) == 0 {
				t.Errorf("%s: checkDocument reports nothing", name)
			}
		}
	})
}

// checkDocument lists what is wrong with an OpenAPI document (YAML or
// JSON): not 3.1, not valid against the OpenAPI 3.1 schema, a $ref that
// does not resolve, a schema that does not compile, or an operation
// without what this API's documents give each (operationId, summary,
// description, x-gatehouse-need; 401 and 500 when it needs credentials;
// problem details for errors; If-Match on PATCH).
func checkDocument(spec []byte) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	doc, err := newDocument(spec)
	if err != nil {
		return []string{"parse: " + err.Error()}
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		add("openapi is %q, want 3.1.x", v)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		add("build: %v", err)
	}
	if model == nil {
		return problems
	}
	if model.Index != nil {
		for _, e := range model.Index.GetReferenceIndexErrors() {
			add("reference: %v", e)
		}
		if r := model.Index.GetResolver(); r != nil {
			for _, e := range r.GetResolvingErrors() {
				add("reference: %v", e)
			}
		}
	}
	// Every $ref, wherever it is, points at something in the document.
	var tree any
	if err := yaml.Unmarshal(spec, &tree); err != nil {
		add("decode: %v", err)
	} else {
		walkRefs(tree, "", func(at, ref string) {
			if !strings.HasPrefix(ref, "#/") {
				add("%s: $ref %q is not local", at, ref)
			} else if _, ok := resolvePointer(tree, strings.TrimPrefix(ref, "#")); !ok {
				add("%s: $ref %q does not resolve", at, ref)
			}
		})
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		for _, e := range errs {
			add("validator: %v", e)
		}
		return problems
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		if len(verrs) == 0 {
			add("the document does not validate against the OpenAPI 3.1 schema")
		}
		for _, e := range verrs {
			add("OpenAPI 3.1 schema: %s", describeError(e))
		}
	}

	// Every schema compiles (as a JSON Schema 2020-12 dialect schema).
	opts := config.NewValidationOptions(config.WithFormatAssertions())
	compile := func(at string, sp *base.SchemaProxy, purpose schema_validation.SchemaValidationPurpose) {
		if sp == nil {
			return
		}
		s := sp.Schema()
		if s == nil {
			add("%s: schema does not build: %v", at, sp.GetBuildError())
			return
		}
		if _, err := schema_validation.CompileSchemaForValidation(s, purpose, opts, oasVersion); err != nil {
			add("%s: schema does not compile: %v", at, err)
		}
	}
	m := &model.Model
	if m.Components != nil && m.Components.Schemas != nil {
		for name, sp := range m.Components.Schemas.FromOldest() {
			compile("components.schemas."+name, sp, schema_validation.SchemaValidationPurposeGeneric)
		}
	}
	ids := map[string]string{}
	if m.Paths == nil || m.Paths.PathItems == nil {
		add("the document has no paths")
		return problems
	}
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			at := strings.ToUpper(method) + " " + path
			if op.OperationId == "" {
				add("%s: no operationId", at)
			} else if prev, dup := ids[op.OperationId]; dup {
				add("%s: operationId %s is %s's too", at, op.OperationId, prev)
			}
			ids[op.OperationId] = at
			if op.Summary == "" || op.Description == "" {
				add("%s: needs a summary and a description", at)
			}
			need := extensionString(op.Extensions, "x-gatehouse-need")
			if !slices.Contains([]string{"none", "self", "read", "write", "platform"}, need) {
				add("%s: x-gatehouse-need is %q", at, need)
			}
			public := op.Security != nil && len(op.Security) == 0
			if public != (need == "none") {
				add("%s: x-gatehouse-need %s, but security is %v", at, need, op.Security)
			}
			if op.Responses == nil || op.Responses.Codes == nil {
				add("%s: no responses", at)
				continue
			}
			if op.Responses.Default != nil {
				add("%s: a default response hides undocumented statuses", at)
			}
			if need != "none" {
				for _, code := range []string{"401", "500"} {
					if op.Responses.Codes.GetOrZero(code) == nil {
						add("%s: no %s response", at, code)
					}
				}
			}
			for code, resp := range op.Responses.Codes.FromOldest() {
				if resp.Headers == nil || resp.Headers.GetOrZero("X-Request-Id") == nil {
					add("%s %s: no X-Request-Id header", at, code)
				}
				n, _ := strconv.Atoi(code)
				if n >= 400 && (resp.Content == nil || resp.Content.Len() != 1 || resp.Content.GetOrZero("application/problem+json") == nil) {
					add("%s %s: an error answers application/problem+json only", at, code)
				}
				if resp.Content != nil {
					for mt, media := range resp.Content.FromOldest() {
						compile(at+" "+code+" "+mt, media.Schema, schema_validation.SchemaValidationPurposeResponseBody)
					}
				}
			}
			if op.RequestBody != nil && op.RequestBody.Content != nil {
				for mt, media := range op.RequestBody.Content.FromOldest() {
					compile(at+" body "+mt, media.Schema, schema_validation.SchemaValidationPurposeRequestBody)
				}
			}
			params := slices.Concat(item.Parameters, op.Parameters)
			for _, p := range params {
				compile(at+" parameter "+p.Name, p.Schema, schema_validation.SchemaValidationPurposeGeneric)
			}
			if method == "patch" {
				i := slices.IndexFunc(params, func(p *v3.Parameter) bool { return p.In == "header" && p.Name == "If-Match" })
				if i < 0 || params[i].Required == nil || !*params[i].Required {
					add("%s: If-Match must be a required header parameter", at)
				}
				if op.RequestBody == nil || op.RequestBody.Content == nil ||
					op.RequestBody.Content.GetOrZero("application/json") == nil || op.RequestBody.Content.GetOrZero("application/merge-patch+json") == nil {
					add("%s: a PATCH takes application/json and application/merge-patch+json", at)
				}
			}
			for _, seg := range strings.Split(path, "/") {
				if name, ok := strings.CutPrefix(seg, "{"); ok {
					name = strings.TrimSuffix(name, "}")
					if !slices.ContainsFunc(params, func(p *v3.Parameter) bool { return p.In == "path" && p.Name == name }) {
						add("%s: path parameter %s is not declared", at, name)
					}
				}
			}
		}
	}
	return problems
}

// newDocument parses an OpenAPI document with libopenapi's defaults, but
// quietly: what it would log, building the model returns.
func newDocument(spec []byte) (libopenapi.Document, error) {
	cfg := datamodel.NewDocumentConfiguration()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return libopenapi.NewDocumentWithConfiguration(spec, cfg)
}

// walkRefs calls fn with every $ref in a decoded YAML or JSON tree.
func walkRefs(v any, at string, fn func(at, ref string)) {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			fn(at, ref)
		}
		for k, c := range v {
			walkRefs(c, at+"/"+k, fn)
		}
	case []any:
		for i, c := range v {
			walkRefs(c, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

// resolvePointer follows a JSON Pointer (RFC 6901) into a decoded tree.
func resolvePointer(v any, ptr string) (any, bool) {
	if ptr == "" {
		return v, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// extensionString is a scalar extension's value ("" if absent).
func extensionString(ext *orderedmap.Map[string, *pyaml.Node], name string) string {
	if ext == nil {
		return ""
	}
	if n := ext.GetOrZero(name); n != nil {
		return n.Value
	}
	return ""
}

// --- the document lists exactly the routes ---

func TestOpenAPIMatchesRoutes(t *testing.T) {
	// Construction must not touch the store: it has none here.
	api := New(Options{Logger: slog.New(slog.DiscardHandler)})
	routes := api.Routes()
	if len(routes) == 0 {
		t.Fatal("New(Options{}).Routes() is empty")
	}

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("the served document is not JSON: %v", err)
	}
	type docOp struct{ method, path, need string }
	ops := map[string]docOp{} // by operationId
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains([]string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}, method) {
				continue // parameters, summary, …
			}
			var op struct {
				ID   string `json:"operationId"`
				Need string `json:"x-gatehouse-need"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			m := strings.ToUpper(method)
			if prev, dup := ops[op.ID]; dup {
				t.Errorf("operationId %q is on %s %s and on %s %s", op.ID, prev.method, prev.path, m, path)
			}
			ops[op.ID] = docOp{m, path, op.Need}
		}
	}

	seen := map[string]bool{}
	for _, rt := range routes {
		if seen[rt.Operation] {
			t.Errorf("route %s %s: operation %s is another route's too", rt.Method, rt.Path, rt.Operation)
		}
		seen[rt.Operation] = true
		op, ok := ops[rt.Operation]
		if !ok {
			t.Errorf("route %s %s (%s) has no operation %q in openapi.yaml", rt.Method, rt.Path, rt.Operation, rt.Operation)
			continue
		}
		if op.method != rt.Method || op.path != rt.Path {
			t.Errorf("operation %s: openapi.yaml has %s %s, routes.go %s %s", rt.Operation, op.method, op.path, rt.Method, rt.Path)
		}
		if op.need != rt.Need.String() {
			t.Errorf("operation %s (%s %s): openapi.yaml says x-gatehouse-need %q, routes.go Need %q", rt.Operation, rt.Method, rt.Path, op.need, rt.Need.String())
		}
	}
	for id, op := range ops {
		if !seen[id] {
			t.Errorf("openapi.yaml's operation %s (%s %s) has no route in routes.go", id, op.method, op.path)
		}
	}
}

// --- responses match the document ---

// openAPISpec is openapi.yaml built for validating responses, once for
// the package's tests (building it takes a while).
type openAPISpec struct {
	model *v3.Document
	v     validator.Validator
	opts  *config.ValidationOptions
	lines schema_validation.SchemaValidator
	// mu serializes validations: parallel tests share the validator.
	mu sync.Mutex
}

var loadOpenAPISpec = sync.OnceValues(func() (*openAPISpec, error) {
	doc, err := newDocument(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	opts := []config.Option{
		// Timestamps are checked to be date-times, and so on.
		config.WithFormatAssertions(),
		// The audit export is JSON Lines: the body is the string the
		// schema describes; its lines are checked one by one below.
		config.WithBodyDecoder(jsonlType, content.DecoderFunc(func(in *content.DecodeInput) (any, error) {
			b, err := io.ReadAll(in.Body)
			return string(b), err
		})),
	}
	v := validator.NewValidatorFromV3Model(&model.Model, opts...)
	return &openAPISpec{model: &model.Model, v: v, opts: config.NewValidationOptions(opts...),
		lines: schema_validation.NewSchemaValidator(config.WithFormatAssertions())}, nil
})

// newResponseValidator returns a check of one API response against
// openapi.yaml, for the package's tests:
//
//	check := newResponseValidator(t)
//	…
//	check(t, req, resp, body)
//
// req is the request that got resp (it finds the operation: its method
// and URL path, /api/v1/…; its body is not read); body is resp's body,
// read already (resp.Body is not read). The check fails t (Errorf),
// naming the request and listing every difference, if the status is not
// one the operation documents, the content type is not the one
// documented for it, a documented header is missing or does not match,
// the body does not match its schema (each line of a JSON Lines body, its
// line schema), or a response documented without a body has one. A
// request no operation serves must have been answered 404 (unknown path)
// or 405 (known path, other method), as components.responses NotFound
// and MethodNotAllowed describe. The check is safe for parallel tests.
func newResponseValidator(t testing.TB) func(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	spec, err := loadOpenAPISpec()
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	return func(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
		t.Helper()
		if errs := spec.validateResponse(req, resp, body); len(errs) > 0 {
			const maxShown = 2000
			b := string(body)
			if len(b) > maxShown {
				b = b[:maxShown] + "…"
			}
			t.Errorf("%s %s answered %d (%s), which does not match openapi.yaml:\n  - %s\n  body: %s",
				req.Method, req.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), strings.Join(errs, "\n  - "), b)
		}
	}
}

// validateResponse lists how resp, answered to req with body, differs
// from the document; nil if it matches.
func (s *openAPISpec) validateResponse(req *http.Request, resp *http.Response, body []byte) []string {
	s.mu.Lock()
	defer s.mu.Unlock()

	// The validator reads the body: give it a fresh one, on a copy, so
	// that the caller's response is left as it was.
	r := *resp
	r.Header = resp.Header.Clone()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rq := req.Clone(req.Context())
	rq.Body = http.NoBody

	// A path the API does not serve answers 404, one it serves with
	// another method 405: answers of no operation, which match the
	// document's generic NotFound and MethodNotAllowed responses.
	item, _, _ := paths.FindPath(rq, s.model, s.opts)
	if item == nil || helpers.ExtractOperation(rq, item) == nil {
		generic := map[int]string{http.StatusNotFound: "NotFound", http.StatusMethodNotAllowed: "MethodNotAllowed"}[resp.StatusCode]
		if generic == "" || (item == nil) != (resp.StatusCode == http.StatusNotFound) {
			return []string{fmt.Sprintf("openapi.yaml has no operation %s %s (and %d is not the answer for an unserved path or method)",
				rq.Method, rq.URL.Path, resp.StatusCode)}
		}
		return s.validateGeneric(generic, &r, body)
	}

	var out []string
	if ok, errs := s.v.ValidateHttpResponse(rq, &r); !ok {
		for _, e := range errs {
			out = append(out, describeError(e))
		}
		if len(errs) == 0 {
			out = append(out, "the validator refuses it without saying why")
		}
	}

	// What the validator does not check: a body where none is documented,
	// and the lines of a JSON Lines body.
	op := helpers.ExtractOperation(rq, item)
	if op == nil || op.Responses == nil || op.Responses.Codes == nil {
		return out
	}
	doc := op.Responses.Codes.GetOrZero(strconv.Itoa(resp.StatusCode))
	if doc == nil {
		return out
	}
	if doc.Content == nil || doc.Content.Len() == 0 {
		if len(body) > 0 {
			out = append(out, fmt.Sprintf("%s's %d response has no body, but this one has %d bytes", op.OperationId, resp.StatusCode, len(body)))
		}
		return out
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	media := doc.Content.GetOrZero(mt)
	if media == nil || media.Extensions == nil {
		return out
	}
	if n := media.Extensions.GetOrZero(lineSchemaExt); n != nil {
		schema, err := s.lineSchema(n)
		if err != nil {
			return append(out, fmt.Sprintf("%s's %d %s: %v", op.OperationId, resp.StatusCode, mt, err))
		}
		for i, line := range bytes.Split(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if ok, errs := s.lines.ValidateSchemaBytesWithVersion(schema, line, oasVersion); !ok {
				for _, e := range errs {
					out = append(out, fmt.Sprintf("line %d: %s", i+1, describeError(e)))
				}
				if len(errs) == 0 {
					out = append(out, fmt.Sprintf("line %d does not match its schema", i+1))
				}
			}
		}
	}
	return out
}

// validateGeneric checks an answer of no operation against the
// document's components.responses[name]: its required headers, its
// content type and its body's schema.
func (s *openAPISpec) validateGeneric(name string, resp *http.Response, body []byte) []string {
	var out []string
	var doc *v3.Response
	if s.model.Components != nil && s.model.Components.Responses != nil {
		doc = s.model.Components.Responses.GetOrZero(name)
	}
	if doc == nil {
		return []string{"openapi.yaml has no components.responses." + name}
	}
	if doc.Headers != nil {
		for h, hd := range doc.Headers.FromOldest() {
			if hd.Required && resp.Header.Get(h) == "" {
				out = append(out, fmt.Sprintf("required header %s is missing (components.responses.%s)", h, name))
			}
		}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	media := (*v3.MediaType)(nil)
	if doc.Content != nil {
		media = doc.Content.GetOrZero(mt)
	}
	if media == nil || media.Schema == nil {
		return append(out, fmt.Sprintf("content type %q is not components.responses.%s's", resp.Header.Get("Content-Type"), name))
	}
	if ok, errs := s.lines.ValidateSchemaBytesWithVersion(media.Schema.Schema(), body, oasVersion); !ok {
		for _, e := range errs {
			out = append(out, fmt.Sprintf("components.responses.%s: %s", name, describeError(e)))
		}
		if len(errs) == 0 {
			out = append(out, fmt.Sprintf("the body does not match components.responses.%s", name))
		}
	}
	return out
}

// lineSchema is the component schema an x-gatehouse-line-schema names
// ({$ref: "#/components/schemas/…"}).
func (s *openAPISpec) lineSchema(n *pyaml.Node) (*base.Schema, error) {
	ref := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "$ref" {
			ref = n.Content[i+1].Value
		}
	}
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok || s.model.Components == nil || s.model.Components.Schemas == nil {
		return nil, fmt.Errorf("%s is not a $ref to a component schema", lineSchemaExt)
	}
	sp := s.model.Components.Schemas.GetOrZero(name)
	if sp == nil || sp.Schema() == nil {
		return nil, fmt.Errorf("%s: no schema %s", lineSchemaExt, name)
	}
	return sp.Schema(), nil
}

// describeError is one validation error for people: what, why, and each
// field at fault.
func describeError(e *liberrors.ValidationError) string {
	s := e.Message
	if e.Reason != "" && e.Reason != e.Message {
		s += ": " + e.Reason
	}
	if e.SpecLine > 1 {
		s += fmt.Sprintf(" (openapi.yaml line %d)", e.SpecLine)
	}
	for _, f := range e.SchemaValidationErrors {
		where := f.FieldPath
		if where == "" {
			where = "/" + strings.Join(f.InstancePath, "/")
		}
		s += "\n      " + where + ": " + f.Reason
		if f.KeywordLocation != "" {
			s += " [" + f.KeywordLocation + "]"
		}
	}
	return s
}

// --- the response check catches drift ---

// fakeTB records a check's failures instead of failing the test.
type fakeTB struct {
	testing.TB
	errs []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func TestResponseValidatorCatchesDrift(t *testing.T) {
	spec, err := loadOpenAPISpec()
	if err != nil {
		t.Fatal(err)
	}
	const (
		etag = `"0123456789abcdef01234567"`
		ts   = "2026-01-02T15:04:05.123456789Z"
	)
	org := map[string]any{
		"id": "org_acme", "slug": "acme", "name": "Acme", "email_domains": []string{"acme.example"},
		"connection": "password", "attributes": map[string]string{"tier": "gold"}, "managed_by": "api",
		"mfa": map[string]any{"require": "off", "after_idp": false, "factors": []string{}}, "session": map[string]string{}, "new_sign_in_alert": false,
		"created_at": ts, "updated_at": ts,
	}
	with := func(m map[string]any, set map[string]any, del ...string) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			if !slices.Contains(del, k) {
				out[k] = v
			}
		}
		for k, v := range set {
			out[k] = v
		}
		return out
	}
	problem := func(status int, code string) map[string]any {
		return map[string]any{"type": "urn:gatehouse:problem:" + code, "title": http.StatusText(status), "status": status,
			"detail": "x", "instance": "/api/v1/orgs/acme", "request_id": "0123456789abcdef"}
	}
	token := map[string]any{"id": "tok_aaaaaaaaaaaaaaaa", "org_id": "org_acme", "role": "auditor", "name": "ci",
		"created_by": "usr_x", "created_at": ts, "expires_at": ts}
	event := map[string]any{"id": "evt_1", "time": ts, "org_id": "org_acme", "actor": "user:usr_x", "action": "org.update",
		"target": "org_acme", "outcome": "success", "details": map[string]string{"via": "session"}, "seq": 1, "hash": "ab"}
	jsonl := func(events ...map[string]any) string {
		var b strings.Builder
		for _, e := range events {
			j, _ := json.Marshal(e)
			b.Write(j)
			b.WriteByte('\n')
		}
		return b.String()
	}

	type tc struct {
		name         string
		method, path string
		status       int
		header       map[string]string
		body         any // JSON-encoded unless a string
		// want: substrings the errors must mention; nil: must pass.
		want []string
	}
	jsonH := func(kv ...string) map[string]string {
		h := map[string]string{"Content-Type": "application/json", "X-Request-Id": "0123456789abcdef"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	problemH := map[string]string{"Content-Type": "application/problem+json", "X-Request-Id": "0123456789abcdef"}
	cases := []tc{
		{name: "getOrg ok", method: "GET", path: "/orgs/acme", status: 200, header: jsonH("ETag", etag), body: org},
		{name: "getOrg drift: a required field missing, an extra one", method: "GET", path: "/orgs/acme", status: 200,
			header: jsonH("ETag", etag), body: with(org, map[string]any{"color": "red"}, "name"), want: []string{"name", "color"}},
		{name: "getOrg drift: a bad timestamp", method: "GET", path: "/orgs/acme", status: 200,
			header: jsonH("ETag", etag), body: with(org, map[string]any{"updated_at": "yesterday"}), want: []string{"updated_at"}},
		{name: "getOrg drift: a wrong type", method: "GET", path: "/orgs/acme", status: 200,
			header: jsonH("ETag", etag), body: with(org, map[string]any{"email_domains": nil}), want: []string{"email_domains"}},
		{name: "getOrg drift: no ETag", method: "GET", path: "/orgs/acme", status: 200,
			header: jsonH(), body: org, want: []string{"ETag"}},
		{name: "getOrg drift: a weak ETag", method: "GET", path: "/orgs/acme", status: 200,
			header: jsonH("ETag", `W/"x"`), body: org, want: []string{"etag"}},
		{name: "getOrg drift: an undocumented status", method: "GET", path: "/orgs/acme", status: 409,
			header: problemH, body: problem(409, "exists"), want: []string{"409"}},
		{name: "getOrg drift: a problem as application/json", method: "GET", path: "/orgs/acme", status: 404,
			header: jsonH(), body: problem(404, "not-found"), want: []string{"application/json"}},
		{name: "getOrg 404 ok", method: "GET", path: "/orgs/acme", status: 404, header: problemH, body: problem(404, "not-found")},
		{name: "getOrg drift: a problem's status is not the answer's", method: "GET", path: "/orgs/acme", status: 404,
			header: problemH, body: problem(403, "not-found"), want: []string{"status"}},
		{name: "getOrg drift: a problem with an extra field", method: "GET", path: "/orgs/acme", status: 404,
			header: problemH, body: with(problem(404, "not-found"), map[string]any{"code": "not-found"}), want: []string{"code"}},
		{name: "getMe drift: 401 without WWW-Authenticate", method: "GET", path: "/me", status: 401,
			header: problemH, body: problem(401, "unauthenticated"), want: []string{"WWW-Authenticate"}},
		{name: "deleteOrg ok", method: "DELETE", path: "/orgs/acme", status: 204, header: map[string]string{"X-Request-Id": "x"}},
		{name: "deleteOrg drift: a 204 with a body", method: "DELETE", path: "/orgs/acme", status: 204,
			header: jsonH(), body: org, want: []string{"no body"}},
		{name: "deleteOrg drift: 200 instead of 204", method: "DELETE", path: "/orgs/acme", status: 200,
			header: jsonH(), body: org, want: []string{"200"}},
		{name: "createOrgToken ok", method: "POST", path: "/orgs/acme/tokens", status: 201,
			header: jsonH("Location", "/api/v1/orgs/org_acme/tokens/tok_aaaaaaaaaaaaaaaa"),
			body:   with(token, map[string]any{"secret": "ghat_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)})},
		{name: "createOrgToken drift: no secret", method: "POST", path: "/orgs/acme/tokens", status: 201,
			header: jsonH("Location", "/api/v1/orgs/org_acme/tokens/tok_aaaaaaaaaaaaaaaa"), body: token, want: []string{"secret"}},
		{name: "getOrgToken drift: a secret shown", method: "GET", path: "/orgs/acme/tokens/tok_aaaaaaaaaaaaaaaa", status: 200,
			header: jsonH(), body: with(token, map[string]any{"secret": "ghat_x"}), want: []string{"secret"}},
		{name: "exportAudit ok", method: "GET", path: "/orgs/acme/audit/export?action=org.update", status: 200,
			header: map[string]string{"Content-Type": "application/jsonl", "X-Request-Id": "x", "Content-Disposition": `attachment; filename="audit-acme.jsonl"`},
			body:   jsonl(event, with(event, nil, "org_id", "target", "details", "seq", "hash"))},
		{name: "exportAudit drift: a line off its schema", method: "GET", path: "/orgs/acme/audit/export", status: 200,
			header: map[string]string{"Content-Type": "application/jsonl", "X-Request-Id": "x", "Content-Disposition": `attachment; filename="audit-acme.jsonl"`},
			body:   jsonl(event, with(event, map[string]any{"extra": true}, "actor")), want: []string{"line 2", "actor", "extra"}},
		{name: "drift: an undocumented path", method: "GET", path: "/orgs/acme/widgets", status: 200,
			header: jsonH(), body: map[string]any{}, want: []string{"widgets"}},
		{name: "unserved path 404 ok", method: "GET", path: "/orgs/acme/widgets", status: 404,
			header: problemH, body: problem(404, "not-found")},
		{name: "unserved method 405 ok", method: "PUT", path: "/orgs/acme", status: 405,
			header: problemH, body: problem(405, "method-not-allowed")},
		{name: "drift: unserved method 405 off its schema", method: "PUT", path: "/orgs/acme", status: 405,
			header: problemH, body: with(problem(405, "not-found"), nil, "title"), want: []string{"title", "type"}},
		{name: "drift: 405 on an unserved path", method: "PUT", path: "/orgs/acme/widgets", status: 405,
			header: problemH, body: problem(405, "method-not-allowed"), want: []string{"no operation"}},
		{name: "drift: unserved path 404 without X-Request-Id", method: "GET", path: "/nope", status: 404,
			header: map[string]string{"Content-Type": "application/problem+json"}, body: problem(404, "not-found"), want: []string{"X-Request-Id"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			switch b := c.body.(type) {
			case nil:
			case string:
				body = []byte(b)
			default:
				body, _ = json.Marshal(b)
			}
			req := httptest.NewRequest(c.method, "http://127.0.0.1:1234"+Prefix+c.path, nil)
			resp := &http.Response{StatusCode: c.status, Header: http.Header{}, Request: req,
				Body: io.NopCloser(strings.NewReader("already read"))}
			for k, v := range c.header {
				resp.Header.Set(k, v)
			}

			errs := spec.validateResponse(req, resp, body)
			joined := strings.Join(errs, "\n")
			if c.want == nil {
				if len(errs) > 0 {
					t.Fatalf("a matching response is refused:\n%s", joined)
				}
			} else {
				if len(errs) == 0 {
					t.Fatal("the drift is not caught")
				}
				for _, w := range c.want {
					if !strings.Contains(strings.ToLower(joined), strings.ToLower(w)) {
						t.Errorf("the errors do not mention %q:\n%s", w, joined)
					}
				}
			}

			// The t-failing wrapper fails exactly when there are errors,
			// and says what and where.
			f := &fakeTB{}
			check := newResponseValidator(t)
			check(f, req, resp, body)
			if (len(f.errs) > 0) != (c.want != nil) {
				t.Errorf("the wrapper reported %d failures: %q", len(f.errs), f.errs)
			}
			if len(f.errs) > 0 && !strings.Contains(f.errs[0], c.method+" "+Prefix+strings.Split(c.path, "?")[0]) {
				t.Errorf("the failure does not name the request: %s", f.errs[0])
			}
			// The caller's response is left as it was.
			if rest, _ := io.ReadAll(resp.Body); string(rest) != "already read" {
				t.Errorf("the check consumed the caller's response body")
			}
		})
	}
}

// --- responses the API serves without a store ---

// TestOpenAPIServedResponses checks real answers that need no store: the
// document itself, 401 on every operation that needs credentials, and
// 405.
func TestOpenAPIServedResponses(t *testing.T) {
	api := New(Options{Logger: slog.New(slog.DiscardHandler)})
	check := newResponseValidator(t)
	serve := func(method, path string, header http.Header) (*http.Request, *http.Response, []byte) {
		req := httptest.NewRequest(method, "http://127.0.0.1:1234"+Prefix+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		resp := rec.Result()
		body, _ := io.ReadAll(resp.Body)
		return req, resp, body
	}
	fill := regexp.MustCompile(`\{[a-z]+\}`)

	req, resp, body := serve("GET", "/openapi.json", http.Header{"Authorization": {"Bearer nonsense"}})
	if resp.StatusCode != 200 || !bytes.Equal(body, OpenAPI) {
		t.Errorf("GET /openapi.json: %d, the document: %v", resp.StatusCode, bytes.Equal(body, OpenAPI))
	}
	check(t, req, resp, body)

	for _, rt := range api.Routes() {
		if rt.Need == NeedNone {
			continue
		}
		path := fill.ReplaceAllString(rt.Path, "x")
		for _, auth := range []string{"Bearer ghat_malformed", "Basic dXNlcjpwYXNz"} {
			req, resp, body := serve(rt.Method, path, http.Header{"Authorization": {auth}})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d, want 401", rt.Method, path, auth, resp.StatusCode)
			}
			check(t, req, resp, body)
		}
	}

	// Paths and methods the API does not serve answer the document's
	// generic NotFound and MethodNotAllowed.
	for _, c := range []struct {
		method, path string
		status       int
	}{{"GET", "/nope", 404}, {"PUT", "/orgs", 405}, {"POST", "/orgs/x", 405}} {
		req, resp, body := serve(c.method, c.path, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		check(t, req, resp, body)
	}
}

// --- the schemas are the Go types' JSON ---

// TestOpenAPISchemasMatchTypes holds each schema of the document to the
// Go type the API encodes (or decodes) it with: the same JSON names, of
// the same JSON types, and for responses the same required fields (those
// without omitempty or omitzero). A response field is caught here even if
// no test ever fills it.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	schemas, _ := resolvePointer(doc, "/components/schemas")
	byName, _ := schemas.(map[string]any)
	for _, c := range []struct {
		schema   string
		typ      reflect.Type
		response bool
	}{
		{"OrgView", reflect.TypeFor[OrgView](), true},
		{"OrgList", reflect.TypeFor[orgList](), true},
		{"UserView", reflect.TypeFor[UserView](), true},
		{"UserPage", reflect.TypeFor[userPage](), true},
		{"SessionView", reflect.TypeFor[SessionView](), true},
		{"SessionList", reflect.TypeFor[sessionList](), true},
		{"MeView", reflect.TypeFor[MeView](), true},
		{"TokenView", reflect.TypeFor[TokenView](), true},
		{"NewTokenView", reflect.TypeFor[NewTokenView](), true},
		{"TokenList", reflect.TypeFor[tokenList](), true},
		{"AuditEvent", reflect.TypeFor[store.AuditEvent](), true},
		{"AuditPage", reflect.TypeFor[auditPage](), true},
		{"WebhookView", reflect.TypeFor[WebhookView](), true},
		{"NewWebhookView", reflect.TypeFor[NewWebhookView](), true},
		{"WebhookSet", reflect.TypeFor[webhookSet](), false},
		{"PolicyView", reflect.TypeFor[PolicyView](), true},
		{"BrandingView", reflect.TypeFor[BrandingView](), true},
		{"BrandTexts", reflect.TypeFor[BrandTexts](), true},
		{"BrandColors", reflect.TypeFor[store.BrandColors](), false},
		{"BrandingPatch", reflect.TypeFor[brandingPatch](), false},
		{"ConnectionView", reflect.TypeFor[ConnectionView](), true},
		{"Endpoints", reflect.TypeFor[Endpoints](), true},
		// Both read and written: checked as a request (optional fields).
		{"Provisioning", reflect.TypeFor[store.Provisioning](), false},
		{"ClaimMapping", reflect.TypeFor[store.ClaimMapping](), false},
		{"ConnectionSet", reflect.TypeFor[connectionSet](), false},
		{"ConnectionTest", reflect.TypeFor[ConnectionTest](), true},
		{"KeyRotation", reflect.TypeFor[KeyRotation](), true},
		{"TemplateView", reflect.TypeFor[TemplateView](), true},
		{"TemplateList", reflect.TypeFor[templateList](), true},
		{"TemplateSet", reflect.TypeFor[templateSet](), false},
		{"TemplateSetView", reflect.TypeFor[TemplateSetView](), true},
		{"Rendered", reflect.TypeFor[Rendered](), true},
		{"DomainView", reflect.TypeFor[DomainView](), true},
		{"DNSRecord", reflect.TypeFor[DNSRecord](), true},
		{"DomainList", reflect.TypeFor[domainList](), true},
		{"DomainAdd", reflect.TypeFor[domainAdd](), false},
		{"PolicySet", reflect.TypeFor[policySet](), false},
		{"TestResult", reflect.TypeFor[policy.TestResult](), true},
		{"PolicyModule", reflect.TypeFor[store.PolicyModule](), true},
		{"Problem", reflect.TypeFor[problemBody](), true},
		{"FieldError", reflect.TypeFor[FieldError](), true},
		{"OrgCreate", reflect.TypeFor[orgCreate](), false},
		{"OrgPatch", reflect.TypeFor[orgPatch](), false},
		{"UserCreate", reflect.TypeFor[userCreate](), false},
		{"UserPatch", reflect.TypeFor[userPatch](), false},
		{"OrgTokenCreate", reflect.TypeFor[tokenCreate](), false},
		{"PlatformTokenCreate", reflect.TypeFor[tokenCreate](), false},
		{"OrgMFA", reflect.TypeFor[OrgMFA](), true},
		{"OrgSessionRules", reflect.TypeFor[OrgSessionRules](), true},
		{"ClientView", reflect.TypeFor[ClientView](), true},
		{"NewClientView", reflect.TypeFor[NewClientView](), true},
		{"ClientList", reflect.TypeFor[clientList](), true},
		{"ClientSpec", reflect.TypeFor[ClientSpec](), false},
		{"SecretRotate", reflect.TypeFor[secretRotate](), false},
	} {
		s, ok := byName[c.schema].(map[string]any)
		if !ok {
			t.Errorf("openapi.yaml has no schema %s (for %s)", c.schema, c.typ)
			continue
		}
		for _, p := range compareSchema(doc, s, c.typ, c.response) {
			t.Errorf("schema %s vs Go %s: %s", c.schema, c.typ, p)
		}
	}
}

// jsonField is one field as encoding/json sees it.
type jsonField struct {
	name     string
	typ      reflect.Type
	optional bool // omitempty or omitzero
}

// jsonFields lists t's JSON fields, embedded structs' included.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := slices.ContainsFunc(strings.Split(opts, ","), func(o string) bool { return o == "omitempty" || o == "omitzero" })
		out = append(out, jsonField{name, f.Type, optional})
	}
	return out
}

// compareSchema lists the differences between an object schema and a Go
// struct's JSON.
func compareSchema(doc, s map[string]any, t reflect.Type, response bool) []string {
	var out []string
	if s["type"] != "object" {
		out = append(out, fmt.Sprintf("type is %v, want object", s["type"]))
	}
	if response && s["additionalProperties"] != false {
		out = append(out, "a response object needs additionalProperties: false")
	}
	if !response && s["additionalProperties"] != false {
		out = append(out, "a request body refuses unknown fields: additionalProperties: false")
	}
	props, _ := s["properties"].(map[string]any)
	var required []string
	for _, r := range asSlice(s["required"]) {
		required = append(required, fmt.Sprint(r))
	}
	fields := jsonFields(t)
	for _, f := range fields {
		p, ok := props[f.name].(map[string]any)
		if !ok {
			out = append(out, fmt.Sprintf("field %s is not a property", f.name))
			continue
		}
		if want, got := jsonKind(f.typ), schemaKinds(doc, p); !slices.Contains(got, want) {
			out = append(out, fmt.Sprintf("property %s is %v, the Go field %s (%s)", f.name, got, want, f.typ))
		} else if extra := slices.DeleteFunc(slices.Clone(got), func(k string) bool { return k == want || k == "null" }); len(extra) > 0 {
			out = append(out, fmt.Sprintf("property %s may be %v, the Go field only %s", f.name, got, want))
		} else if slices.Contains(got, "null") && (response || !slices.Contains([]reflect.Kind{reflect.Pointer, reflect.Map, reflect.Slice}, f.typ.Kind()) && f.typ != reflect.TypeFor[optString]() && f.typ != reflect.TypeFor[json.RawMessage]()) {
			out = append(out, fmt.Sprintf("property %s may be null, but the Go field %s is never decoded from or encoded as null", f.name, f.typ))
		}
		if response && slices.Contains(required, f.name) == f.optional {
			if f.optional {
				out = append(out, fmt.Sprintf("property %s is required, but the Go field is omitempty/omitzero", f.name))
			} else {
				out = append(out, fmt.Sprintf("property %s is not required, but the Go field is always encoded", f.name))
			}
		}
	}
	for name := range props {
		if !slices.ContainsFunc(fields, func(f jsonField) bool { return f.name == name }) {
			out = append(out, fmt.Sprintf("property %s is no field of the Go type", name))
		}
	}
	for _, r := range required {
		if _, ok := props[r]; !ok {
			out = append(out, fmt.Sprintf("required %s is not a property", r))
		}
	}
	slices.Sort(out)
	return out
}

// jsonKind is the JSON Schema type a Go type encodes as.
func jsonKind(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Time]():
		return "date-time"
	case reflect.TypeFor[optString]():
		return "string" // a merge-patch string that may be null
	case reflect.TypeFor[json.RawMessage]():
		return "object" // settings: an object whose schema the protocol owns
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}

// schemaKinds are the JSON Schema types a property schema allows, after
// its $ref ("date-time" for a date-time string; "const" and "enum" count
// as strings when their values are).
func schemaKinds(doc, p map[string]any) []string {
	for range 8 {
		ref, ok := p["$ref"].(string)
		if !ok {
			break
		}
		target, _ := resolvePointer(doc, strings.TrimPrefix(ref, "#"))
		next, ok := target.(map[string]any)
		if !ok {
			return []string{"unresolved " + ref}
		}
		p = next
	}
	var kinds []string
	switch ty := p["type"].(type) {
	case string:
		kinds = []string{ty}
	case []any:
		for _, k := range ty {
			kinds = append(kinds, fmt.Sprint(k))
		}
	}
	if p["format"] == "date-time" {
		for i, k := range kinds {
			if k == "string" {
				kinds[i] = "date-time"
			}
		}
	}
	return kinds
}

func asSlice(v any) []any { s, _ := v.([]any); return s }
