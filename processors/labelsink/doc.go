// Package labelsink closes the loop from drift back into the dataset through
// Label Studio.
//
// Out: for every eye.retrain "requested" event (and, optionally, every
// prediction below Config.LowConfidence) it writes one Label Studio import
// task per image to the labelling bucket under tasks/<image-id>.json: the
// image as an s3:// URL (Config.ImageURL can produce presigned or HTTP URLs
// instead), the model's answer as a pre-annotation with its score, and meta
// with the image id, env, model version, alert id and event id. An image gets
// one task however often it is requested (a KV record plus the object itself
// are checked before writing). label_config.xml, the 15-class single-choice
// interface, is written beside the tasks at start. Label Studio does not
// notice new objects by itself, so with Config.LabelStudio set the sink
// calls POST <url>/api/storages/<type>/<id>/sync with "Authorization: Token
// <token>" after writing a request's tasks (until it succeeds once).
//
// In: Label Studio's target storage writes annotation JSON files into the
// same bucket under exports/. The sink lists that prefix every PollInterval
// through objstore.Store (so it works on the embedded JetStream object store
// and on S3 alike) and records processed files, by key and ETag, in the KV
// bucket eyeflow_labelsink, so a restart does not reprocess them and an
// updated annotation (same key, new content) is processed again. Both
// shapes Label Studio writes are read: an annotation with its task nested
// under "task", and a task with "annotations" (also a JSON array of such
// tasks, the project export). Each item is validated: an unknown class,
// no annotation or no choice, only cancelled (skipped) annotations,
// annotations that disagree, a task without its image, or a file that is
// not Label Studio JSON is published to eye.dlq.labelsink as a
// schemas.DeadLetter with that reason (Subject is the file's s3:// URL) and
// never retried. A valid label copies the image to raw/<class>/<image-id>.<ext>;
// that new object re-enters the pipeline through the normal upload event
// (the embedded watcher or MinIO's notification), and resize reads the class
// from the key, so the image lands in a split like any labelled upload.
//
// Manifests: once every image of a retrain event is labelled or rejected
// (or ManifestTimeout after the request), the sink writes
// retrain/<event-id>/manifest.jsonl (every object of the training split,
// processed/transformed_eye_dataset/train/<class>/..., plus the event's new
// labels, one JSON object per line with bucket, key, class, image id and
// origin) and publishes eye.retrain kind "manifest_ready" with the same
// event id and a Msg-Id derived from it.
//
// Why a poller rather than a stream: exports arrive as objects, not
// messages, and only MinIO could notify about them; the embedded object
// store cannot. Listing one prefix is cheap, works on every backend, and the
// KV record makes it exactly-once in effect. Retrain requests and
// predictions do arrive as messages and go through the stage runtime.
//
// # Label Studio setup
//
//  1. Create a project; paste labeling/label_config.xml as its labelling
//     interface (Settings > Labeling Interface > Code).
//  2. Add source storage: Amazon S3 (for MinIO set the S3 endpoint, e.g.
//     http://minio:9000), bucket "labeling", prefix "tasks/", file filter
//     ".*\.json", "Treat every bucket object as a source file" OFF (the
//     objects are task JSON), presigned URLs ON. s3://raw/... image URLs are
//     resolved through a storage with access to the raw bucket: add a
//     second source storage for bucket "raw" with no sync, or set
//     Config.ImageURL. Note its storage id (the URL of its edit form, or
//     GET /api/storages/s3?project=<id>).
//  3. Add target storage: Amazon S3, bucket "labeling", prefix "exports/".
//     Label Studio writes one JSON file per submitted annotation there.
//  4. Run the sink with --labelstudio-url, the token in
//     EYEFLOW_LABELSTUDIO_TOKEN or --labelstudio-token-file (a secret is
//     refused on the command line) and --labelstudio-storage-id.
package labelsink
