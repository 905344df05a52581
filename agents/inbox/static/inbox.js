// Support inbox: live rows over server-sent events, SLA countdowns. No inline script (CSP).
"use strict";
(function () {
  function fmt(ms) {
    var s = Math.floor(Math.abs(ms) / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    var t = (h ? h + "h " : "") + (h || m ? String(m).padStart(2, "0") + "m " : "") + String(s).padStart(2, "0") + "s";
    return t;
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown").forEach(function (el) {
      var due = Number(el.dataset.due), stopped = Number(el.dataset.stopped);
      var row = el.closest(".row") || el;
      if (stopped) {
        el.textContent = "responded";
        el.classList.add("stopped");
        row.classList.remove("breached");
        return;
      }
      if (!due) return;
      var left = due - now;
      el.textContent = left >= 0 ? fmt(left) + " left" : "breached " + fmt(left) + " ago";
      row.classList.toggle("breached", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 15 * 60 * 1000);
    });
  }
  function rank(el) {
    return [Number(el.dataset.rank), el.dataset.due ? Number(el.dataset.due) : Infinity, el.dataset.id];
  }
  function before(a, b) {
    for (var i = 0; i < 3; i++) { if (a[i] < b[i]) return true; if (a[i] > b[i]) return false; }
    return false;
  }
  function upsert(rows, id, html) {
    var old = null;
    rows.querySelectorAll(".row").forEach(function (r) { if (r.dataset.id === id) old = r; });
    if (old) old.remove();
    if (!html) return;
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var row = tpl.content.firstElementChild;
    var key = rank(row), next = null;
    var all = rows.querySelectorAll(".row");
    for (var i = 0; i < all.length; i++) { if (before(key, rank(all[i]))) { next = all[i]; break; } }
    rows.insertBefore(row, next);
    row.classList.add("fresh");
  }
  function live(url, handlers) {
    var badge = document.getElementById("live");
    var es = new EventSource(url);
    es.addEventListener("hello", function () { if (badge) badge.classList.add("on"); document.body.dataset.live = "1"; });
    es.onerror = function () { if (badge) badge.classList.remove("on"); };
    Object.keys(handlers).forEach(function (name) {
      es.addEventListener(name, function (ev) { handlers[name](JSON.parse(ev.data)); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    var queue = document.getElementById("queue");
    var filters = document.querySelector("details.filters");
    if (filters && window.matchMedia("(max-width: 760px)").matches) filters.open = false;
    if (queue) {
      var rows = document.getElementById("rows");
      live(queue.dataset.events, {
        item: function (d) {
          upsert(rows, d.id, d.html);
          document.getElementById("empty").hidden = rows.children.length > 0;
          tick();
        },
        counts: function (d) {
          var box = document.getElementById("facets");
          var tpl = document.createElement("template");
          tpl.innerHTML = d.html;
          box.replaceChildren(tpl.content);
          document.getElementById("total").textContent = d.total;
          document.getElementById("count-text").textContent = d.total + (d.total === 1 ? " item" : " items");
        }
      });
    }
    var item = document.getElementById("item");
    if (item) live(item.dataset.events, { changed: function () { window.location.reload(); } });
  });
})();
