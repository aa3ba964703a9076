package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"eyeflow/ingest"
	"eyeflow/schemas"
)

// defaultLedgerWait is how long a reconcile pass waits for the upload
// ledger to catch up with the stream before it lists the bucket.
const defaultLedgerWait = time.Minute

// runIngest is the ingest process of a deployment with an S3 store
// (compose.yaml's ingest service): the upload ledger, which records every
// eye.uploads event whoever published it (MinIO's notifications above
// all), and the reconciler, which publishes events only for the objects
// the ledger lacks. Without the ledger the reconciler would re-announce
// every object MinIO had already announced, and the ledger consumer's lag
// would grow forever.
func runIngest(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var interval, grace, ledgerWait time.Duration
	fs := newFlagSet("ingest", "", "Runs ingest beside an S3 store: the upload ledger, which records every eye.uploads event (MinIO's\n"+
		"notifications included), and the reconciler, which lists the raw bucket every --reconcile-interval and publishes\n"+
		"events only for objects the ledger lacks (notifications lost while NATS was down, stores that cannot notify).", out, errOut)
	s.register(fs)
	fs.durationVar(&interval, "reconcile-interval", 5*time.Minute, "how often the reconciler lists the raw bucket (0: only at start)")
	fs.durationVar(&grace, "grace", time.Minute, "leave objects younger than this to their notification")
	fs.durationVar(&ledgerWait, "ledger-wait", defaultLedgerWait, "before each pass, wait up to this long for the ledger to record every event in the stream; a pass still behind is skipped (0: do not wait)")
	if err := fs.parse(args, s.validate, func() error {
		if interval < 0 || grace < 0 || ledgerWait < 0 {
			return fmt.Errorf("--reconcile-interval, --grace and --ledger-wait must not be negative")
		}
		return nil
	}); err != nil {
		return err
	}
	return s.run(ctx, "ingest", errOut, stageNeeds(schemas.StageIngest, nil), func(e standaloneEnv) ([]task, error) {
		rec, err := newReconciler(ctx, e, grace, ledgerWait)
		if err != nil {
			return nil, err
		}
		ledger, err := openLedger(ctx, e.js)
		if err != nil {
			return nil, err
		}
		return []task{
			stageTask(e.js, ingest.LedgerProcessor(ledger, e.p.log, e.p.metrics)),
			{name: "reconciler", run: func(ctx context.Context) error {
				if interval <= 0 {
					res, err := rec.Once(ctx)
					if err == nil {
						e.p.log.Info().Int("listed", res.Listed).Int("published", res.Published).Int("recent", res.Recent).Msg("reconcile pass (the only one: --reconcile-interval 0)")
					}
					return err
				}
				rec.Run(ctx, interval)
				return nil
			}},
		}, nil
	})
}
