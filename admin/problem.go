package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Problem is an RFC 9457 problem details answer. Code names the kind of
// problem (its type is "urn:gatehouse:problem:" + Code); Errors point at
// the fields at fault, as JSON Pointers into the request body.
type Problem struct {
	Status int          `json:"status"`
	Code   string       `json:"-"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
	cause  error
}

// FieldError is one field at fault.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail)
	for _, e := range p.Errors {
		s += "; " + e.Pointer + ": " + e.Detail
	}
	return s
}

type problemBody struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	body := problemBody{Type: "urn:gatehouse:problem:" + p.Code, Title: http.StatusText(p.Status), Status: p.Status,
		Detail: p.Detail, Instance: r.URL.EscapedPath(), RequestID: requestID(r), Errors: p.Errors}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/problem+json")
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

func notFound(what string) *Problem {
	return &Problem{Status: http.StatusNotFound, Code: "not-found", Detail: "No such " + what + "."}
}

func forbidden(detail string) *Problem {
	return &Problem{Status: http.StatusForbidden, Code: "forbidden", Detail: detail}
}

func conflict(code, detail string) *Problem {
	return &Problem{Status: http.StatusConflict, Code: code, Detail: detail}
}

// invalid is a 400 with the fields at fault.
func invalid(errs ...FieldError) *Problem {
	detail := "The request has invalid fields."
	if len(errs) == 1 {
		detail = errs[0].Pointer + ": " + errs[0].Detail
	}
	return &Problem{Status: http.StatusBadRequest, Code: "invalid", Detail: detail, Errors: errs}
}

func field(pointer, format string, a ...any) FieldError {
	return FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, a...)}
}

// fields collects field errors; err is nil if there are none.
type fields []FieldError

func (f *fields) add(pointer, format string, a ...any) { *f = append(*f, field(pointer, format, a...)) }

func (f fields) err() error {
	if len(f) == 0 {
		return nil
	}
	return invalid(f...)
}

// decode reads a JSON object body into v: at most maxBody bytes (413),
// JSON or JSON merge patch (415), no unknown fields, no trailing data,
// every type error with its field (400).
func (c *call) decode(v any) error {
	b, err := c.body()
	if err != nil {
		return err
	}
	return decodeJSON(b, v)
}

// body reads the request body as decode does, without parsing it.
func (c *call) body() ([]byte, error) {
	ct := c.r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && (mt != "application/merge-patch+json" || c.r.Method != http.MethodPatch)) {
		return nil, &Problem{Status: http.StatusUnsupportedMediaType, Code: "unsupported-media-type",
			Detail: "Send the body as application/json (or application/merge-patch+json for PATCH)."}
	}
	body := http.MaxBytesReader(c.w, c.r.Body, maxBody)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Problem{Status: http.StatusRequestEntityTooLarge, Code: "too-large", Detail: "The body is larger than " + strconv.Itoa(maxBody) + " bytes."}
		}
		return nil, &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body could not be read."}
	}
	return b, nil
}

// decodeJSON is decode's parser (fuzzed: it must never panic and must
// refuse anything but one JSON object of v's fields).
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body has data after its JSON object."}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body has data after its JSON object."}
	}
	return nil
}

func jsonProblem(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: fmt.Sprintf("The body is not valid JSON (at byte %d).", syn.Offset)}
	case errors.As(err, &typ):
		ptr := "/" + strings.ReplaceAll(typ.Field, ".", "/")
		if typ.Field == "" {
			return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body must be a JSON object."}
		}
		return invalid(field(ptr, "must be %s, not %s", jsonType(typ.Type.Kind().String()), typ.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body is empty or cut short."}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return invalid(field("/"+name, "is not a field of this object"))
	}
	return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body could not be decoded: " + err.Error()}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "int", "int64", "uint", "uint64", "float64":
		return "a number"
	}
	return kind
}
