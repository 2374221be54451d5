// The dashboard's live counters: server-sent events from /console/events update the cells marked
// data-queue-depth, data-outbox-pending, data-dead-letters and data-audit-records. Without JavaScript or
// EventSource the page keeps the numbers it was rendered with (reload for new ones).
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) {
    return;
  }
  var source = new EventSource(live.getAttribute("data-events"));

  function set(cell, value) {
    if (cell && cell.textContent !== String(value)) {
      cell.textContent = String(value);
    }
  }

  source.addEventListener("counters", function (event) {
    var counters = JSON.parse(event.data);
    document.querySelectorAll("[data-queue-depth]").forEach(function (cell) {
      var bin = cell.getAttribute("data-queue-depth");
      set(cell, Object.prototype.hasOwnProperty.call(counters.queues, bin) ? counters.queues[bin] : 0);
    });
    set(document.querySelector("[data-outbox-pending]"), counters.outbox_pending);
    set(document.querySelector("[data-dead-letters]"), counters.dead_letters);
    set(document.querySelector("[data-audit-records]"), counters.audit_records);
    live.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    live.setAttribute("data-live", "off"); // EventSource tries again by itself
  });
})();
