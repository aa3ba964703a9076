// Package deploy holds eyeflow's monitoring as code and its tests:
//
//   - prometheus/prometheus.yml scrapes every eyeflow service of compose.yaml;
//   - prometheus/rules/ are the alerting rules, unit-tested with
//     `promtool test rules` (prometheus/tests/), which deploy_test.go runs;
//   - grafana/provisioning/ and grafana/dashboards/ are loaded by Grafana at
//     startup (datasource and the eyeflow dashboard).
//
// The tests also check that every rule and panel query names a metric that
// eyeflow really exports, collected from the processors' own metric
// constructors, so a renamed metric breaks the build instead of a chart.
package deploy
