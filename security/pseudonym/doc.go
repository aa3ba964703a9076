// Package pseudonym is the one home of turning a patient id into what
// eyeflow stores and publishes about the patient (Resized.PatientHash, the
// patient's split key): a pseudonym, 64 lowercase hex digits, the same for
// every image of a patient under one deployment's rule.
//
// A deployment's rule is Keyed: HMAC-SHA256 of the id under a random secret
// key the deployment gets at its first start (internal/deployment keeps it
// in the deployment's KV record). Patient ids are short and guessable
// (PAT-4711), so anything short of a secret key lets whoever reads the
// events recover them by hashing candidates; there is no default key.
//
// Legacy is the rule eyeflow used before, a salted SHA-256 under the split
// salt: it is kept only for deployments that published pseudonyms before
// keys existed, so that their patients keep their pseudonyms and splits.
//
// The package holds no state and imports nothing of NATS: the stages that
// pseudonymise (resize, the splitter) get their Rule from the command that
// builds them.
package pseudonym
