// Fetlock's service worker, served at /sw.js with the whole site as its scope.
//
// - The application shell (the viewer bundle, its codecs, the site's CSS and
//   JS) is stored when the worker installs, so a study can be opened with no
//   signal. Fetlock writes the list into __FETLOCK_PRECACHE when it serves
//   this script; a new build gives a new list and so a new worker.
// - Chart and viewer pages, and the chart's refreshed fragments, are fetched
//   from the network first and kept for when there is none.
// - DICOMweb responses of a study that has been opened in the viewer (the
//   device has a row for it in IndexedDB) are kept. Frames, rendered images
//   and thumbnails never change for a given URL, since stored instances are
//   never replaced, so they are answered from the cache first. Study metadata
//   and searches can grow as images arrive: network first, cache when the
//   network fails or is slow.
// - The budget is enforced after each stored response by evicting the least
//   recently viewed studies.

import {
  PAGE_CACHE,
  SHELL_CACHE_PREFIX,
  STUDY_CACHE,
  clearEverything,
  evictToBudget,
  getStudy,
  studyUidOf,
  updateStudy,
} from "./offline-store";

declare const self: ServiceWorkerGlobalScope & {
  __FETLOCK_PRECACHE?: string[];
  __FETLOCK_VERSION?: string;
};

const VERSION = self.__FETLOCK_VERSION ?? "dev";
const SHELL_CACHE = `${SHELL_CACHE_PREFIX}${VERSION}`;
const PRECACHE = self.__FETLOCK_PRECACHE ?? [];

// Pages kept for offline use, with the chart's study thumbnails; everything
// else (log-in, forms, the JSON API) is not.
const PAGE_PREFIXES = ["/horses", "/viewer/", "/imaging/studies/"];
// How long a page or study metadata request may take before the cached copy
// is used instead, when one exists.
const PAGE_TIMEOUT_MS = 4000;
const METADATA_TIMEOUT_MS = 2500;

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL_CACHE);
      // One by one, so that a single missing file does not lose the rest.
      await Promise.all(
        PRECACHE.map(async (url) => {
          try {
            const response = await fetch(url, { credentials: "same-origin" });
            if (response.ok) {
              await cache.put(url, response);
            }
          } catch {
            // Offline while installing: the file is stored on first use.
          }
        }),
      );
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(SHELL_CACHE_PREFIX) && name !== SHELL_CACHE) {
          await caches.delete(name);
        }
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("message", (event) => {
  const data = event.data as { type?: string; keep?: string } | null;
  if (data?.type === "clear") {
    event.waitUntil(
      clearEverything().then(() => event.source?.postMessage({ type: "cleared" })),
    );
  } else if (data?.type === "evict") {
    event.waitUntil(evictToBudget(data.keep ?? null));
  }
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(shellFirst(request));
  } else if (url.pathname.startsWith("/dicomweb/studies/")) {
    event.respondWith(dicomweb(event, request, url));
  } else if (PAGE_PREFIXES.some((prefix) => url.pathname.startsWith(prefix))) {
    event.respondWith(networkFirst(event, request, PAGE_CACHE, PAGE_TIMEOUT_MS, null));
  }
});

async function shellFirst(request: Request): Promise<Response> {
  const cached = await caches.match(request, { ignoreSearch: true });
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (response.ok) {
    const cache = await caches.open(SHELL_CACHE);
    await cache.put(request, response.clone());
  }
  return response;
}

function isStudyMetadataOrSearch(url: URL): boolean {
  // /dicomweb/studies/{uid}/metadata, /series, /series/{uid}/metadata...
  // Instance-level metadata is immutable; study and series level can grow.
  return (
    /\/studies\/[0-9.]+\/(metadata|series|instances)$/.test(url.pathname) ||
    /\/series\/[0-9.]+\/(metadata|instances)$/.test(url.pathname)
  );
}

async function dicomweb(
  event: FetchEvent,
  request: Request,
  url: URL,
): Promise<Response> {
  const studyUID = studyUidOf(url.pathname);
  const tracked = studyUID ? await getStudy(studyUID) : undefined;
  if (!studyUID || !tracked) {
    return fetch(request);
  }
  if (isStudyMetadataOrSearch(url)) {
    return networkFirst(event, request, STUDY_CACHE, METADATA_TIMEOUT_MS, studyUID);
  }
  const cache = await caches.open(STUDY_CACHE);
  const cached = await cache.match(request, { ignoreVary: true });
  if (cached) {
    return cached;
  }
  // The viewer requests the first frame early and its image loader requests
  // it again; both get the same download.
  let pending = inFlight.get(request.url);
  if (!pending) {
    pending = fetchAndStore(event, cache, request, studyUID);
    inFlight.set(request.url, pending);
  }
  const response = await pending;
  return response.clone();
}

/** Responses still being downloaded into the study cache, by URL. */
const inFlight = new Map<string, Promise<Response>>();

async function fetchAndStore(
  event: FetchEvent,
  cache: Cache,
  request: Request,
  studyUID: string,
): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(request);
  } catch (error) {
    inFlight.delete(request.url);
    throw error;
  }
  const stored = response.ok
    ? store(cache, request, response.clone(), studyUID)
    : Promise.resolve();
  event.waitUntil(stored);
  // Later requests find the cached copy once it is written.
  void stored.finally(() => inFlight.delete(request.url));
  return response;
}

async function store(
  cache: Cache,
  request: Request,
  response: Response,
  studyUID: string | null,
): Promise<void> {
  const body = await response.blob();
  await cache.put(
    request,
    new Response(body, { status: response.status, headers: response.headers }),
  );
  if (studyUID === null) {
    return;
  }
  await updateStudy(studyUID, (row) =>
    row ? { ...row, bytes: row.bytes + body.size } : row,
  );
  await evictToBudget(studyUID);
}

async function networkFirst(
  event: FetchEvent,
  request: Request,
  cacheName: string,
  timeoutMs: number,
  studyUID: string | null,
): Promise<Response> {
  const cache = await caches.open(cacheName);
  const network = fetch(request).then((response) => {
    // A redirect to the log-in page is not the page asked for: never keep it.
    if (response.ok && !response.redirected) {
      event.waitUntil(replace(cache, request, response.clone(), studyUID));
    }
    return response;
  });
  const cached = cache.match(request, { ignoreVary: true });
  try {
    return await withTimeout(network, timeoutMs, cached);
  } catch (error) {
    const fallback = await cached;
    if (fallback) {
      return fallback;
    }
    if (request.mode === "navigate") {
      return offlinePage(request.url);
    }
    throw error;
  }
}

async function replace(
  cache: Cache,
  request: Request,
  response: Response,
  studyUID: string | null,
): Promise<void> {
  const previous = await cache.match(request, { ignoreVary: true });
  if (previous && studyUID !== null) {
    // Replacing a response: count only the difference.
    const oldSize = (await previous.blob()).size;
    await updateStudy(studyUID, (row) =>
      row ? { ...row, bytes: Math.max(0, row.bytes - oldSize) } : row,
    );
  }
  await store(cache, request, response, studyUID);
}

/** The network's answer, or the cached one if the network takes too long. */
function withTimeout(
  network: Promise<Response>,
  timeoutMs: number,
  cached: Promise<Response | undefined>,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(async () => {
      const copy = await cached;
      if (!settled && copy) {
        settled = true;
        resolve(copy);
      }
    }, timeoutMs);
    network.then(
      (response) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          resolve(response);
        }
      },
      (error) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          reject(error);
        }
      },
    );
  });
}

function offlinePage(url: string): Response {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Offline</title><link rel="stylesheet" href="/static/fetlock.css"></head>
<body><main><h1>No signal</h1>
<p>This page was not opened on this device while online, so it is not stored:
${escapeHtml(new URL(url).pathname)}</p>
<p><a href="/horses">Back to the horses</a>; each chart visited before lists the
studies this device keeps.</p></main></body></html>`;
  return new Response(html, {
    status: 503,
    headers: { "Content-Type": "text/html; charset=utf-8" },
  });
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
