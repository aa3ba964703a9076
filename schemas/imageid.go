package schemas

import "crypto/sha256"

// ValidImageID reports whether id is an image id as the pipeline makes
// them (Resized.image_id): the lowercase hex SHA-256 of the image's bytes.
// It is the one rule for every stage that puts an image id into an object
// key or a KV key.
func ValidImageID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
