package record

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// FieldError is one validation failure. Element is the canonical hyphenated
// element name; Message is the Rails-style full message Coupa returns, which
// always names the element ("Document type can't be blank").
type FieldError struct {
	Element string
	Message string
}

func (e FieldError) Error() string { return e.Message }

// Humanize turns "document-type" into "Document type", as Rails does for
// full error messages.
func Humanize(element string) string {
	s := strings.ReplaceAll(NormalizeKey(element), "-", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Blank builds the "can't be blank" error for element.
func Blank(element string) FieldError {
	return FieldError{element, Humanize(element) + " can't be blank"}
}

// TooLong builds the "is too long" error for element.
func TooLong(element string) FieldError {
	return FieldError{element, fmt.Sprintf("%s is too long (maximum is %d characters)", Humanize(element), MaxString)}
}

// NotInteger builds the "is not a number" error for element.
func NotInteger(element string) FieldError {
	return FieldError{element, Humanize(element) + " is not a number"}
}

// Validate checks a record about to be created: required elements, the
// document type list and the string(255) limits. It returns every failure,
// in element order, so one round trip tells the user all that is wrong.
func Validate(r *Record) []FieldError {
	var errs []FieldError
	if strings.TrimSpace(r.ContactAlertType) == "" {
		errs = append(errs, Blank("contact-alert-type"))
	}
	if r.DocumentID == nil {
		errs = append(errs, Blank("document-id"))
	}
	switch {
	case strings.TrimSpace(r.DocumentType) == "":
		errs = append(errs, Blank("document-type"))
	case !IsDocumentType(r.DocumentType):
		errs = append(errs, FieldError{"document-type", fmt.Sprintf("Document type %q is not a valid document type", r.DocumentType)})
	}
	return append(errs, ValidateLengths(r)...)
}

// ValidateLengths checks only the string(255) limits; updates use it, since
// they need no required elements.
func ValidateLengths(r *Record) []FieldError {
	var errs []FieldError
	for _, f := range []struct {
		element, value string
	}{
		{"contact-alert-type", r.ContactAlertType},
		{"creation-method", r.CreationMethod},
		{"document-status", r.DocumentStatus},
		{"document-type", r.DocumentType},
		{"external-id", r.ExternalID},
		{"integration-filename", r.IntegrationFilename},
		{"status", r.Status},
	} {
		if utf8.RuneCountInString(f.value) > MaxString {
			errs = append(errs, TooLong(f.element))
		}
	}
	for _, resp := range r.Responses {
		if utf8.RuneCountInString(resp.ResponseCode) > MaxString {
			errs = append(errs, TooLong("response-code"))
		}
	}
	return errs
}
