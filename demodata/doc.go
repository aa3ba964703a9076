// Package demodata owns eyeflow's deterministic, labelled synthetic fundus
// data set: it renders fundus-photograph-like JPEGs (black surround,
// orange-red retina with vignetting, optic disc, macula, branching vessels,
// texture and grain) for 15 eye-disease classes, each with its own visible
// signs, and writes them in torchvision ImageFolder layout
// (<out>/<class>/<class>_<NNNN>.jpg) with a fixed long-tailed class
// imbalance. Output is byte-for-byte reproducible for the same Options
// (every image is driven by a PRNG seeded from seed, class and index), so
// eyeflow can be tried, tested and benchmarked fully offline without any
// real patient data. The images are illustrations, not medical data.
package demodata
