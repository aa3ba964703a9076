package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"eyeflow/dashboard"
	"eyeflow/security/natsauth"

	"github.com/nats-io/nats.go"
)

// runStatus is `eyeflow status`: the pipeline as JetStream sees it, for a
// terminal or (--json) a script. It reads only; it never creates anything.
func runStatus(ctx context.Context, args []string, out, errOut io.Writer) error {
	var n natsFlags
	var asJSON bool
	var timeout time.Duration
	o := dashboard.DefaultCollectOptions()
	fs := newFlagSet("status", "", "Prints every stream (messages, bytes), durable consumer (pending, ack pending, redelivered),\n"+
		"dead letters per stage with every reason and its count, per env the served model (and a promoted one the\n"+
		"classifier refused, with the reason) and drift state. Needs a NATS user that may read every stream (admin).", out, errOut)
	n.register(fs, defaultNATS(), natsClientUsage)
	fs.boolVar(&asJSON, "json", false, "print one JSON object (the dashboard's /dashboard/api/status)")
	fs.intVar(&o.RecentAlerts, "alerts", 5, "latest drift alerts to show")
	fs.durationVar(&timeout, "timeout", 30*time.Second, "give up when JetStream has not answered within this long")
	if err := fs.parse(args, n.validate, func() error {
		if o.RecentAlerts < 0 {
			return fmt.Errorf("--alerts %d: must not be negative", o.RecentAlerts)
		}
		if timeout <= 0 {
			return fmt.Errorf("--timeout %s: must be positive", timeout)
		}
		return nil
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("JetStream at %s did not answer within %s (--timeout)", redactURL(n.url), timeout))
	defer cancel()
	// A user without the permissions gets no answer to a denied request,
	// only an asynchronous error: end at once with it rather than wait.
	ctx, deny := context.WithCancelCause(ctx)
	defer deny(nil)
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			who := "this NATS user"
			if n.user != "" {
				who = "NATS user " + n.user
			}
			deny(fmt.Errorf("%s may not read the pipeline's state (%v): status needs the admin user (--nats-user %s)", who, err, natsauth.UserName(natsauth.RoleAdmin)))
		}
	})
	nc, js, err := n.dial(n.url, "eyeflow-status", nopLogger(), onErr)
	if err != nil {
		return err
	}
	defer nc.Close()
	snap, err := dashboard.Collect(ctx, js, o)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return fmt.Errorf("status: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(snap); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		return nil
	}
	return writeStatus(out, snap)
}

// writeStatus prints the snapshot as aligned tables.
func writeStatus(w io.Writer, s dashboard.Snapshot) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "STREAM\tMESSAGES\tBYTES\tFIRST\tLAST\tCONSUMERS\n")
	for _, st := range s.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", st.Name, st.Messages, st.Bytes, st.FirstSeq, st.LastSeq, st.Consumers)
	}
	fmt.Fprintf(tw, "\nCONSUMER\tSTREAM\tSTAGE\tPENDING\tACK PENDING\tREDELIVERED\n")
	for _, c := range s.Consumers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", c.Name, c.Stream, c.Stage, c.Pending, c.AckPending, c.Redelivered)
	}
	fmt.Fprintf(tw, "\nDLQ STAGE\tDEAD LETTERS\tREASONS (COUNT)\n")
	for _, d := range s.DLQ {
		var rs []string
		for _, r := range d.ReasonCounts {
			rs = append(rs, fmt.Sprintf("%s %d", r.Reason, r.Count))
		}
		if len(rs) == 0 {
			rs = d.Reasons // a snapshot without the counts
		}
		reasons := strings.Join(rs, ", ")
		if reasons == "" {
			reasons = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", d.Stage, d.Count, reasons)
	}
	fmt.Fprintf(tw, "\nENV\tMODEL\tDRIFT\tSTREAK\tENTROPY KS\tCLASS CHI2\n")
	var refusals []string
	for _, e := range s.Envs {
		model := "-"
		if e.Version != "" {
			model = e.ModelName + " " + e.Version
		}
		if r, ok := e.Refused(); ok {
			model = "REFUSED " + model
			if r.Serves != "" {
				model += " (serves " + r.Serves + ")"
			}
			refusals = append(refusals, fmt.Sprintf("%s: the classifier refused %s %s at %s: %s", e.Env, r.Name, r.Version, r.Time.UTC().Format(time.RFC3339), r.Reason))
		}
		drift, streak, ks, chi := "no data", "-", "-", "-"
		if len(e.Drift) > 0 {
			d := e.Drift[0] // the served version's, when driftwatch has seen it
			drift = "ok"
			if e.Firing() {
				drift = "FIRING"
			}
			if d.ModelVersion != e.Version {
				drift += " (state of " + d.ModelVersion + ")"
			}
			streak = fmt.Sprintf("%s run=%d", firing(d.StreakFiring), d.StreakLen)
			ks, chi = test(d.KSFiring, d.KSTested, d.KSP), test(d.Chi2Firing, d.Chi2Tested, d.Chi2P)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Env, model, drift, streak, ks, chi)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	for _, r := range refusals {
		fmt.Fprintln(w, "refused: "+r)
	}
	if s.Store != nil {
		fmt.Fprintf(w, "\nobject store: %s (recorded by %s)\n", s.Store.Describe(), s.Store.RecordedBy)
	} else {
		fmt.Fprintln(w, "\nobject store: none recorded (eyeflow buckets init records it)")
	}
	if len(s.Alerts) > 0 {
		fmt.Fprintln(w, "\nrecent drift alerts (newest first):")
		for _, a := range s.Alerts {
			fmt.Fprintf(w, "  %s  %-7s %-8s %-22s %s\n", a.Time.UTC().Format(time.RFC3339), a.Env, a.State, a.Signal, a.ModelVersion)
		}
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	return nil
}

func firing(b bool) string {
	if b {
		return "FIRING"
	}
	return "ok"
}

func test(f bool, tested int, p float64) string {
	if tested == 0 {
		return firing(f) + " untested"
	}
	return fmt.Sprintf("%s p=%.3f", firing(f), p)
}
