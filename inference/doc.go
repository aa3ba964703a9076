// Package inference is eyeflow's ONNX Runtime host: loading the library,
// choosing a device (CPU, CUDA, TensorRT, WebGPU, with the Vulkan probe
// behind WebGPU), planning threads and parallel runs for the machine,
// creating sessions, and running a model's batches (Model: the card's
// checks, the pixel LUT, logits or probabilities out). The classifier
// serves models with it, and the trainer runs backbones and scores
// candidates with it; neither owns it.
package inference
