// Live predictions: adds server-sent events to the table the server already
// rendered. Without JavaScript the table is still there (reload for more).
(function () {
  "use strict";
  var body = document.getElementById("feed-rows");
  var table = document.getElementById("feed");
  var status = document.getElementById("feed-status");
  if (!body || !table || !window.EventSource) { return; }
  var limit = parseInt(table.getAttribute("data-limit"), 10) || 15;

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function when(s) {
    var d = new Date(s);
    if (isNaN(d.getTime())) { return "—"; }
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function add(p) {
    var empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    var tr = document.createElement("tr");
    tr.className = "new";
    cell(tr, when(p.time));
    cell(tr, p.env);
    cell(tr, p.model_version);
    var id = cell(tr, "");
    var code = document.createElement("code");
    code.textContent = (p.image_id || "").slice(0, 12);
    id.appendChild(code);
    cell(tr, p.split || "");
    cell(tr, p.true_label || "—", p.true_label ? "" : "muted");
    cell(tr, p.predicted_class);
    cell(tr, (p.confidence || 0).toFixed(3), "num");
    if (p.true_label) {
      var right = p.true_label === p.predicted_class;
      var m = cell(tr, "");
      var span = document.createElement("span");
      span.className = right ? "ok" : "bad";
      span.textContent = right ? "✓ right" : "✗ wrong";
      m.appendChild(span);
    } else {
      cell(tr, "—", "muted");
    }
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > limit) { body.deleteRow(body.rows.length - 1); }
  }

  var es = new EventSource("/dashboard/events");
  es.addEventListener("open", function () { status.textContent = "Live: new predictions appear at the top as they are published."; });
  es.addEventListener("error", function () { status.textContent = "Live feed disconnected; reconnecting…"; });
  es.addEventListener("prediction", function (ev) {
    try { add(JSON.parse(ev.data)); } catch (e) { /* a malformed event is skipped */ }
  });
})();
