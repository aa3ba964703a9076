package stage

import (
	"context"
	"sync"
)

// Concurrently is a BatchHandler that runs h on every input of a batch at
// once. It suits a stage whose work per input is round trips to a server
// (the splitter's object-store links): a batch then takes about as long as
// its slowest input rather than the sum of all, and the runtime publishes
// the batch's outputs together. Each input keeps its own result; a panic
// fails only its own input. h is called without delivery metadata
// (MetaFrom), as every BatchHandler is.
func Concurrently[In any](h Handler[In]) BatchHandler[In] {
	return func(ctx context.Context, ins []In) []Result {
		out := make([]Result, len(ins))
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Go(func() {
				defer func() {
					if v := recover(); v != nil {
						out[i] = Result{Err: panicError(v)}
					}
				}()
				out[i].Outputs, out[i].Err = h(ctx, in)
			})
		}
		wg.Wait()
		return out
	}
}
