// Fragments marked data-refresh="URL" are fetched when the page loads and again
// every two seconds, so a chart shows new orders, worklist states and studies
// without a page reload.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function refresh(element) {
    var url = element.getAttribute("data-refresh");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        // An ended session redirects fragments to the login page: reload the
        // whole page so the user sees the login form once, not in each section.
        // Not while a form contains unsent input, which the reload would
        // lose. Sending the form leads through the login and puts it back.
        if (response.redirected && new URL(response.url).pathname === "/login") {
          if (hasUnsentInput()) {
            sessionEnded();
          } else {
            window.location.reload();
          }
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== element.innerHTML) { element.innerHTML = html; }
      })
      .catch(function () { /* offline: keep what is shown */ });
  }

  function hasUnsentInput() {
    return Array.prototype.some.call(document.forms, function (form) {
      return Array.prototype.some.call(form.elements, function (element) {
        if (element.type === "checkbox" || element.type === "radio") {
          return element.checked !== element.defaultChecked;
        }
        if (element.tagName === "SELECT") {
          return Array.prototype.some.call(element.options, function (option) {
            return option.selected !== option.defaultSelected;
          });
        }
        return "defaultValue" in element && element.type !== "hidden" &&
          element.value !== element.defaultValue;
      });
    });
  }

  var timers = [];

  function sessionEnded() {
    timers.forEach(clearInterval);
    timers = [];
    if (document.getElementById("session-ended")) { return; }
    var note = document.createElement("p");
    note.id = "session-ended";
    note.className = "notice";
    note.setAttribute("role", "status");
    note.textContent = "Your session has ended. Send the form to keep what you " +
      "typed: you log in again and it comes back, ready to send.";
    var main = document.querySelector("main") || document.body;
    main.insertBefore(note, main.firstChild);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var elements = document.querySelectorAll("[data-refresh]");
    elements.forEach(function (element) {
      refresh(element);
      timers.push(setInterval(function () { refresh(element); }, PERIOD_MS));
    });
  });
})();

// Offline use. The service worker (/sw.js) keeps the application shell, the
// charts and viewer pages visited, and every study opened in the viewer. The
// chart lists the studies this device keeps, which open with no signal; log-out
// forgets all of it. The IndexedDB layout is the viewer's
// (frontend/src/offline-store.ts): keep the two in step.
(function () {
  "use strict";
  var DB_NAME = "fetlock-offline";
  var DB_VERSION = 1;
  var CACHE_PREFIX = "fetlock-";

  // NOTE: browsers run service workers only over HTTPS or on localhost, so a
  // Fetlock served over plain HTTP on a network works online only.
  if ("serviceWorker" in navigator && window.isSecureContext) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {
        /* no worker (viewer not built): pages still work online */
      });
    });
  }

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = function () {
        var db = request.result;
        if (!db.objectStoreNames.contains("studies")) {
          db.createObjectStore("studies", { keyPath: "studyUID" });
        }
        if (!db.objectStoreNames.contains("settings")) {
          db.createObjectStore("settings", { keyPath: "key" });
        }
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function storedStudies() {
    if (!window.indexedDB) { return Promise.resolve([]); }
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var request = db.transaction("studies", "readonly").objectStore("studies").getAll();
        request.onsuccess = function () { db.close(); resolve(request.result); };
        request.onerror = function () { db.close(); reject(request.error); };
      });
    });
  }

  // Forget every cached page, image and record of this origin (log-out).
  function clearDevice() {
    var jobs = [];
    if (window.caches) {
      jobs.push(caches.keys().then(function (names) {
        return Promise.all(names.filter(function (name) {
          return name.indexOf(CACHE_PREFIX) === 0;
        }).map(function (name) { return caches.delete(name); }));
      }));
    }
    if (window.indexedDB) {
      jobs.push(new Promise(function (resolve) {
        var request = indexedDB.deleteDatabase(DB_NAME);
        request.onsuccess = request.onerror = request.onblocked = function () { resolve(); };
      }));
    }
    return Promise.all(jobs);
  }
  window.fetlockClearDevice = clearDevice;

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.action || new URL(form.action, location.href).pathname !== "/logout") { return; }
    if (form.getAttribute("data-cleared") === "true") { return; }
    event.preventDefault();
    form.setAttribute("data-cleared", "true");
    var timeout = new Promise(function (resolve) { setTimeout(resolve, 3000); });
    Promise.race([clearDevice(), timeout]).catch(function () {}).then(function () {
      form.submit();
    });
  });

  function megabytes(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  // On a chart, below the studies fragment: this horse's studies kept on the
  // device. (Marking them inside the fragment would make every refresh differ
  // from what is shown, and so redraw it every two seconds.)
  function showOfflineStudies(horseId, list) {
    storedStudies().then(function (rows) {
      var mine = rows.filter(function (row) {
        return row.horseId === horseId && row.complete;
      }).sort(function (a, b) { return b.lastViewed - a.lastViewed; });
      var heading = navigator.onLine ? "Available offline on this device"
        : "No signal: these studies open from this device";
      var html = "<h3>" + heading + "</h3>";
      if (!mine.length) {
        html += "<p class=\"muted\">None yet: a study opened in the viewer is kept here.</p>";
      } else {
        html += "<ul>" + mine.map(function (row) {
          var link = document.createElement("a");
          link.href = row.viewerUrl;
          link.textContent = row.label || row.studyUID;
          link.setAttribute("data-offline-study", row.studyUID);
          return "<li>" + link.outerHTML + " <span class=\"muted\">" +
            megabytes(row.bytes) + "</span></li>";
        }).join("") + "</ul>";
      }
      if (list.innerHTML !== html) { list.innerHTML = html; }
    }).catch(function () { list.hidden = true; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-refresh$='/studies-section']");
    if (!section || !window.indexedDB) { return; }
    var match = /\/horses\/(\d+)\/studies-section/.exec(section.getAttribute("data-refresh"));
    if (!match) { return; }
    var horseId = Number(match[1]);
    var list = document.createElement("section");
    list.className = "offline-studies";
    list.id = "offline-studies";
    list.setAttribute("aria-live", "polite");
    section.parentNode.insertBefore(list, section.nextSibling);
    var update = function () { showOfflineStudies(horseId, list); };
    update();
    setInterval(update, 5000);
    window.addEventListener("online", update);
    window.addEventListener("offline", update);
  });
})();

// A form sent after the session ended is not saved: the server sends the
// browser through the login page and back to the form's page with
// ?restore-form=1. Each POST form's fields are kept in sessionStorage when it
// is sent, put back on that return, and dropped on any other page.
(function () {
  var KEY = "fetlock:unsent-form";
  var PARAMETER = "restore-form";
  var MAX_AGE_MS = 2 * 60 * 60 * 1000;
  var SKIPPED = ["password", "hidden", "file", "submit", "button", "reset"];

  function pathOf(form) { return new URL(form.action, location.href).pathname; }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") { return; }
    var action = pathOf(form);
    if (action === "/login" || action === "/logout") { return; }
    var fields = [];
    Array.prototype.forEach.call(form.elements, function (element) {
      if (!element.name || SKIPPED.indexOf(element.type) !== -1) { return; }
      if (element.type === "checkbox" || element.type === "radio") {
        fields.push({ name: element.name, value: element.value, checked: element.checked });
      } else {
        fields.push({ name: element.name, value: element.value });
      }
    });
    var user = document.body.getAttribute("data-user");
    try {
      sessionStorage.setItem(KEY, JSON.stringify({
        action: action, user: user, fields: fields, at: Date.now(),
      }));
    } catch (error) { /* storage full or disabled: nothing to put back */ }
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    if (location.pathname === "/login") { return; }
    var saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
      sessionStorage.removeItem(KEY);
    } catch (error) { return; }
    var params = new URLSearchParams(location.search);
    if (!params.has(PARAMETER)) { return; }
    params.delete(PARAMETER);
    var query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
    if (!saved || Date.now() - saved.at > MAX_AGE_MS) { return; }
    // Only for the user who typed it: someone else may log in on this tab.
    if (saved.user !== document.body.getAttribute("data-user")) { return; }
    var form = Array.prototype.find.call(document.forms, function (candidate) {
      return candidate.method.toLowerCase() === "post" && pathOf(candidate) === saved.action;
    });
    if (!form) { return; }
    // Fields that share a name (the rows of a table) are filled in order.
    var seen = {};
    saved.fields.forEach(function (field) {
      var elements = form.elements.namedItem(field.name);
      if (!elements) { return; }
      var list = (elements instanceof RadioNodeList ? Array.prototype.slice.call(elements) : [elements])
        .filter(function (element) { return SKIPPED.indexOf(element.type) === -1; });
      if ("checked" in field) {
        list.forEach(function (element) {
          if (element.value === field.value) { element.checked = field.checked; }
        });
        return;
      }
      var index = seen[field.name] || 0;
      seen[field.name] = index + 1;
      if (list[index]) { list[index].value = field.value; }
    });
    for (var details = form.closest("details"); details; details = details.parentElement && details.parentElement.closest("details")) {
      details.open = true;
    }
    var note = document.createElement("p");
    note.className = "notice";
    note.setAttribute("role", "status");
    note.id = "restored-form";
    note.textContent = "Your session had ended, so this was not saved. " +
      "What you typed is back: check it and send it again.";
    form.parentNode.insertBefore(note, form);
    note.scrollIntoView({ block: "center" });
  });
})();
