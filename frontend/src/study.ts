// A study as the viewer needs it, built from WADO-RS study metadata
// (PS3.18 10.4.1.1.2, DICOM JSON of every instance), and the wadors: image
// IDs the Cornerstone loader fetches frames with (PS3.18 10.4.1.1.3).

import { utilities } from "@cornerstonejs/core";
import { wadors } from "@cornerstonejs/dicom-image-loader";

export interface DicomElement {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}

export type DicomJson = Record<string, DicomElement>;

export interface ImageRef {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  instanceNumber: number | null;
  numberOfFrames: number;
  rows: number;
  columns: number;
  viewLabel: string;
  laterality: string;
  calibrated: boolean;
  /** Where millimetres come from, for the overlay; empty when uncalibrated. */
  calibrationSource: string;
  framesPerSecond: number;
  /** One wadors: image ID per frame. */
  imageIds: string[];
  thumbnailUrl: string;
  metadata: DicomJson;
}

export interface SeriesRef {
  seriesInstanceUID: string;
  seriesNumber: number | null;
  modality: string;
  bodyPart: string;
  description: string;
  images: ImageRef[];
}

/** An image of the study the viewer cannot draw, and why. */
export interface UnshowableImage {
  sopInstanceUID: string;
  instanceNumber: number | null;
  modality: string;
  reason: string;
}

export interface StudyModel {
  studyInstanceUID: string;
  series: SeriesRef[];
  /** Images left out of `series` because the viewer cannot draw them. */
  unshowable: UnshowableImage[];
  metadataUrl: string;
}

// Tags by keyword, as in PS3.6.
const TAG = {
  StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E",
  SOPInstanceUID: "00080018",
  InstanceNumber: "00200013",
  SeriesNumber: "00200011",
  Modality: "00080060",
  BodyPartExamined: "00180015",
  SeriesDescription: "0008103E",
  NumberOfFrames: "00280008",
  Rows: "00280010",
  PhotometricInterpretation: "00280004",
  Columns: "00280011",
  PixelSpacing: "00280030",
  ImagerPixelSpacing: "00181164",
  EstimatedRadiographicMagnificationFactor: "00181114",
  SequenceOfUltrasoundRegions: "00186011",
  ViewPosition: "00185101",
  ViewCodeSequence: "00540220",
  CodeMeaning: "00080104",
  ImageLaterality: "00200062",
  Laterality: "00200060",
  AcquisitionDeviceProcessingDescription: "00181400",
  CineRate: "00180040",
  FrameTime: "00181063",
  RecommendedDisplayFrameRate: "00082144",
} as const;

export function first(ds: DicomJson, tag: string): unknown {
  return ds[tag]?.Value?.[0];
}

export function text(ds: DicomJson, tag: string): string {
  const value = first(ds, tag);
  if (value === undefined || value === null) {
    return "";
  }
  if (typeof value === "object" && "Alphabetic" in (value as object)) {
    return String((value as { Alphabetic: string }).Alphabetic);
  }
  return String(value);
}

export function num(ds: DicomJson, tag: string): number | null {
  const value = first(ds, tag);
  if (value === undefined || value === null || value === "") {
    return null;
  }
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : null;
}

export function numbers(ds: DicomJson, tag: string): number[] {
  return (ds[tag]?.Value ?? []).map(Number).filter(Number.isFinite);
}

function viewLabel(ds: DicomJson): string {
  const code = first(ds, TAG.ViewCodeSequence) as DicomJson | undefined;
  const meaning = code ? text(code, TAG.CodeMeaning) : "";
  return (
    meaning ||
    text(ds, TAG.AcquisitionDeviceProcessingDescription) ||
    text(ds, TAG.ViewPosition)
  );
}

function framesPerSecond(ds: DicomJson): number {
  const rate = num(ds, TAG.CineRate) ?? num(ds, TAG.RecommendedDisplayFrameRate);
  if (rate && rate > 0) {
    return rate;
  }
  const frameTime = num(ds, TAG.FrameTime);
  if (frameTime && frameTime > 0) {
    return Math.round(1000 / frameTime);
  }
  return 25;
}

export interface Spacing {
  row: number;
  column: number;
  source: string;
}

/**
 * The pixel spacing lengths are measured with (PS3.3 10.7.1.3).
 *
 * (0028,0030) Pixel Spacing when the image has it; else (0018,1164) Imager
 * Pixel Spacing, which is at the detector, divided by (0018,1114) Estimated
 * Radiographic Magnification Factor when that is given.
 */
export function spacingOf(ds: DicomJson): Spacing | null {
  const spacing = numbers(ds, TAG.PixelSpacing);
  if (spacing.length === 2 && spacing[0] > 0 && spacing[1] > 0) {
    return { row: spacing[0], column: spacing[1], source: "Pixel Spacing" };
  }
  const imager = numbers(ds, TAG.ImagerPixelSpacing);
  if (imager.length === 2 && imager[0] > 0 && imager[1] > 0) {
    const ermf = num(ds, TAG.EstimatedRadiographicMagnificationFactor);
    if (ermf && ermf > 0) {
      return {
        row: imager[0] / ermf,
        column: imager[1] / ermf,
        source: `Imager Pixel Spacing / magnification ${ermf}`,
      };
    }
    return {
      row: imager[0],
      column: imager[1],
      source: "Imager Pixel Spacing (at the detector, magnification not corrected)",
    };
  }
  return null;
}

/**
 * True when lengths can be given in physical units: a pixel spacing
 * (PS3.3 10.7.1.3), or ultrasound regions with a physical delta
 * (PS3.3 C.8.5.5.1: (0018,602C) Physical Delta X).
 */
export function isCalibrated(ds: DicomJson): boolean {
  if (spacingOf(ds)) {
    return true;
  }
  const regions = (ds[TAG.SequenceOfUltrasoundRegions]?.Value ?? []) as DicomJson[];
  return regions.some((region) => (num(region, "0018602C") ?? 0) !== 0);
}

// Per colour: Palette Color Lookup Table Descriptor, Data (PS3.3 C.7.6.3.1.6)
// and Segmented Data (PS3.3 C.7.9.2).
const PALETTE = [
  ["Red", "00281101", "00281201", "00281221"],
  ["Green", "00281102", "00281202", "00281222"],
  ["Blue", "00281103", "00281203", "00281223"],
] as const;

/** Write a tag as PS3.6 does: "00281201" gives "(0028,1201)". */
function tagName(tag: string): string {
  return `(${tag.slice(0, 4)},${tag.slice(4)})`;
}

function base64Bytes(encoded: string): Uint8Array {
  return Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
}

/**
 * Read little-endian 16-bit words, the byte order of OW values in the DICOM
 * JSON of a little-endian file.
 */
function words(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.byteLength >> 1 }, (_, i) => view.getUint16(2 * i, true));
}

/**
 * Expand a segmented palette table (PS3.3 C.7.9.2): discrete segments (type
 * 0) give their values, linear segments (type 1) run from the last value to
 * theirs. Indirect segments (type 2) are not expanded.
 */
function expandSegmented(data: number[], colour: string): number[] {
  const table: number[] = [];
  let offset = 0;
  // `offset + 1`: the data may end in a padding value.
  while (offset + 1 < data.length) {
    const type = data[offset];
    const length = data[offset + 1];
    offset += 2;
    if (type === 0) {
      for (const value of data.slice(offset, offset + length)) {
        table.push(value);
      }
      offset += length;
    } else if (type === 1 && table.length) {
      const from = table[table.length - 1];
      const to = data[offset++];
      for (let i = 1; i <= length; i++) {
        table.push(Math.round(from + ((to - from) * i) / length));
      }
    } else {
      const name = `its Segmented ${colour} Palette Color Lookup Table Data`;
      if (type === 2) {
        throw new Error(`${name} has an indirect segment, which the viewer cannot expand`);
      }
      if (type === 1) {
        throw new Error(`${name} is invalid: it starts with a linear segment`);
      }
      throw new Error(`${name} is invalid: it has a segment of unknown type ${type}`);
    }
  }
  return table;
}

/** Return one palette colour table as numbers, or throw saying why there is none. */
function paletteTable(ds: DicomJson, [colour, descriptorTag, dataTag, segmentedTag]: (typeof PALETTE)[number]): number[] {
  const descriptor = numbers(ds, descriptorTag);
  if (descriptor.length !== 3) {
    throw new Error(
      `its ${colour} Palette Color Lookup Table Descriptor ${tagName(descriptorTag)} is missing`,
    );
  }
  const entries = descriptor[0] || 65536;
  const plain = ds[dataTag];
  const segmented = ds[segmentedTag];
  if (plain?.InlineBinary) {
    const bytes = base64Bytes(plain.InlineBinary);
    // 8-bit entries come one a byte or one a 16-bit word. The length shows
    // which, as in pydicom's apply_color_lut.
    return bytes.byteLength === entries ? Array.from(bytes) : words(bytes);
  }
  if (segmented?.InlineBinary) {
    const bytes = base64Bytes(segmented.InlineBinary);
    return expandSegmented(descriptor[2] === 8 ? Array.from(bytes) : words(bytes), colour);
  }
  if (plain?.BulkDataURI || segmented?.BulkDataURI) {
    throw new Error(
      `its ${colour} Palette Color Lookup Table Data was sent as bulk data, which the viewer does not fetch`,
    );
  }
  throw new Error(
    `its ${colour} Palette Color Lookup Table Data ${tagName(dataTag)} or ${tagName(segmentedTag)} is missing`,
  );
}

/**
 * Return an instance's metadata in the form Cornerstone's WADO-RS loader
 * needs, or the reason the viewer cannot draw the image.
 *
 * The loader (@cornerstonejs/dicom-image-loader 4.22) reads values from
 * `Value` only and takes two things for granted. When either is missing it
 * throws where the viewer cannot catch it (seen in Chromium): the image never
 * loads and no error reaches the viewer.
 * - (0008,0060) Modality. For an image without (0020,0037) Image Orientation
 *   (Patient) the loader calls Modality.includes(). An absent or empty
 *   Modality is given as an empty string.
 * - The palette colour tables of a PALETTE COLOR image. They are OW, which
 *   DICOM JSON carries as InlineBinary, never as Value, and the loader does
 *   not read segmented tables at all. Both kinds are decoded into the numbers
 *   it reads from (0028,1201-1203).
 */
export function loaderMetadata(ds: DicomJson): { metadata: DicomJson; problem: string } {
  const metadata: DicomJson = { ...ds };
  if (!text(ds, TAG.Modality)) {
    metadata[TAG.Modality] = { vr: "CS", Value: [""] };
  }
  if (text(ds, TAG.PhotometricInterpretation) === "PALETTE COLOR") {
    try {
      for (const colour of PALETTE) {
        metadata[colour[2]] = { vr: "US", Value: paletteTable(ds, colour) };
      }
    } catch (error) {
      return { metadata, problem: error instanceof Error ? error.message : String(error) };
    }
  }
  return { metadata, problem: "" };
}

export function studyMetadataUrl(root: string, studyUID: string): string {
  return `${root}/studies/${studyUID}/metadata`;
}

export function instanceUrl(root: string, image: Pick<ImageRef, "studyInstanceUID" | "seriesInstanceUID" | "sopInstanceUID">): string {
  return `${root}/studies/${image.studyInstanceUID}/series/${image.seriesInstanceUID}/instances/${image.sopInstanceUID}`;
}

/** Fetch a study's metadata and register every frame with the wadors loader. */
export async function loadStudy(root: string, studyUID: string): Promise<StudyModel> {
  const metadataUrl = studyMetadataUrl(root, studyUID);
  const response = await fetch(metadataUrl, {
    credentials: "same-origin",
    headers: { Accept: "application/dicom+json" },
  });
  if (!response.ok) {
    throw new Error(
      `study ${studyUID}: ${metadataUrl} answered ${response.status}` +
        (response.status === 503 || response.status === 0
          ? " (no signal, and this study is not stored on this device)"
          : ""),
    );
  }
  const instances = (await response.json()) as DicomJson[];
  return buildStudy(root, studyUID, metadataUrl, instances);
}

export function buildStudy(
  root: string,
  studyUID: string,
  metadataUrl: string,
  instances: DicomJson[],
): StudyModel {
  const bySeries = new Map<string, SeriesRef>();
  const unshowable: UnshowableImage[] = [];
  for (const ds of instances) {
    const rows = num(ds, TAG.Rows) ?? 0;
    const columns = num(ds, TAG.Columns) ?? 0;
    if (!rows || !columns) {
      continue; // Not an image (a report, a presentation state...).
    }
    const { metadata, problem } = loaderMetadata(ds);
    if (problem) {
      unshowable.push({
        sopInstanceUID: text(ds, TAG.SOPInstanceUID),
        instanceNumber: num(ds, TAG.InstanceNumber),
        modality: text(ds, TAG.Modality),
        reason: problem,
      });
      continue;
    }
    const seriesUID = text(ds, TAG.SeriesInstanceUID);
    let series = bySeries.get(seriesUID);
    if (!series) {
      series = {
        seriesInstanceUID: seriesUID,
        seriesNumber: num(ds, TAG.SeriesNumber),
        modality: text(ds, TAG.Modality),
        bodyPart: text(ds, TAG.BodyPartExamined),
        description: text(ds, TAG.SeriesDescription),
        images: [],
      };
      bySeries.set(seriesUID, series);
    }
    const ref = {
      studyInstanceUID: studyUID,
      seriesInstanceUID: seriesUID,
      sopInstanceUID: text(ds, TAG.SOPInstanceUID),
    };
    const base = instanceUrl(root, ref);
    const numberOfFrames = Math.max(1, num(ds, TAG.NumberOfFrames) ?? 1);
    const imageIds: string[] = [];
    for (let frame = 1; frame <= numberOfFrames; frame++) {
      imageIds.push(`wadors:${base}/frames/${frame}`);
    }
    // Registered under frame 1; the loader derives the other frames from it.
    wadors.metaDataManager.add(imageIds[0], metadata as never);
    // Cornerstone's WADO-RS metadata takes no Imager Pixel Spacing and marks a
    // radiograph without patient orientation as uncalibrated; give it the
    // spacing to measure with (scale 1: lengths in millimetres).
    const spacing = spacingOf(ds);
    if (spacing) {
      for (const imageId of imageIds) {
        utilities.calibratedPixelSpacingMetadataProvider.add(imageId, {
          rowPixelSpacing: spacing.row,
          columnPixelSpacing: spacing.column,
          scale: 1,
        } as never);
      }
    }
    series.images.push({
      ...ref,
      instanceNumber: num(ds, TAG.InstanceNumber),
      numberOfFrames,
      rows,
      columns,
      viewLabel: viewLabel(ds),
      laterality: text(ds, TAG.ImageLaterality) || text(ds, TAG.Laterality),
      calibrated: isCalibrated(ds),
      calibrationSource: spacing?.source ?? "",
      framesPerSecond: framesPerSecond(ds),
      imageIds,
      thumbnailUrl: `${base}/thumbnail`,
      metadata: ds,
    });
  }
  const series = [...bySeries.values()];
  for (const s of series) {
    s.images.sort((a, b) => (a.instanceNumber ?? 0) - (b.instanceNumber ?? 0));
  }
  series.sort((a, b) => (a.seriesNumber ?? 0) - (b.seriesNumber ?? 0));
  return { studyInstanceUID: studyUID, series, unshowable, metadataUrl };
}

/** Every frame URL of a study: what must be stored for it to open offline. */
export function frameUrls(study: StudyModel): string[] {
  return study.series.flatMap((s) =>
    s.images.flatMap((image) => image.imageIds.map((id) => id.slice("wadors:".length))),
  );
}

/**
 * The series of `candidate` that best matches `current` for a comparison:
 * same body part first, then same view and laterality, then same modality.
 */
export function matchingSeries(current: SeriesRef, candidate: StudyModel): SeriesRef | null {
  let best: SeriesRef | null = null;
  let bestScore = -1;
  const views = new Set(current.images.map((i) => `${i.viewLabel}|${i.laterality}`));
  for (const s of candidate.series) {
    let score = 0;
    if (current.bodyPart && s.bodyPart.toUpperCase() === current.bodyPart.toUpperCase()) {
      score += 4;
    }
    if (s.images.some((i) => views.has(`${i.viewLabel}|${i.laterality}`))) {
      score += 2;
    }
    if (s.modality === current.modality) {
      score += 1;
    }
    if (score > bestScore) {
      best = s;
      bestScore = score;
    }
  }
  return best;
}
