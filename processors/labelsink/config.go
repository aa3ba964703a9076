package labelsink

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
)

// KVBucket records tasks, retrain events, labels and processed export
// files: the bucket New is given. History 1, no TTL: a task's record must
// outlive any labelling backlog, or the image would get a second task.
const KVBucket = bus.KVLabelsink

// Config configures the sink. Start from DefaultConfig.
type Config struct {
	Store objstore.Store
	// Bucket is the labelling bucket; under it TasksPrefix holds the Label
	// Studio import tasks (its source storage), ExportsPrefix what Label
	// Studio's target storage writes, RetrainPrefix the manifests.
	Bucket        string
	TasksPrefix   string
	ExportsPrefix string
	RetrainPrefix string
	// RawBucket receives labelled images as <class>/<image-id>.<ext>.
	RawBucket string
	// DatasetBucket/TrainPrefix is the training split the splitter writes
	// (<prefix><class>/<file>); every object there goes into a manifest.
	DatasetBucket string
	TrainPrefix   string
	// Classes are the labels the interface offers and exports may carry.
	Classes []string
	// ImageURL turns an image into the URL a task shows. The default is
	// s3://bucket/key, which Label Studio resolves (and presigns) through a
	// source storage with credentials for that bucket.
	ImageURL func(schemas.ObjectRef) string
	// LowConfidence, when positive, makes HandlePrediction write a task for
	// every prediction below it.
	LowConfidence float64
	// LabelStudio, when URL is set, is synced after new tasks are written.
	LabelStudio LabelStudio
	// PollInterval is how often the export folder is listed;
	// ManifestTimeout how long a retrain event waits for all its labels
	// before its manifest is written with those that came back.
	PollInterval    time.Duration
	ManifestTimeout time.Duration
}

// LabelStudio is a Label Studio project's source storage to sync.
type LabelStudio struct {
	// URL is the server, e.g. http://label-studio:8080.
	URL string
	// Token is a user's API token (Account & Settings); sent as
	// "Authorization: Token <token>".
	Token string
	// StorageType is the import storage type in the API path: s3 (the
	// default, also for MinIO), gcs, azure, localfiles.
	StorageType string
	// StorageID is the import storage's id (Project > Settings > Cloud
	// Storage, or GET /api/storages/s3?project=<id>).
	StorageID int
	Client    *http.Client
}

// DefaultConfig is the sink without a store.
func DefaultConfig() Config {
	return Config{
		Bucket:          objstore.BucketLabeling,
		TasksPrefix:     "tasks/",
		ExportsPrefix:   "exports/",
		RetrainPrefix:   "retrain/",
		RawBucket:       objstore.BucketRaw,
		DatasetBucket:   objstore.BucketProcessed,
		TrainPrefix:     "transformed_eye_dataset/train/",
		Classes:         demodata.Classes(),
		LabelStudio:     LabelStudio{StorageType: "s3"},
		PollInterval:    10 * time.Second,
		ManifestTimeout: 24 * time.Hour,
	}
}

// Validate reports a configuration the sink cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("labelsink: an object store is required"))
	}
	for name, v := range map[string]string{"bucket": c.Bucket, "raw bucket": c.RawBucket,
		"tasks prefix": c.TasksPrefix, "exports prefix": c.ExportsPrefix, "retrain prefix": c.RetrainPrefix} {
		if v == "" {
			errs = append(errs, fmt.Errorf("labelsink: %s is required", name))
		}
	}
	if strings.HasPrefix(c.ExportsPrefix, c.TasksPrefix) || strings.HasPrefix(c.TasksPrefix, c.ExportsPrefix) {
		errs = append(errs, fmt.Errorf("labelsink: tasks prefix %q and exports prefix %q overlap: Label Studio would import its own exports", c.TasksPrefix, c.ExportsPrefix))
	}
	if len(c.Classes) < 2 {
		errs = append(errs, errors.New("labelsink: at least two classes are required"))
	}
	for _, cl := range c.Classes {
		// A class becomes the folder of raw/<class>/<id>.<ext>.
		if err := objkey.Class(cl); err != nil {
			errs = append(errs, fmt.Errorf("labelsink: class: %w", err))
		}
	}
	if c.PollInterval <= 0 || c.ManifestTimeout <= 0 {
		errs = append(errs, errors.New("labelsink: poll interval and manifest timeout must be positive"))
	}
	if c.LowConfidence < 0 || c.LowConfidence > 1 {
		errs = append(errs, fmt.Errorf("labelsink: low confidence %v: must be in [0, 1]", c.LowConfidence))
	}
	if c.LabelStudio.URL != "" {
		u, err := url.Parse(c.LabelStudio.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("labelsink: Label Studio URL %q: want http(s)://host[:port]", c.LabelStudio.URL))
		}
		if c.LabelStudio.Token == "" || c.LabelStudio.StorageID < 1 {
			errs = append(errs, errors.New("labelsink: a Label Studio URL needs a token and a storage id"))
		}
	}
	return errors.Join(errs...)
}
