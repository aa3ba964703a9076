package demodata

import (
	"slices"
	"sort"
)

// classWeights is the fixed long-tailed class profile, largest first. The
// weights are integers (per 900) so that Counts is exact and platform
// independent.
var classWeights = []struct {
	name   string
	weight int
}{
	{"normal", 300},
	{"diabetic_retinopathy", 140},
	{"glaucoma", 90},
	{"cataract", 80},
	{"amd", 70},
	{"hypertensive_retinopathy", 50},
	{"pathological_myopia", 45},
	{"retinal_vein_occlusion", 35},
	{"retinal_detachment", 25},
	{"retinitis_pigmentosa", 16},
	{"central_serous_chorioretinopathy", 14},
	{"macular_hole", 11},
	{"papilledema", 9},
	{"optic_atrophy", 8},
	{"chorioretinitis", 7},
}

var sortedClasses = func() []string {
	out := make([]string, len(classWeights))
	for i, c := range classWeights {
		out[i] = c.name
	}
	sort.Strings(out)
	return out
}()

// Classes returns the 15 class (folder) names in sorted order, which is the
// label order torchvision's ImageFolder assigns. The slice is a copy.
func Classes() []string { return slices.Clone(sortedClasses) }

// NumClasses is the number of classes in the data set.
const NumClasses = 15

// DefaultTotal is a suggested data set size (about 600 images) for demos and
// benchmarks.
const DefaultTotal = 600

func knownClass(name string) bool {
	_, ok := slices.BinarySearch(sortedClasses, name)
	return ok
}

// Counts returns the default per-class image counts for a data set of total
// images: a fixed long-tailed profile with normal the largest class. The
// counts sum to total exactly; when total >= 15 every class gets at least
// one image, otherwise the total images go to the most frequent classes.
// Classes with zero images are present in the map with count 0. total < 0 is
// treated as 0.
func Counts(total int) map[string]int {
	out := make(map[string]int, len(classWeights))
	for _, c := range classWeights {
		out[c.name] = 0
	}
	if total <= 0 {
		return out
	}
	if total < len(classWeights) {
		for _, c := range classWeights[:total] {
			out[c.name] = 1
		}
		return out
	}
	sumW := 0
	for _, c := range classWeights {
		sumW += c.weight
	}
	rest := total - len(classWeights)
	type rem struct{ idx, frac int }
	rems := make([]rem, len(classWeights))
	given := 0
	for i, c := range classWeights {
		n := rest * c.weight / sumW
		out[c.name] = 1 + n
		given += n
		rems[i] = rem{i, rest * c.weight % sumW}
	}
	// Largest remainder, ties to the more frequent class (stable order).
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].frac > rems[b].frac })
	for i := 0; given < rest; i++ {
		out[classWeights[rems[i].idx].name]++
		given++
	}
	return out
}
