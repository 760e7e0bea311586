// Keep an opened study on the device: its metadata, every frame of every
// instance and the thumbnails, so that it opens again with no signal.
//
// When the service worker controls the page, fetching a URL is enough: the
// worker stores DICOMweb responses of studies the device has a row for. On a
// first visit the worker may not control the page yet, so the page stores what
// is missing itself. Either way the byte count is taken from what is really in
// the cache at the end.

import type { ViewerConfig } from "./config";
import {
  STUDY_CACHE,
  evictToBudget,
  studyUidOf,
  updateStudy,
  type OfflineStudy,
} from "./offline-store";
import { frameUrls, type StudyModel } from "./study";

const PARALLEL = 3;

/** Record the study as viewed now; the worker stores its responses from here on. */
export async function markViewed(config: ViewerConfig, studyUID: string): Promise<void> {
  const isCurrent = studyUID === config.study.studyInstanceUID;
  const summary = isCurrent
    ? config.study
    : config.priors.find((p) => p.studyInstanceUID === studyUID);
  const label = summary
    ? [formatDate(summary.studyDate), summary.studyDescription, summary.modalities.join("/")]
        .filter(Boolean)
        .join(" · ")
    : studyUID;
  await updateStudy(studyUID, (row): OfflineStudy => ({
    studyUID,
    horseId: config.horse.id,
    horseName: config.horse.name,
    label,
    viewerUrl: summary?.viewerUrl ?? `/viewer/studies/${studyUID}`,
    bytes: row?.bytes ?? 0,
    lastViewed: Date.now(),
    frameCount: row?.frameCount ?? 0,
    cachedFrames: row?.cachedFrames ?? 0,
    complete: row?.complete ?? false,
  }));
}

export function formatDate(da: string | null): string {
  if (!da || da.length !== 8) {
    return da ?? "";
  }
  return `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}`;
}

async function ensureCached(
  cache: Cache,
  url: string,
  accept: string,
  controlled: boolean,
): Promise<boolean> {
  const request = new Request(url, { credentials: "same-origin", headers: { Accept: accept } });
  if (await cache.match(request, { ignoreVary: true })) {
    return true;
  }
  const response = await fetch(request);
  if (!response.ok) {
    return false;
  }
  if (controlled) {
    // The worker stores it once the body is read; wait until it has.
    await response.arrayBuffer();
    for (let attempt = 0; attempt < 40; attempt++) {
      if (await cache.match(request, { ignoreVary: true })) {
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await cache.put(request, await fetch(request));
    return true;
  }
  await cache.put(request, response);
  return true;
}

async function cachedBytes(cache: Cache, studyUID: string): Promise<number> {
  let total = 0;
  for (const request of await cache.keys()) {
    if (studyUidOf(request.url) !== studyUID) {
      continue;
    }
    const response = await cache.match(request, { ignoreVary: true });
    const length = Number(response?.headers.get("Content-Length"));
    total += Number.isFinite(length) && length > 0 ? length : (await response?.blob())?.size ?? 0;
  }
  return total;
}

/**
 * Store every frame of a study, reporting progress; returns true when complete.
 *
 * Runs after the first image is on screen, a few requests at a time, so it
 * does not compete with what the user is looking at.
 */
export async function keepOffline(
  config: ViewerConfig,
  study: StudyModel,
  onProgress: (done: number, total: number) => void,
): Promise<boolean> {
  if (typeof caches === "undefined") {
    return false; // Not a secure context: nothing can be kept.
  }
  const cache = await caches.open(STUDY_CACHE);
  const controlled = Boolean(navigator.serviceWorker?.controller);
  const jobs: Array<[string, string]> = [
    [study.metadataUrl, "application/dicom+json"],
    ...frameUrls(study).map((url): [string, string] => [url, config.frameAccept]),
    ...study.series.flatMap((s) =>
      s.images.map((i): [string, string] => [i.thumbnailUrl, "image/jpeg"]),
    ),
  ];
  const frames = frameUrls(study).length;
  let done = 0;
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const [url, accept] = jobs[next++];
      try {
        const ok = await ensureCached(cache, url, accept, controlled);
        if (!ok && !url.endsWith("/thumbnail")) {
          failed++;
        }
      } catch {
        failed++;
      }
      done++;
      onProgress(done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));

  const bytes = await cachedBytes(cache, study.studyInstanceUID);
  const complete = failed === 0;
  await updateStudy(study.studyInstanceUID, (row) =>
    row
      ? { ...row, bytes, frameCount: frames, cachedFrames: frames - failed, complete }
      : row,
  );
  await evictToBudget(study.studyInstanceUID);
  return complete;
}
