// Key images: the radiologist marks the image on screen and it joins the key
// images of their draft report for this study, through the reporting API
// (GET /api/v1/studies/{id}/reports, PUT /api/v1/reports/{id}). The report
// content is sent back whole, as that API expects, with the image added.
//
// Every mark is also announced as a "fetlock:key-image" DOM event and on the
// "fetlock-key-images" BroadcastChannel, so a report editor open in another
// tab can show it without a reload.

import type { KeyImageApi } from "./config";

interface CodedTerm {
  key: string;
}

interface ReportOut {
  id: number;
  status: string;
  version: number;
  template: string | null;
  clinical_history: string;
  technique: string;
  findings: Array<{
    limb: string;
    region: string;
    structure: CodedTerm;
    finding: CodedTerm;
    grade: number | null;
    location: string | null;
    detail: string;
  }>;
  impression: string;
  recommendations: string;
  key_images: Array<{ instance_id: number; caption: string }>;
}

export interface KeyImageMark {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  frame: number;
  instanceId: number | null;
  caption: string;
}

export const KEY_IMAGE_CHANNEL = "fetlock-key-images";

async function jsonOrMessage(response: Response): Promise<unknown> {
  if (response.ok) {
    return response.json();
  }
  let message = `${response.status} ${response.statusText}`;
  try {
    message = ((await response.json()) as { detail?: string }).detail ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  throw new Error(message);
}

/** Add the image to the caller's draft report; returns the report id. */
export async function markKeyImage(
  api: KeyImageApi,
  csrfToken: string | null,
  mark: KeyImageMark,
): Promise<number> {
  announce(mark);
  if (mark.instanceId === null) {
    throw new Error(
      `image ${mark.sopInstanceUID} is not in Fetlock's index yet; reload the viewer`,
    );
  }
  const headers = {
    Accept: "application/json",
    "Content-Type": "application/json",
    "X-CSRF-Token": csrfToken ?? "",
  };
  const reports = (await jsonOrMessage(
    await fetch(api.reportsUrl, { credentials: "same-origin", headers }),
  )) as ReportOut[];
  const draft = reports
    .filter((r) => r.status === "draft")
    .sort((a, b) => b.version - a.version)[0];
  if (!draft) {
    throw new Error(
      "this study has no draft report to add key images to; start the report " +
        "from the reading queue, then mark the images",
    );
  }
  const keyImages = draft.key_images.map((k) => ({
    instance_id: k.instance_id,
    caption: k.caption,
  }));
  if (!keyImages.some((k) => k.instance_id === mark.instanceId)) {
    keyImages.push({ instance_id: mark.instanceId, caption: mark.caption });
  }
  const content = {
    template: draft.template,
    clinical_history: draft.clinical_history,
    technique: draft.technique,
    findings: draft.findings.map((f) => ({
      limb: f.limb,
      region: f.region,
      structure: f.structure.key,
      finding: f.finding.key,
      grade: f.grade,
      location: f.location,
      detail: f.detail,
    })),
    impression: draft.impression,
    recommendations: draft.recommendations,
    key_images: keyImages,
  };
  // NOTE: the API replaces the draft whole, so a report editor open elsewhere
  // that saves after this overwrites the mark unless it reloads first.
  await jsonOrMessage(
    await fetch(`/api/v1/reports/${draft.id}`, {
      method: "PUT",
      credentials: "same-origin",
      headers,
      body: JSON.stringify(content),
    }),
  );
  return draft.id;
}

function announce(mark: KeyImageMark): void {
  document.dispatchEvent(new CustomEvent("fetlock:key-image", { detail: mark }));
  if (typeof BroadcastChannel !== "undefined") {
    const channel = new BroadcastChannel(KEY_IMAGE_CHANNEL);
    channel.postMessage(mark);
    channel.close();
  }
}
