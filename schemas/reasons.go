package schemas

// Reasons are the DeadLetter.Reason values and the reason label of
// eyeflow_messages_failed_total: short, stable, snake_case, one name per
// cause whichever stage meets it. This is their one home; stages refer to
// these constants, never to literals.
const (
	// The runtime's own (package stage).

	// ReasonBadInput: the message could not be decoded as the stage's event.
	ReasonBadInput = "bad_input"
	// ReasonBadEvent: the event decoded but is not valid (schemas.ErrBadEvent).
	ReasonBadEvent = "bad_event"
	// ReasonPanic: the processor panicked on the message.
	ReasonPanic = "panic"
	// ReasonMaxDeliveries: every delivery failed with a transient error.
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonTransient labels a failure that is retried (a metric label,
	// never a dead letter's reason).
	ReasonTransient = "transient"

	// Objects.

	// ReasonBadKey: an object key the key policy refuses (traversal,
	// absolute, too long, not UTF-8, control characters), or a label that
	// cannot be a dataset folder.
	ReasonBadKey = "bad_key"
	// ReasonObjectMissing: the object an event names is gone.
	ReasonObjectMissing = "object_missing"
	// ReasonObjectChanged: the object was replaced after its event.
	ReasonObjectChanged = "object_changed"
	// ReasonEmpty: the object holds no bytes.
	ReasonEmpty = "empty"
	// ReasonTooLarge: the object, or the image its header declares, is
	// over the limit.
	ReasonTooLarge = "too_large"
	// ReasonNotAnImage: the bytes are not an image format eyeflow reads.
	ReasonNotAnImage = "not_an_image"
	// ReasonCorruptImage: an image that fails to decode (truncated, corrupt).
	ReasonCorruptImage = "corrupt_image"
	// ReasonUnsupportedImage: an image in an encoding eyeflow does not read,
	// e.g. a DICOM transfer syntax such as JPEG 2000, or 16-bit DICOM
	// pixels; the error names it.
	ReasonUnsupportedImage = "unsupported_image"

	// Events between stages.

	// ReasonBadResized: an eye.resized event the splitter cannot place.
	ReasonBadResized = "bad_resized"
	// ReasonBadPixels: inline pixels of the wrong size.
	ReasonBadPixels = "bad_pixels"
	// ReasonNoPixels: a split event with neither pixels nor a processed object.
	ReasonNoPixels = "no_pixels"
	// ReasonBadPrediction: a prediction that cannot be counted or labelled.
	ReasonBadPrediction = "bad_prediction"
	// ReasonBadRetrain: a retrain request that cannot become tasks.
	ReasonBadRetrain = "bad_retrain"
	// ReasonBadManifest: a retrain manifest the trainer cannot read.
	ReasonBadManifest = "bad_manifest"

	// Label Studio exports (labelsink).

	// ReasonBadExport: a file in the exports folder that is not a Label
	// Studio task or annotation.
	ReasonBadExport = "bad_export"
	// ReasonUnknownClass: an annotation choosing a class the model lacks.
	ReasonUnknownClass = "unknown_class"
	// ReasonEmptyAnnotation: no annotation, or one without a choice.
	ReasonEmptyAnnotation = "empty_annotation"
	// ReasonCancelledAnnotation: every annotation was cancelled (skipped).
	ReasonCancelledAnnotation = "cancelled_annotation"
	// ReasonConflictingAnnotations: annotations choosing different classes.
	ReasonConflictingAnnotations = "conflicting_annotations"
	// ReasonMissingSource: a task that does not name its source object.
	ReasonMissingSource = "missing_source"
)

// Reasons lists every reason, for documentation and tests.
func Reasons() []string {
	return []string{
		ReasonBadInput, ReasonBadEvent, ReasonPanic, ReasonMaxDeliveries, ReasonTransient,
		ReasonBadKey, ReasonObjectMissing, ReasonObjectChanged, ReasonEmpty, ReasonTooLarge, ReasonNotAnImage, ReasonCorruptImage,
		ReasonUnsupportedImage, ReasonBadResized, ReasonBadPixels, ReasonNoPixels, ReasonBadPrediction, ReasonBadRetrain, ReasonBadManifest,
		ReasonBadExport, ReasonUnknownClass, ReasonEmptyAnnotation, ReasonCancelledAnnotation, ReasonConflictingAnnotations, ReasonMissingSource,
	}
}
