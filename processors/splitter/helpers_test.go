package splitter_test

import (
	"eyeflow/processors/splitter"
	"eyeflow/security/pseudonym"
)

// legacy is the pseudonym rule the tests pin hashes and splits with: the
// legacy salted hash, what every patient hash was before deployments had
// keys, so the values these tests assert stay the ones they always were.
func legacy(salt string) pseudonym.Rule {
	r, err := pseudonym.Legacy(salt)
	if err != nil {
		panic(err)
	}
	return r
}

// patientHash is a patient's pseudonym under legacy(salt).
func patientHash(salt, id string) string { return legacy(salt).Of(id) }

// defaultConfig is splitter.DefaultConfig with the legacy rule of its salt.
func defaultConfig() splitter.Config {
	return withSalt(splitter.DefaultConfig(), splitter.DefaultConfig().Salt)
}

// withSalt sets the split salt and a rule made with it.
func withSalt(cfg splitter.Config, salt string) splitter.Config {
	cfg.Salt, cfg.Patients = salt, legacy(salt)
	return cfg
}
