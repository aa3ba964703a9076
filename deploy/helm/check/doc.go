// Package check renders the chart deploy/helm/eyeflow with helm and decodes
// every object strictly into the Kubernetes API types of its kind (k8s.io/api;
// the Prometheus Operator's own API types; KEDA's ScaledObject as a strict
// subset of its v1alpha1 types): an unknown field, a wrong type or a missing
// required field fails, and so do references that do not resolve (a selector
// that matches no pod template, a probe on a port no container names, a
// ScaledObject on no Deployment). It is a module of its own so that the
// Kubernetes modules stay out of eyeflow's go.mod. No cluster runs: what it
// shows is what rendering, the schema and these types can show.
package check
