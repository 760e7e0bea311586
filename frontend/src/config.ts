// The page configuration Fetlock renders into the viewer page as JSON
// (templates/viewer/study.html). Field names follow the Python side.

export interface StudySummary {
  studyInstanceUID: string;
  studyDate: string | null;
  studyDescription: string | null;
  accessionNumber: string | null;
  modalities: string[];
  bodyParts: string[];
  viewerUrl: string;
  sameRegion?: boolean;
  instanceCount?: number;
}

export interface ExternalViewerLink {
  name: string;
  url: string;
}

export interface KeyImageApi {
  /** The reporting API's list of this study's reports. */
  reportsUrl: string;
  /** Instance ids by SOP Instance UID, as the reporting API names images. */
  instanceIds: Record<string, number>;
}

export interface ViewerConfig {
  study: StudySummary;
  horse: { id: number | null; name: string; patientId: string | null; chartUrl: string | null };
  priors: StudySummary[];
  dicomwebRoot: string;
  frameAccept: string;
  externalViewers: ExternalViewerLink[];
  keyImages: KeyImageApi | null;
  csrfToken: string | null;
  compareWith: string | null;
  renderMode: "auto" | "cpu" | "gpu";
  /** WADO-RS URL of the frame the viewer shows first, fetched at start-up. */
  firstFrameUrl: string | null;
}

export function readConfig(): ViewerConfig {
  const element = document.getElementById("viewer-config");
  if (!element?.textContent) {
    throw new Error("viewer page has no #viewer-config JSON; reload the page");
  }
  return JSON.parse(element.textContent) as ViewerConfig;
}
