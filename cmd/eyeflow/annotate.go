package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"eyeflow/demodata"
	"eyeflow/objstore"
	"eyeflow/processors/labelsink"
)

// runDemoAnnotate is `eyeflow demo-annotate`: the demo's stand-in for a
// person labelling in Label Studio. It answers every task labelsink wrote
// under labeling/tasks/ with the true class (from a shifted batch's answer
// key, or the <class>/ folder of a labelled upload) and writes the
// annotation where Label Studio's target storage would, labeling/exports/,
// in Label Studio's own JSON, so labelsink reads it through its real export
// reader.
func runDemoAnnotate(ctx context.Context, args []string, out, errOut io.Writer) error {
	var sc storeClient
	var answers string
	var wait time.Duration
	fs := newFlagSet("demo-annotate", "", "Answers the Label Studio tasks in labeling/tasks/ with the true classes of the demo's images and writes\n"+
		"each annotation into labeling/exports/ as Label Studio's target storage does (the demo's annotator).", out, errOut)
	sc.register(fs)
	fs.stringVar(&answers, "answers", "", "answer key of a shifted batch (eyeflow demo-data --shift writes it)")
	fs.durationVar(&wait, "wait", 0, "keep answering new tasks until none arrived for this long (0: one pass)")
	if err := fs.parse(args, sc.validate); err != nil {
		return err
	}
	key := map[string]string{}
	if answers != "" {
		b, err := os.ReadFile(answers)
		if err != nil {
			return fmt.Errorf("demo-annotate: --answers: %w", err)
		}
		if err := json.Unmarshal(b, &key); err != nil {
			return fmt.Errorf("demo-annotate: --answers %s: %w", answers, err)
		}
	}
	store, closeFn, err := sc.open(ctx, "demo-annotate", errOut)
	if err != nil {
		return err
	}
	defer closeFn()
	cfg := labelsink.DefaultConfig()
	classes := map[string]bool{}
	for _, c := range demodata.Classes() {
		classes[c] = true
	}
	done := map[string]bool{}
	total, unknown := 0, 0
	last := time.Now()
	for {
		n := 0
		for info, err := range store.List(ctx, cfg.Bucket, cfg.TasksPrefix) {
			if err != nil {
				return fmt.Errorf("demo-annotate: list tasks: %w", err)
			}
			if done[info.Key] || !strings.HasSuffix(info.Key, ".json") {
				continue
			}
			done[info.Key] = true
			task, err := readTask(ctx, store, cfg.Bucket, info.Key)
			if err != nil {
				return err
			}
			class := key[path.Base(task.Meta.SourceKey)]
			if dir := path.Dir(task.Meta.SourceKey); class == "" && classes[path.Base(dir)] {
				class = path.Base(dir)
			}
			if class == "" {
				unknown++
				continue
			}
			b, err := json.Marshal(map[string]any{
				"id": total + 1, "was_cancelled": false, "ground_truth": false, "lead_time": 4.2,
				"result": []labelsink.ChoiceResult{{ID: "demo", FromName: labelsink.ChoicesTag, ToName: labelsink.ImageTag, Type: "choices",
					Origin: "manual", Value: labelsink.ChoiceValue{Choices: []string{class}}}},
				"completed_by": map[string]any{"id": 1, "email": "demo-annotator@eyeflow.invalid"},
				"task":         map[string]any{"id": total + 1, "data": task.Data, "meta": task.Meta, "is_labeled": true},
				"created_at":   time.Now().UTC().Format(time.RFC3339),
			})
			if err != nil {
				return err
			}
			dst := cfg.ExportsPrefix + "demo-" + task.Meta.ImageID + ".json"
			if _, err := store.Put(ctx, cfg.Bucket, dst, strings.NewReader(string(b)), int64(len(b)), objstore.PutOptions{ContentType: "application/json"}); err != nil {
				return fmt.Errorf("demo-annotate: write %s: %w", dst, err)
			}
			n++
			total++
		}
		if n > 0 {
			last = time.Now()
			fmt.Fprintf(errOut, "\rannotated %d tasks", total)
		}
		if wait <= 0 || time.Since(last) >= wait {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintf(out, "\rannotated %d tasks (%d without a known class left for a person)\n", total, unknown)
	return nil
}

func readTask(ctx context.Context, store objstore.Store, bucket, key string) (labelsink.Task, error) {
	rc, _, err := store.Get(ctx, bucket, key)
	if err != nil {
		return labelsink.Task{}, fmt.Errorf("demo-annotate: read %s: %w", key, err)
	}
	defer rc.Close()
	var t labelsink.Task
	if err := json.NewDecoder(rc).Decode(&t); err != nil {
		return labelsink.Task{}, fmt.Errorf("demo-annotate: %s is not a task: %w", key, errors.Unwrap(err))
	}
	return t, nil
}
