// Package models owns the model registry: the versions in the models
// bucket (model.onnx, labels.json and the model card, model.json), which
// version each env serves (KV bucket KVModels, whose history keeps the
// promotions), and the synthetic placeholder a registry starts with. The
// classifier serves what it says, the trainer pushes and promotes through
// it, and `eyeflow model` reads and promotes with it alone; none of them
// owns it. Running a model (ONNX Runtime) is the classifier's.
package models
