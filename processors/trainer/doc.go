// Package trainer is the stage that makes eyeflow learn: it trains new model
// versions (bootstrap once the train split is big enough, every
// eye.retrain manifest_ready, eyeflow train), evaluates every candidate on
// the holdouts through the classifier's own inference path, and moves
// versions from staging to canary to prod by the promotion gate, rolling
// back a prod version that drifts and does worse on labelled feedback.
// Every step is an event on eye.models.
//
// Holdout roles: holdout_1 may be used by trainers for model selection,
// holdout_2 decides promotion, holdout_3 is reported only and never used for
// any decision.
package trainer
