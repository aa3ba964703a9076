// Package objkey is the object-key policy: every place where a key becomes
// another key or a file path (resize's label, the splitter's dataset
// folders, labelsink's raw/<class>/<id>.<ext>, `eyeflow put`) checks it here,
// so a hostile key cannot climb out of its prefix in the object store or in
// a file-system copy of it (aws s3 sync, an ImageFolder checkout).
package objkey
