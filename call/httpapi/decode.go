package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// readBody reads a request body of at most MaxBodyBytes: a larger one is a
// 413 request error.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, &requestError{status: http.StatusRequestEntityTooLarge,
				detail: fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)}
		}
		return nil, invalid("", "reading the request body: %v", err)
	}
	return body, nil
}

// fields describes a JSON object's members: a nil value is a leaf, a
// non-nil one the members of a nested object. It only serves to name an
// unknown member with its full path.
type fields map[string]fields

// decode decodes a JSON object into v (a pointer to a struct), rejecting
// members v has no field for and anything after the object. Errors are
// request errors naming the field: "call_id: want integer, got string",
// "agent.nickname: unknown field".
func decode(body []byte, v any, schema fields) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, body, schema)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "malformed JSON: more data after the object")
	}
	return nil
}

func decodeError(err error, body []byte, schema fields) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return invalid("", "the body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "malformed JSON: unexpected end of the body")
	case errors.As(err, &syntax):
		return invalid("", "malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid("", "want a JSON object, got %s", typ.Value)
		}
		return invalid(typ.Field, "want %s, got %s", jsonKind(typ.Type), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return invalid(unknownPath(body, schema, name), "unknown field")
	}
	return invalid("", "malformed JSON: %v", err)
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	default:
		return "object"
	}
}

// unknownPath finds where in body the unknown member name is, as a dotted
// path ("agent.nickname"); name itself when it cannot tell.
func unknownPath(body []byte, schema fields, name string) string {
	if path, ok := findUnknown(body, schema, name, ""); ok {
		return path
	}
	return name
}

func findUnknown(raw []byte, schema fields, name, prefix string) (string, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	keys := slices.Sorted(maps.Keys(obj))
	for _, key := range keys {
		sub, ok := member(schema, key)
		switch {
		case !ok && key == name:
			return prefix + key, true
		case sub != nil:
			if path, ok := findUnknown(obj[key], sub, name, prefix+key+"."); ok {
				return path, true
			}
		}
	}
	return "", false
}

// member looks name up in schema as encoding/json matches keys
// (case-insensitively).
func member(schema fields, name string) (fields, bool) {
	if sub, ok := schema[name]; ok {
		return sub, true
	}
	for k, sub := range schema {
		if strings.EqualFold(k, name) {
			return sub, true
		}
	}
	return nil, false
}
