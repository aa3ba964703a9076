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
	// Decoding an upload: one rule per reason, applied by one function
	// (imaging.Reason, from the imaging package's typed errors):
	//   - not_an_image: the bytes are no image at all: no image format is
	//     recognised (text, random bytes), or a DICOM object holds no pixels;
	//   - unsupported_image: a recognised image eyeflow does not decode: a
	//     format it does not read (GIF, BMP, JPEG 2000, HEIF, ...) or an
	//     encoding or feature of one it reads (a DICOM transfer syntax such
	//     as JPEG-LS, 16-bit DICOM pixels, arithmetic-coded JPEG, a TIFF
	//     compression the decoder lacks); the error names it;
	//   - corrupt_image: a recognised, supported format whose data fails to
	//     decode (truncated, malformed);
	//   - too_large (above): the header declares more pixels than the limit.

	// ReasonNotAnImage: the bytes are no image at all.
	ReasonNotAnImage = "not_an_image"
	// ReasonCorruptImage: a supported image format that fails to decode.
	ReasonCorruptImage = "corrupt_image"
	// ReasonUnsupportedImage: a recognised image eyeflow does not decode.
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
