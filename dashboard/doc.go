// Package dashboard is eyeflow's read-only web dashboard and the data
// behind `eyeflow status`.
//
// It is served by the eyeflow binary on the same HTTP port as /metrics:
// `eyeflow up` mounts it, and `eyeflow dashboard` runs it alone against a
// NATS cluster and S3 store (compose.yaml). Every page is rendered on the
// server with html/template from files embedded in the binary; the only
// JavaScript is a small EventSource client that adds live predictions to a
// table the server already filled, so every page works without it. Nothing
// is loaded from a CDN, and a Content-Security-Policy of 'self' holds the
// pages to that.
//
// Pages:
//
//   - Dataset: per split, image counts per class (a table with the numbers
//     written out and a patterned bar beside each), and sample thumbnails
//     per class with an "images per class" control. Counts come from
//     splitter.Report, i.e. from listing the processed bucket, so they show
//     what training would read. Thumbnails are streamed from the bucket by a
//     handler that only accepts keys of the dataset layout.
//   - Pipeline: per stage the throughput (the runtime's
//     eyeflow_messages_processed_total counters), the consumers' lag, ack
//     pending and redeliveries (JetStream consumer info), dead letters per
//     stage with the latest reasons (the last messages of EYE_DLQ), stream
//     sizes, and a live predictions feed (server-sent events from a core NATS
//     subscription on eye.predictions.>, bounded per client).
//   - Models: per env the served model (KV eyeflow_models), drift state (KV
//     eyeflow_driftwatch) and recent alerts (EYE_DRIFT); per env and model
//     version the accuracy on each holdout and a confusion matrix.
//   - Label: labelsink's open tasks in Label Studio's own editor (its
//     prebuilt bundle, served from LabelOptions.BundleDir), one at a time
//     with the model's prediction pre-selected. Submit, allowed only to a
//     signed-in annotator, writes the annotation into the labelling bucket
//     in Label Studio's export format where its target storage writes, so
//     labelsink reads it through the same code (labelsink.ParseExport).
//     This page is the dashboard's one write; its CSP allows the editor's
//     inline styles and data:/blob: images, scripts stay 'self'.
//
// Accuracy and confusion matrices are computed on the page request from the
// last Window messages of EYE_PREDICTIONS, read with an ordered consumer and
// cached for a few seconds. That keeps the dashboard stateless (a restart or
// a second replica shows the same numbers, nothing to warm up), bounds the
// work per request, and reads the stream that is the source of truth rather
// than a subscription that misses what happened while the dashboard was
// down. The price is one bounded stream read per cache period.
//
// An optional bearer token protects every dashboard route (a read-only
// viewer's); annotators have a token each (LabelOptions.Annotators); a browser logs in
// once (/dashboard/login?token=...) and gets a cookie derived from the token.
// /metrics, /healthz and /readyz are not part of the dashboard and stay open.
package dashboard
