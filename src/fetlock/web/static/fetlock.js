// Fragments marked data-refresh="URL" are fetched when the page loads and again
// every two seconds, so a chart shows new orders, worklist states and studies
// without a page reload.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function refresh(element) {
    var url = element.getAttribute("data-refresh");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null && html !== element.innerHTML) { element.innerHTML = html; }
      })
      .catch(function () { /* offline: keep what is shown */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var elements = document.querySelectorAll("[data-refresh]");
    elements.forEach(function (element) {
      refresh(element);
      setInterval(function () { refresh(element); }, PERIOD_MS);
    });
  });
})();
