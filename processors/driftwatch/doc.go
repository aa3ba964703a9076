// Package driftwatch watches eye.predictions.<env> for signs that a model no
// longer fits its traffic and says so on eye.drift.<env> (schemas.DriftAlert).
// Every signal is tracked per (env, model version) and is edge-triggered: one
// "firing" event when it starts, nothing while it lasts, one "resolved" event
// (same alert_id) when it ends.
//
// # Signals
//
// low_confidence_streak, the operators' rule: Config.Count (default 5)
// consecutive predictions, in stream order, with a confidence below
// Config.Threshold (default 0.5). The firing event carries the streak's image
// ids, confidences and time span (from/to are the predictions' times); the
// first prediction at or above the threshold resolves it. Firing also
// publishes one eye.retrain event (kind "requested") with the streak's images
// as samples and their predictions, for labelsink to turn into labelling
// tasks. Gauge: drift_alert{env,model_version}.
//
// entropy_ks: the Shannon entropy of each prediction's top-k probabilities
// (the mass outside top-k counted as one more outcome). Predictions on the
// holdout splits (holdout_1..3) of the same env and model version form the
// reference: a ring of the last KSConfig.Reference (default 1000) entropies.
// Live predictions (split unlabeled or none) are collected in tumbling
// windows of KSConfig.Window (default 200); each full window is compared with
// the reference by a two-sample Kolmogorov-Smirnov test once the reference
// holds KSConfig.MinReference (default 100). Fires at p < KSConfig.PValue
// (default 0.01), resolves on the next window at or above it. Gauges:
// drift_entropy_ks_alert and drift_entropy_ks_p_value.
//
// class_chi2: the predicted classes of live predictions, counted in tumbling
// windows of Chi2Config.Window (default 200), against the class distribution
// of the training split with a chi-square goodness-of-fit test (df = classes
// - 1). The training distribution is Chi2Config.TrainDistribution when
// configured (counts or proportions per class: the authoritative choice when
// the dataset report is at hand); otherwise it is learnt from the stream, as
// the true labels of predictions on the train split of the same env and
// model version, used once Chi2Config.MinTrain (default 100) are seen. That
// default needs no configuration and follows the model version, since the
// classifier predicts on train images too. Expected shares get a small
// pseudo-proportion (Chi2Config.Smoothing, 1e-3) so that a class absent from
// training is a large but finite contribution. Fires at p < Chi2Config.PValue
// (default 0.01). Gauges: drift_class_chi2_alert and drift_class_chi2_p_value.
//
// Tumbling rather than sliding windows keep each test independent: on a
// stable stream a window alerts with probability PValue, not the much larger
// family-wise rate of re-testing every overlapping window. The price is up to
// one window of detection delay.
//
// The p-values are computed here with the standard library only: the
// Kolmogorov distribution's series (two forms, for small and large lambda)
// with Stephens' effective-size correction, and the regularized incomplete
// gamma function (series and Lentz continued fraction) for chi-square.
//
// # State, restarts and redeliveries
//
// The state of each (env, model version) — the streak, the reference, the
// open windows, the alerts, and the stream sequence of the last counted
// prediction — is one JSON entry in the KV bucket eyeflow_driftwatch
// (KVBucket, handed to New), written with compare-and-set after every
// prediction. A watcher killed mid-streak continues from the stored streak.
// A prediction whose sequence is at or below the stored one was counted
// already and is not counted again; at exactly the stored sequence (the
// process died after saving and before its events were stored) the saved
// events are published again under the same Msg-Ids, which JetStream's
// duplicate window drops if they were stored after all.
//
// Stream order needs the consumer to deliver one prediction at a time:
// the stage runs with concurrency 1, and the topology gives the driftwatch
// consumer MaxAckPending 1 (the catalogue, package pipeline), so a prediction retried after a
// transient failure is not overtaken by later ones (which would make it look
// like a redelivery and skip it).
package driftwatch
