package stage

import (
	"errors"
	"fmt"

	"eyeflow/schemas"
)

// PermanentError marks bad input: retrying cannot help, so the runtime
// dead-letters the message at once with Reason.
type PermanentError struct {
	// Reason is a short, stable label for metrics and dead letters: one
	// of the schemas.Reason* constants.
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as bad input with a reason label.
func Permanent(reason string, err error) error {
	if err == nil {
		err = errors.New(reason)
	}
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error.
func Permanentf(reason, format string, args ...any) error {
	return Permanent(reason, fmt.Errorf(format, args...))
}

// permanentReason reports whether err is permanent, and why.
func permanentReason(err error) (string, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	if errors.Is(err, schemas.ErrBadEvent) {
		return schemas.ReasonBadEvent, true
	}
	return "", false
}
