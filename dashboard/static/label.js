// The Label page: Label Studio's editor (window.LabelStudio, served from
// this dashboard) on one task; Submit posts the annotation's result to the
// dashboard, which writes it into the labelling bucket as Label Studio's
// target storage would.
(function () {
  "use strict";
  var el = document.getElementById("label-data");
  var status = document.getElementById("label-status");
  function say(msg, bad) {
    if (!status) return;
    status.textContent = msg;
    status.className = bad ? "bad" : "ok";
  }
  if (!el) return;
  if (typeof window.LabelStudio !== "function") {
    say("Label Studio's editor did not load (see the message above).", true);
    return;
  }
  var boot = JSON.parse(el.textContent);
  // "topbar" is needed for the Submit button to render at all.
  var interfaces = ["panel", "side-column", "predictions:menu", "annotations:menu"];
  if (boot.can_submit) interfaces.push("topbar", "controls", "submit", "annotations:current");
  var sending = false;
  window.eyeflowLabel = { ready: false, submitted: null };
  new window.LabelStudio("label-studio", {
    config: boot.config,
    interfaces: interfaces,
    user: { pk: 1, firstName: boot.annotator || "viewer", lastName: "" },
    task: {
      id: boot.task_id,
      data: { image: boot.image },
      predictions: boot.predictions,
      annotations: []
    },
    onLabelStudioLoad: function (ls) {
      // Predictions load after this callback and select the (read-only)
      // prediction: create and select the annotator's own annotation
      // afterwards, starting from the prediction when there is one.
      setTimeout(function () {
        var store = ls.annotationStore;
        if (boot.can_submit) {
          var a = store.predictions.length > 0 && store.addAnnotationFromPrediction
            ? store.addAnnotationFromPrediction(store.predictions[0])
            : store.addAnnotation({ userGenerate: true });
          store.selectAnnotation(a.id);
        }
        window.eyeflowLabel.ready = true;
      }, 0);
    },
    onSubmitAnnotation: function (ls, annotation) {
      if (sending) return;
      sending = true;
      // Never trust "origin" to tell the annotator's answer from the
      // model's: the server keeps only the chosen class.
      var body = JSON.stringify({ task: boot.image_id, ticket: boot.ticket, result: annotation.serializeAnnotation() });
      fetch(boot.submit, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: body
      }).then(function (resp) {
        return resp.json().then(function (reply) { return { status: resp.status, reply: reply }; },
          function () { return { status: resp.status, reply: {} }; });
      }).then(function (r) {
        window.eyeflowLabel.submitted = r;
        if (r.reply.ok) {
          say("Saved. Loading the next image...", false);
          setTimeout(function () { window.location.assign(r.reply.next || boot.next); }, 600);
        } else {
          sending = false;
          say("Refused (" + (r.reply.reason || r.status) + "): " + (r.reply.error || "no reason given"), true);
        }
      }, function (err) {
        sending = false;
        window.eyeflowLabel.submitted = { status: 0, reply: { error: String(err) } };
        say("Could not reach the dashboard: " + err, true);
      });
    }
  });
})();
