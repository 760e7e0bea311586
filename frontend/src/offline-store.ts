// The device's record of which studies are kept for offline use.
//
// Shared by the viewer page and the service worker. Pixel data and metadata
// live in Cache Storage (STUDY_CACHE), keyed by their DICOMweb URLs; this
// IndexedDB database holds one row per study (what it is, whose it is, how many
// bytes it takes, when it was last viewed, whether every frame is stored) and
// the device's storage budget. fetlock.js reads the same rows for the chart.

export const DB_NAME = "fetlock-offline";
export const DB_VERSION = 1;
export const STUDY_STORE = "studies";
export const SETTING_STORE = "settings";

/** Cache Storage names; every Fetlock cache starts with CACHE_PREFIX. */
export const CACHE_PREFIX = "fetlock-";
export const STUDY_CACHE = "fetlock-studies";
export const PAGE_CACHE = "fetlock-pages";
export const SHELL_CACHE_PREFIX = "fetlock-shell-";

/** Budget used until the user sets one: the smaller of 2 GiB and 60 % of quota. */
export const DEFAULT_BUDGET_BYTES = 2 * 1024 ** 3;
export const DEFAULT_BUDGET_SHARE = 0.6;

export interface OfflineStudy {
  studyUID: string;
  horseId: number | null;
  horseName: string;
  label: string;
  viewerUrl: string;
  bytes: number;
  lastViewed: number;
  frameCount: number;
  cachedFrames: number;
  complete: boolean;
}

function requestToPromise<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function transactionDone(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error);
    tx.onerror = () => reject(tx.error);
  });
}

export function openOfflineDb(): Promise<IDBDatabase> {
  const request = indexedDB.open(DB_NAME, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    if (!db.objectStoreNames.contains(STUDY_STORE)) {
      db.createObjectStore(STUDY_STORE, { keyPath: "studyUID" });
    }
    if (!db.objectStoreNames.contains(SETTING_STORE)) {
      db.createObjectStore(SETTING_STORE, { keyPath: "key" });
    }
  };
  return requestToPromise(request);
}

async function withStore<T>(
  storeName: string,
  mode: IDBTransactionMode,
  body: (store: IDBObjectStore) => Promise<T> | T,
): Promise<T> {
  const db = await openOfflineDb();
  try {
    const tx = db.transaction(storeName, mode);
    const result = await body(tx.objectStore(storeName));
    await transactionDone(tx);
    return result;
  } finally {
    db.close();
  }
}

export function getStudy(studyUID: string): Promise<OfflineStudy | undefined> {
  return withStore(STUDY_STORE, "readonly", (store) =>
    requestToPromise(store.get(studyUID) as IDBRequest<OfflineStudy | undefined>),
  );
}

export function listStudies(): Promise<OfflineStudy[]> {
  return withStore(STUDY_STORE, "readonly", (store) =>
    requestToPromise(store.getAll() as IDBRequest<OfflineStudy[]>),
  );
}

/** Read, change and write one study row in a single transaction. */
export function updateStudy(
  studyUID: string,
  change: (row: OfflineStudy | undefined) => OfflineStudy | undefined,
): Promise<OfflineStudy | undefined> {
  return withStore(STUDY_STORE, "readwrite", async (store) => {
    const current = (await requestToPromise(store.get(studyUID))) as
      | OfflineStudy
      | undefined;
    const next = change(current);
    if (next) {
      store.put(next);
    }
    return next;
  });
}

export function deleteStudyRow(studyUID: string): Promise<void> {
  return withStore(STUDY_STORE, "readwrite", (store) => {
    store.delete(studyUID);
  });
}

export async function getBudgetSetting(): Promise<number | null> {
  const row = await withStore(SETTING_STORE, "readonly", (store) =>
    requestToPromise(
      store.get("budgetBytes") as IDBRequest<{ key: string; value: number } | undefined>,
    ),
  );
  return row ? row.value : null;
}

export function setBudgetSetting(bytes: number): Promise<void> {
  return withStore(SETTING_STORE, "readwrite", (store) => {
    store.put({ key: "budgetBytes", value: bytes });
  });
}

/** The device budget: the user's setting, else a share of the browser quota. */
export async function effectiveBudget(): Promise<number> {
  const configured = await getBudgetSetting();
  if (configured !== null && configured > 0) {
    return configured;
  }
  let quota = Number.POSITIVE_INFINITY;
  if (typeof navigator !== "undefined" && navigator.storage?.estimate) {
    const estimate = await navigator.storage.estimate();
    if (estimate.quota) {
      quota = estimate.quota * DEFAULT_BUDGET_SHARE;
    }
  }
  return Math.min(DEFAULT_BUDGET_BYTES, quota);
}

/** The Study Instance UID in a /dicomweb/studies/{uid}/... or viewer URL. */
export function studyUidOf(url: string): string | null {
  const match = /\/(?:dicomweb|viewer)\/studies\/([0-9.]+)(?:\/|$|\?)/.exec(url);
  return match ? match[1] : null;
}

/**
 * Delete the least recently viewed studies until the total fits the budget.
 *
 * `keep` names a study that is never evicted (the one being viewed). Returns
 * the Study Instance UIDs removed.
 */
export async function evictToBudget(keep: string | null): Promise<string[]> {
  const budget = await effectiveBudget();
  const rows = await listStudies();
  let total = rows.reduce((sum, row) => sum + row.bytes, 0);
  const removed: string[] = [];
  const candidates = rows
    .filter((row) => row.studyUID !== keep)
    .sort((a, b) => a.lastViewed - b.lastViewed);
  for (const row of candidates) {
    if (total <= budget) {
      break;
    }
    await removeStudy(row.studyUID);
    total -= row.bytes;
    removed.push(row.studyUID);
  }
  return removed;
}

/** Remove a study's cached responses, its viewer page and its row. */
export async function removeStudy(studyUID: string): Promise<void> {
  const cache = await caches.open(STUDY_CACHE);
  for (const request of await cache.keys()) {
    if (studyUidOf(request.url) === studyUID) {
      await cache.delete(request);
    }
  }
  const pages = await caches.open(PAGE_CACHE);
  for (const request of await pages.keys()) {
    if (new URL(request.url).pathname.startsWith(`/viewer/studies/${studyUID}`)) {
      await pages.delete(request);
    }
  }
  await deleteStudyRow(studyUID);
}

/** Forget everything this device keeps for Fetlock (used at log-out). */
export async function clearEverything(): Promise<void> {
  for (const name of await caches.keys()) {
    if (name.startsWith(CACHE_PREFIX)) {
      await caches.delete(name);
    }
  }
  await new Promise<void>((resolve) => {
    const request = indexedDB.deleteDatabase(DB_NAME);
    request.onsuccess = () => resolve();
    request.onerror = () => resolve();
    request.onblocked = () => resolve();
  });
}
