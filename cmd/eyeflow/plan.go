package main

import (
	"fmt"
	"strings"

	"eyeflow/internal/machine"
	"eyeflow/processors/classifier"

	"github.com/rs/zerolog"
)

// logPlan writes `eyeflow up`'s plan: the machine it sized itself for and
// every concurrency, thread and run count it resolved from it (flags that
// were given win). Driftwatch and the trainer take one message at a time
// by design (stream order), so they are not part of it.
func (f *upFlags) logPlan(log zerolog.Logger) {
	m := machine.Detect()
	ev := log.Info().Int("cores", m.Cores).Int64("memory_mib", m.Memory>>20).Str("processors", f.processors)
	ev = ev.Int("resize_concurrency", f.resize.resolvedConcurrency())
	if cfg, err := f.split.config(); err == nil {
		ev = ev.Int("splitter_concurrency", cfg.Concurrency)
	}
	ev = ev.Int("io_concurrency", m.IOConcurrency())
	if cp, err := f.classifier.config().Plan(); err == nil {
		ev = ev.Str("classifier_device", f.classifier.rt.parsedDevice.String()).
			Str("classifier_plan", planString(cp)).
			Int("classifier_max_batch", cp.MaxBatch).
			Int("classifier_nice", f.classifier.rt.nice).
			Int("classifier_stage_concurrency", cp.Concurrency).
			Str("classifier_envs", strings.Join(cp.Envs, ","))
	}
	ev.Msg("plan")
}

// planString is THREADSxRUNS per env, as bench/classifier names them.
func planString(p classifier.Plan) string {
	return fmt.Sprintf("%dx%d", p.Threads, p.Runs)
}
