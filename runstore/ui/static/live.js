// The live tail of a running run: new events are appended to the timeline as the server sends
// them (server-sent events), until the run ends. Text is set as text, never as markup.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var body = document.querySelector("#events tbody");
  if (!live || !body || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-tail"));
  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (className) { td.className = className; }
    row.appendChild(td);
  }
  source.addEventListener("event", function (message) {
    var e = JSON.parse(message.data);
    var row = document.createElement("tr");
    row.className = "lv-" + e.level + (e.stream ? " out-" + e.stream : "");
    cell(row, e.seq, "num");
    cell(row, new Date(e.ts).toLocaleString(), "mono");
    cell(row, e.level);
    cell(row, e.stream || e.event_type);
    cell(row, e.message, "msg");
    cell(row, e.stream ? "" : (e.data == null ? "" : JSON.stringify(e.data)), "data");
    body.appendChild(row);
  });
  source.addEventListener("end", function (message) {
    source.close();
    live.textContent = "the run has ended: " + JSON.parse(message.data).status;
    live.className = "live ended";
  });
})();
