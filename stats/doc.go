// Package stats holds the statistics eyeflow's promotion gate decides on.
// It is pure: no I/O, no clocks, no global random state; the same inputs
// give the same outputs, byte for byte.
//
//   - PairedBootstrap: a percentile bootstrap interval of the difference in
//     accuracy and in macro-F1 between two models scored on the same images,
//     both resampled by the same draws, the generator seeded from a hash of
//     the sorted image ids (so the same data gives the same interval,
//     whatever order it came in).
//   - McNemar: the exact one-sided McNemar test (a binomial test on the
//     discordant pairs) and Holm's step-down correction across classes.
//   - Wilson: the Wilson score interval of a proportion (sensitivity and
//     specificity floors).
//   - TwoProportion: the pooled two-proportion z-test, Newcombe's interval of
//     the difference and the sample size a margin needs (low-confidence
//     rates of two environments).
//   - ConfidenceSequence: an always-valid (anytime) confidence sequence for
//     the mean of paired differences in [-1, 1], by betting (Waudby-Smith and
//     Ramdas, "Estimating means of bounded random variables by betting",
//     JRSS-B 86(1), 2024, the predictable aGRAPA bet). The gate looks again
//     every time labelled images arrive; Ville's inequality bounds the chance
//     that any look, ever, excludes the true mean by alpha, so repeated looks
//     do not inflate the error rate.
package stats
