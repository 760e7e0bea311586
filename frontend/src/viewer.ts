// Fetlock's diagnostic viewer: Cornerstone3D stack viewports fed by Fetlock's
// own WADO-RS, with the clinical tools, a hanging grid for radiograph views,
// side-by-side comparison with a prior, cine for multi-frame ultrasound, key
// images for the report, and offline storage of every study opened.
//
// The page (templates/viewer/study.html) renders the study, the horse and its
// priors into #viewer-config; this module builds the rest. window.fetlockViewer
// exposes the state to the browser tests and the benchmark.

import "./viewer.css";

import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  getShouldUseCPURendering,
  imageLoader,
  init as coreInit,
  metaData,
  setUseCPURendering,
  utilities as coreUtilities,
  type Types,
} from "@cornerstonejs/core";
import { init as loaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import * as tools from "@cornerstonejs/tools";

import { readConfig, type StudySummary, type ViewerConfig } from "./config";
import { markKeyImage as sendKeyImage } from "./key-images";
import { formatDate, keepOffline, markViewed } from "./offline-cache";
import {
  effectiveBudget,
  getStudy,
  listStudies,
  removeStudy,
  setBudgetSetting,
  STUDY_CACHE,
} from "./offline-store";
import {
  buildStudy,
  loadStudy,
  matchingSeries,
  studyMetadataUrl,
  type DicomJson,
  type ImageRef,
  type SeriesRef,
  type StudyModel,
  type UnshowableImage,
} from "./study";
import { warmUpDecoder } from "./warm-decoder";

const {
  AngleTool,
  LengthTool,
  PanTool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  Enums: ToolEnums,
} = tools;

const RENDERING_ENGINE_ID = "fetlock-viewer";
const TOOL_GROUP_ID = "fetlock-tools";
const PROJECTION_MODALITIES = new Set(["CR", "DX", "RG", "DR", "MG", "XA", "RF", "PX"]);
const MAX_GRID = 9;

type PrimaryTool = "WindowLevel" | "Pan" | "Zoom" | "Length" | "Angle";
type Layout = "single" | "grid" | "compare";

/** What one viewport shows: images of one series of one study. */
interface PaneSource {
  study: StudyModel;
  series: SeriesRef;
  /** The images of the stack; a multi-frame image contributes its frames. */
  images: ImageRef[];
  imageIds: string[];
  index: number;
  caption: string;
}

interface Pane {
  id: string;
  element: HTMLDivElement;
  overlay: HTMLDivElement;
  warning: HTMLDivElement;
  source: PaneSource;
  viewport: Types.IStackViewport;
  playing: boolean;
  framesPerSecond: number;
}

interface Measurement {
  tool: string;
  value: number;
  unit: string;
  text: string;
  sopInstanceUID: string;
  /** The handles in image pixel coordinates (column, row). */
  points: number[][];
}

const state = {
  config: null as ViewerConfig | null,
  engine: null as RenderingEngine | null,
  study: null as StudyModel | null,
  prior: null as StudyModel | null,
  series: null as SeriesRef | null,
  imageIndex: 0,
  layout: "single" as Layout,
  panes: [] as Pane[],
  active: 0,
  primaryTool: "WindowLevel" as PrimaryTool,
  firstImageAt: null as number | null,
  ready: false,
  error: null as string | null,
  offline: { status: "not stored", done: 0, total: 0, complete: false },
  keyImages: [] as string[],
  /** Milliseconds since navigation start at each step of opening a study. */
  timings: {} as Record<string, number>,
};

function mark(step: string): void {
  state.timings[step] = Math.round(performance.now());
}

// ---------------------------------------------------------------- set-up

/**
 * Cornerstone's core and image loader: enough to load and decode images,
 * which can then start while the tools and the rendering engine are set up.
 */
function initLoader(config: ViewerConfig): void {
  if (config.renderMode === "cpu" || (config.renderMode === "auto" && softwareWebGL())) {
    setUseCPURendering(true);
  }
  coreInit();
  const workers = Math.max(1, Math.min(2, (navigator.hardwareConcurrency || 2) - 1));
  loaderInit({
    maxWebWorkers: workers,
    // Ask for the stored form (PS3.18 8.7.3.5): compressed bytes pass through
    // and the browser decodes them; the header is set by Fetlock's settings.
    beforeSend: () => ({ Accept: config.frameAccept }),
  });
  // Frames are asked for as JPEG-LS (Fetlock's default): warm its decoder.
  if (config.frameAccept.includes("1.2.840.10008.1.2.4.80")) {
    void warmUpDecoder(workers);
  }
  // The spacing study.ts registers for each image (see spacingOf) is read
  // through this provider, ahead of the loader's own. WebGL viewports read it
  // as calibratedPixelSpacing. The CPU renderer reads only the calibration
  // module, so the spacing is merged over the loader's entry for that module.
  const calibration = coreUtilities.calibratedPixelSpacingMetadataProvider;
  metaData.addProvider((type: string, imageId: string) => {
    if (type === Enums.MetadataModules.CALIBRATION) {
      const spacing = calibration.get("calibratedPixelSpacing", imageId);
      return spacing ? { ...wadors.metaData.metaDataProvider(type, imageId), ...spacing } : undefined;
    }
    return calibration.get(type, imageId);
  }, 11000);

  // The image loader reports a failure as IMAGE_LOAD_FAILED, a stack
  // viewport as IMAGE_LOAD_ERROR; both carry the image id and the error.
  const onLoadFailure = (event: Event): void => {
    const detail = (event as CustomEvent<{ imageId?: string; error?: unknown }>).detail ?? {};
    const sop = /instances\/([0-9.]+)\//.exec(detail.imageId ?? "")?.[1] ?? "an image";
    const reason =
      detail.error instanceof Error
        ? detail.error.message
        : detail.error
          ? String(detail.error)
          : "it could not be loaded";
    showError(
      `Could not show ${sop}: ${reason}. Reload the page; if it fails again, ` +
        "the stored image may be damaged.",
    );
  };
  eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_FAILED, onLoadFailure);
  eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_ERROR, onLoadFailure);
  eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, () => {
    if (state.timings.imageLoaded === undefined) {
      mark("imageLoaded");
    }
  });
}

/**
 * True when WebGL is drawn by the CPU (SwiftShader, llvmpipe): Cornerstone's
 * own CPU renderer then draws a radiograph two to three times faster.
 */
function softwareWebGL(): boolean {
  const canvas = document.createElement("canvas");
  const gl = canvas.getContext("webgl2") ?? canvas.getContext("webgl");
  if (!gl) {
    return false; // no WebGL at all: Cornerstone falls back to its CPU renderer itself
  }
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|softpipe|software/i.test(renderer);
}

/** Set up the tools and the rendering engine; call after initLoader. */
function initViewer(): void {
  tools.init();
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, LengthTool, AngleTool]) {
    tools.addTool(tool);
  }
  const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID);
  if (!group) {
    throw new Error("could not create the Cornerstone tool group");
  }
  for (const tool of [WindowLevelTool, PanTool, StackScrollTool, LengthTool, AngleTool]) {
    group.addTool(tool.toolName);
  }
  // Pinch zooms and pans with two fingers; the right button zooms, the middle
  // button pans and the wheel moves through a stack whatever the primary tool.
  group.addTool(ZoomTool.toolName, { pinchToZoom: true, pan: true });
  group.setToolActive(ZoomTool.toolName, {
    bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }, { numTouchPoints: 2 }],
  });
  group.setToolActive(StackScrollTool.toolName, {
    bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }],
  });
  setPrimaryTool("WindowLevel");
  state.engine = new RenderingEngine(RENDERING_ENGINE_ID);
  eventTarget.addEventListener(tools.Enums.Events.ANNOTATION_COMPLETED, renderMeasurements);
  eventTarget.addEventListener(tools.Enums.Events.ANNOTATION_MODIFIED, renderMeasurements);
  eventTarget.addEventListener(tools.Enums.Events.ANNOTATION_REMOVED, renderMeasurements);
}

function toolGroup() {
  const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID);
  if (!group) {
    throw new Error("Cornerstone tool group missing");
  }
  return group;
}

function setPrimaryTool(name: PrimaryTool): void {
  const group = toolGroup();
  const primary = { mouseButton: ToolEnums.MouseBindings.Primary };
  const oneFinger = { numTouchPoints: 1 };
  for (const tool of ["WindowLevel", "Pan", "Length", "Angle"] as const) {
    if (tool !== name) {
      group.setToolPassive(tool);
    }
  }
  if (name === "Zoom") {
    group.setToolActive(ZoomTool.toolName, {
      bindings: [
        primary,
        { mouseButton: ToolEnums.MouseBindings.Secondary },
        { numTouchPoints: 2 },
      ],
    });
  } else {
    group.setToolActive(ZoomTool.toolName, {
      bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }, { numTouchPoints: 2 }],
    });
    group.setToolActive(name, { bindings: [primary, oneFinger] });
  }
  if (name !== "Pan") {
    group.setToolActive(PanTool.toolName, {
      bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }],
    });
  }
  state.primaryTool = name;
  document.querySelectorAll<HTMLButtonElement>("[data-tool]").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.tool === name));
  });
}

// ---------------------------------------------------------------- panes

function activePane(): Pane | undefined {
  return state.panes[state.active] ?? state.panes[0];
}

function stackFor(study: StudyModel, series: SeriesRef, imageIndex: number): PaneSource {
  const image = series.images[Math.min(imageIndex, series.images.length - 1)];
  if (image.numberOfFrames > 1) {
    return {
      study,
      series,
      images: [image],
      imageIds: image.imageIds,
      index: 0,
      caption: captionOf(study, series, image),
    };
  }
  const singles = series.images.filter((i) => i.numberOfFrames === 1);
  return {
    study,
    series,
    images: singles,
    imageIds: singles.map((i) => i.imageIds[0]),
    index: Math.max(0, singles.indexOf(image)),
    caption: captionOf(study, series, image),
  };
}

function singleImage(study: StudyModel, series: SeriesRef, image: ImageRef): PaneSource {
  return {
    study,
    series,
    images: [image],
    imageIds: image.numberOfFrames > 1 ? image.imageIds : [image.imageIds[0]],
    index: 0,
    caption: captionOf(study, series, image),
  };
}

function summaryOf(study: StudyModel): StudySummary | undefined {
  const config = state.config!;
  if (study.studyInstanceUID === config.study.studyInstanceUID) {
    return config.study;
  }
  return config.priors.find((p) => p.studyInstanceUID === study.studyInstanceUID);
}

function captionOf(study: StudyModel, series: SeriesRef, image: ImageRef): string {
  const summary = summaryOf(study);
  const date = formatDate(summary?.studyDate ?? null);
  const view = image.viewLabel || series.description || series.bodyPart;
  const prefix = study === state.study ? "" : "Prior ";
  return `${prefix}${date} ${series.modality} ${view}`.trim();
}

function limbOf(image: ImageRef, series: SeriesRef): string {
  const match = /\b(LF|RF|LH|RH)\b/i.exec(`${image.viewLabel} ${series.description}`);
  return match ? match[1].toUpperCase() : image.laterality || "";
}

async function setPanes(layout: Layout, sources: PaneSource[]): Promise<void> {
  const engine = state.engine!;
  const container = document.getElementById("viewports")!;
  for (const pane of state.panes) {
    tools.utilities.cine.stopClip(pane.element);
    engine.disableElement(pane.id);
  }
  container.replaceChildren();
  container.dataset.layout = layout;
  container.dataset.count = String(sources.length);
  container.style.setProperty("--columns", String(gridColumns(layout, sources.length)));

  const panes: Pane[] = [];
  sources.forEach((source, index) => {
    const id = `pane-${index}`;
    const wrapper = document.createElement("div");
    wrapper.className = "pane";
    wrapper.dataset.index = String(index);
    const element = document.createElement("div");
    element.className = "pane-canvas";
    element.oncontextmenu = (event) => event.preventDefault();
    const overlay = document.createElement("div");
    overlay.className = "pane-overlay";
    const warning = document.createElement("div");
    warning.className = "pane-warning";
    warning.setAttribute("role", "status");
    wrapper.append(element, overlay, warning);
    wrapper.addEventListener("pointerdown", () => setActive(index));
    container.append(wrapper);
    panes.push({
      id,
      element,
      overlay,
      warning,
      source,
      viewport: null as unknown as Types.IStackViewport,
      playing: false,
      framesPerSecond: source.images[0].framesPerSecond,
    });
  });

  engine.setViewports(
    panes.map((pane) => ({
      viewportId: pane.id,
      type: Enums.ViewportType.STACK,
      element: pane.element,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 },
    })),
  );
  const group = toolGroup();
  for (const pane of panes) {
    pane.viewport = engine.getViewport(pane.id) as Types.IStackViewport;
    group.addViewport(pane.id, RENDERING_ENGINE_ID);
    pane.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => onRendered(pane));
    pane.element.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => updateOverlay(pane));
    pane.element.addEventListener(Enums.Events.VOI_MODIFIED, () => {
      updateOverlay(pane);
      syncWindowControls();
    });
  }
  state.panes = panes;
  state.layout = layout;
  state.active = 0;
  await Promise.all(
    panes.map(async (pane) => {
      await pane.viewport.setStack(pane.source.imageIds, pane.source.index);
      pane.viewport.render();
      updateOverlay(pane);
    }),
  );
  setActive(0);
  renderToolbarState();
}

function gridColumns(layout: Layout, count: number): number {
  if (layout === "compare") {
    return window.innerWidth < window.innerHeight ? 1 : 2;
  }
  if (layout === "single") {
    return 1;
  }
  if (window.innerWidth < 600) {
    return count > 1 ? 2 : 1;
  }
  return Math.ceil(Math.sqrt(count));
}

function setActive(index: number): void {
  state.active = index;
  state.panes.forEach((pane, i) => {
    pane.element.parentElement?.classList.toggle("active", i === index);
  });
  syncWindowControls();
  renderCineControls();
  renderStripSelection();
}

function currentImage(pane: Pane): ImageRef {
  const index = pane.viewport.getCurrentImageIdIndex();
  return pane.source.images.length === 1 ? pane.source.images[0] : pane.source.images[index];
}

function onRendered(pane: Pane): void {
  const imageId = pane.viewport.getCurrentImageId();
  const image = imageId ? cache.getImage(imageId) : undefined;
  if (
    state.firstImageAt === null &&
    image &&
    (image.imageQualityStatus === undefined ||
      image.imageQualityStatus === Enums.ImageQualityStatus.FULL_RESOLUTION)
  ) {
    state.firstImageAt = Date.now();
    mark("firstImage");
    document.dispatchEvent(
      new CustomEvent("fetlock:first-image", { detail: { at: state.firstImageAt, imageId } }),
    );
  }
}

function updateOverlay(pane: Pane): void {
  const image = currentImage(pane);
  const props = pane.viewport.getProperties();
  const voi = props.voiRange;
  const frames =
    image.numberOfFrames > 1
      ? ` · frame ${pane.viewport.getCurrentImageIdIndex() + 1}/${image.numberOfFrames}`
      : pane.source.images.length > 1
        ? ` · ${pane.viewport.getCurrentImageIdIndex() + 1}/${pane.source.images.length}`
        : "";
  const wl = voi
    ? ` · W ${Math.round(voi.upper - voi.lower)} L ${Math.round((voi.upper + voi.lower) / 2)}`
    : "";
  pane.overlay.textContent = `${pane.source.caption}${frames}${wl}`;
  const marked = state.keyImages.includes(image.sopInstanceUID) ? " ★" : "";
  pane.overlay.textContent += marked;
  pane.warning.textContent = image.calibrated
    ? ""
    : "No pixel spacing in this image: lengths are in pixels, not millimetres.";
  pane.warning.hidden = image.calibrated;
}

// ---------------------------------------------------------------- layouts

async function showSingle(series: SeriesRef, imageIndex: number): Promise<void> {
  state.series = series;
  state.imageIndex = imageIndex;
  await setPanes("single", [stackFor(state.study!, series, imageIndex)]);
  renderStrip();
}

async function showGrid(series: SeriesRef, imageIndex: number): Promise<void> {
  state.series = series;
  state.imageIndex = imageIndex;
  const selected = series.images[imageIndex];
  const limb = limbOf(selected, series);
  const views = series.images.filter((i) => limbOf(i, series) === limb).slice(0, MAX_GRID);
  await setPanes(
    "grid",
    views.map((image) => singleImage(state.study!, series, image)),
  );
  renderStrip();
}

async function showCompare(priorUID: string): Promise<void> {
  const config = state.config!;
  setStatus(`Loading the prior study for comparison…`);
  const prior = await loadStudy(config.dicomwebRoot, priorUID);
  state.prior = prior;
  const current = state.series!;
  const match = matchingSeries(current, prior);
  if (!match) {
    setStatus("The prior study has no images to compare.");
    return;
  }
  const image = current.images[state.imageIndex] ?? current.images[0];
  const priorImage =
    match.images.find(
      (i) => i.viewLabel === image.viewLabel && i.laterality === image.laterality,
    ) ?? match.images[0];
  await setPanes("compare", [
    stackFor(state.study!, current, current.images.indexOf(image)),
    stackFor(prior, match, match.images.indexOf(priorImage)),
  ]);
  setStatus(`Comparing with the study of ${formatDate(summaryOf(prior)?.studyDate ?? null)}.`);
  document.querySelectorAll<HTMLElement>("[data-compare]").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.compare === priorUID));
  });
  void markViewed(config, priorUID).then(() =>
    keepOffline(config, prior, () => undefined).catch(() => false),
  );
}

// ---------------------------------------------------------------- image tools

function withActive(action: (pane: Pane) => void): void {
  const pane = activePane();
  if (pane) {
    action(pane);
    pane.viewport.render();
    updateOverlay(pane);
  }
}

function rotate(): void {
  withActive((pane) => {
    const rotation = pane.viewport.getViewPresentation().rotation ?? 0;
    pane.viewport.setViewPresentation({ rotation: (rotation + 90) % 360 });
  });
}

function flip(horizontal: boolean): void {
  withActive((pane) => {
    const camera = pane.viewport.getCamera();
    pane.viewport.setCamera(
      horizontal
        ? { flipHorizontal: !camera.flipHorizontal }
        : { flipVertical: !camera.flipVertical },
    );
  });
}

function invert(): void {
  withActive((pane) => {
    pane.viewport.setProperties({ invert: !pane.viewport.getProperties().invert });
  });
}

function reset(): void {
  withActive((pane) => {
    pane.viewport.resetCamera();
    pane.viewport.resetProperties();
  });
}

/** Zoom so that one image pixel covers one device pixel: no resampling. */
function actualPixels(): void {
  withActive((pane) => {
    const devicePerImagePixel = devicePixelsPerImagePixel(pane);
    if (devicePerImagePixel > 0) {
      pane.viewport.setZoom(pane.viewport.getZoom() / devicePerImagePixel);
    }
  });
}

function devicePixelsPerImagePixel(pane: Pane): number {
  const imageId = pane.viewport.getCurrentImageId();
  const origin = coreUtilities.imageToWorldCoords(imageId, [0, 0]);
  const step = coreUtilities.imageToWorldCoords(imageId, [1, 0]);
  if (!origin || !step) {
    return 0;
  }
  const a = pane.viewport.worldToCanvas(origin);
  const b = pane.viewport.worldToCanvas(step);
  return Math.hypot(b[0] - a[0], b[1] - a[1]) * window.devicePixelRatio;
}

interface WindowPreset {
  label: string;
  lower: number;
  upper: number;
}

function windowPresets(pane: Pane): WindowPreset[] {
  const imageId = pane.viewport.getCurrentImageId();
  const presets: WindowPreset[] = [];
  const voi = metaData.get("voiLutModule", imageId) as
    | { windowCenter?: number | number[]; windowWidth?: number | number[]; windowCenterAndWidthExplanation?: string | string[] }
    | undefined;
  const centers = ([] as number[]).concat(voi?.windowCenter ?? []);
  const widths = ([] as number[]).concat(voi?.windowWidth ?? []);
  const explanations = ([] as string[]).concat(voi?.windowCenterAndWidthExplanation ?? []);
  centers.forEach((center, i) => {
    const width = widths[i] ?? widths[0];
    if (width > 0) {
      presets.push({
        label: `File: ${explanations[i] || `W ${width} L ${center}`}`,
        lower: center - width / 2,
        upper: center + width / 2,
      });
    }
  });
  const image = cache.getImage(imageId);
  if (image) {
    const slope = image.slope ?? 1;
    const intercept = image.intercept ?? 0;
    const low = image.minPixelValue * slope + intercept;
    const high = image.maxPixelValue * slope + intercept;
    presets.push({ label: "Full range", lower: low, upper: high });
    const span = high - low;
    if (PROJECTION_MODALITIES.has(pane.source.series.modality)) {
      presets.push({ label: "Bone (narrow)", lower: low + span * 0.35, upper: low + span * 0.85 });
      presets.push({ label: "Soft tissue (wide)", lower: low + span * 0.05, upper: low + span * 0.7 });
    }
  }
  if (pane.source.series.modality === "CT") {
    presets.push({ label: "CT soft tissue", lower: 40 - 200, upper: 40 + 200 });
    presets.push({ label: "CT bone", lower: 500 - 1000, upper: 500 + 1000 });
    presets.push({ label: "CT lung", lower: -600 - 750, upper: -600 + 750 });
  }
  return presets;
}

function applyWindow(lower: number, upper: number): void {
  withActive((pane) => pane.viewport.setProperties({ voiRange: { lower, upper } }));
  syncWindowControls();
}

function syncWindowControls(): void {
  const pane = activePane();
  const select = document.getElementById("wl-preset") as HTMLSelectElement | null;
  const width = document.getElementById("wl-width") as HTMLInputElement | null;
  const center = document.getElementById("wl-center") as HTMLInputElement | null;
  if (!pane || !select || !width || !center) {
    return;
  }
  const presets = windowPresets(pane);
  select.replaceChildren(
    new Option("Window presets…", ""),
    ...presets.map((p, i) => new Option(p.label, String(i))),
  );
  const full = presets.find((p) => p.label === "Full range");
  const voi = pane.viewport.getProperties().voiRange;
  if (full) {
    const span = Math.max(1, full.upper - full.lower);
    width.min = "1";
    width.max = String(Math.ceil(span * 2));
    center.min = String(Math.floor(full.lower - span / 2));
    center.max = String(Math.ceil(full.upper + span / 2));
  }
  if (voi) {
    width.value = String(Math.round(voi.upper - voi.lower));
    center.value = String(Math.round((voi.upper + voi.lower) / 2));
  }
}

// ---------------------------------------------------------------- cine

function renderCineControls(): void {
  const bar = document.getElementById("cine")!;
  const pane = activePane();
  const multiFrame = pane ? pane.source.images.length === 1 && pane.source.images[0].numberOfFrames > 1 : false;
  bar.hidden = !multiFrame;
  if (!pane || !multiFrame) {
    return;
  }
  (document.getElementById("cine-play") as HTMLButtonElement).textContent = pane.playing
    ? "Pause"
    : "Play";
  (document.getElementById("cine-fps") as HTMLInputElement).value = String(pane.framesPerSecond);
}

function playCine(pane: Pane, play: boolean): void {
  tools.utilities.cine.stopClip(pane.element);
  pane.playing = play;
  if (play) {
    tools.utilities.cine.playClip(pane.element, {
      framesPerSecond: pane.framesPerSecond,
      loop: true,
    });
  }
  renderCineControls();
}

// ---------------------------------------------------------------- measurements

function measurementList(): Measurement[] {
  const list: Measurement[] = [];
  for (const annotation of tools.annotation.state.getAllAnnotations()) {
    const tool = annotation.metadata?.toolName;
    const stats = Object.values(
      (annotation.data as { cachedStats?: Record<string, Record<string, unknown>> })
        .cachedStats ?? {},
    )[0];
    if (!stats) {
      continue;
    }
    const imageId = annotation.metadata?.referencedImageId ?? "";
    const sop = /instances\/([0-9.]+)\//.exec(imageId)?.[1] ?? "";
    const handles = (annotation.data as { handles?: { points?: Types.Point3[] } }).handles;
    const points = (handles?.points ?? []).map(
      (world) => coreUtilities.worldToImageCoords(imageId, world) ?? [],
    );
    if (tool === LengthTool.toolName && typeof stats.length === "number") {
      const unit = String(stats.unit ?? "mm");
      list.push({
        tool: "Length",
        value: stats.length,
        unit,
        text: `Length ${stats.length.toFixed(2)} ${unit}`,
        sopInstanceUID: sop,
        points,
      });
    } else if (tool === AngleTool.toolName && typeof stats.angle === "number") {
      list.push({
        tool: "Angle",
        value: stats.angle,
        unit: "°",
        text: `Angle ${stats.angle.toFixed(1)}°`,
        sopInstanceUID: sop,
        points,
      });
    }
  }
  return list;
}

function renderMeasurements(): void {
  const target = document.getElementById("measurements");
  if (!target) {
    return;
  }
  const items = measurementList();
  target.replaceChildren(
    ...items.map((m) => {
      const li = document.createElement("li");
      li.textContent = m.text;
      li.dataset.value = String(m.value);
      li.dataset.unit = m.unit;
      if (m.unit === "px") {
        li.append(" (uncalibrated)");
      }
      return li;
    }),
  );
  const empty = document.getElementById("measurements-empty");
  if (empty) {
    empty.hidden = items.length > 0;
  }
}

function clearMeasurements(): void {
  tools.annotation.state.removeAllAnnotations();
  state.panes.forEach((pane) => pane.viewport.render());
  renderMeasurements();
}

// ---------------------------------------------------------------- key images

async function markKeyImage(): Promise<void> {
  const config = state.config!;
  const pane = activePane();
  if (!pane || !config.keyImages) {
    return;
  }
  const image = currentImage(pane);
  const caption =
    (document.getElementById("key-caption") as HTMLInputElement | null)?.value ||
    image.viewLabel;
  try {
    await sendKeyImage(config.keyImages, config.csrfToken, {
      studyInstanceUID: image.studyInstanceUID,
      seriesInstanceUID: image.seriesInstanceUID,
      sopInstanceUID: image.sopInstanceUID,
      frame: pane.viewport.getCurrentImageIdIndex() + 1,
      instanceId: config.keyImages.instanceIds[image.sopInstanceUID] ?? null,
      caption,
    });
    state.keyImages.push(image.sopInstanceUID);
    setStatus(`Marked ${pane.source.caption} as a key image of the draft report.`);
    updateOverlay(pane);
  } catch (error) {
    setStatus(`Could not mark the key image: ${error instanceof Error ? error.message : error}`);
  }
}

// ---------------------------------------------------------------- page chrome

function setStatus(message: string): void {
  const status = document.getElementById("viewer-status");
  if (status) {
    status.textContent = message;
  }
}

function button(label: string, onClick: () => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  for (const [key, value] of Object.entries(attrs)) {
    element.setAttribute(key, value);
  }
  element.addEventListener("click", onClick);
  return element;
}

function buildToolbar(): void {
  const config = state.config!;
  const bar = document.getElementById("viewer-toolbar")!;
  const toolButtons = (
    [
      ["WindowLevel", "W/L"],
      ["Pan", "Pan"],
      ["Zoom", "Zoom"],
      ["Length", "Length"],
      ["Angle", "Angle"],
    ] as Array<[PrimaryTool, string]>
  ).map(([tool, label]) =>
    button(label, () => setPrimaryTool(tool), { "data-tool": tool, "aria-pressed": "false" }),
  );
  const layoutButtons = [
    button("1 image", () => void showSingle(state.series!, state.imageIndex), { "data-layout": "single" }),
    button("Grid", () => void showGrid(state.series!, state.imageIndex), { "data-layout": "grid" }),
  ];
  const firstPrior = config.priors.find((p) => p.sameRegion) ?? config.priors[0];
  if (firstPrior) {
    layoutButtons.push(
      button("Compare", () => void showCompare(firstPrior.studyInstanceUID), {
        "data-layout": "compare",
        title: `Side by side with ${formatDate(firstPrior.studyDate)}`,
      }),
    );
  }
  bar.replaceChildren(
    group("Tool", toolButtons),
    group("View", [
      button("1:1", actualPixels, { title: "One image pixel per screen pixel" }),
      button("Rotate", rotate, { title: "Rotate 90° clockwise" }),
      button("Flip H", () => flip(true)),
      button("Flip V", () => flip(false)),
      button("Invert", invert),
      button("Reset", reset),
    ]),
    group("Layout", layoutButtons),
    windowGroup(),
  );
  if (config.keyImages) {
    const caption = document.createElement("input");
    caption.id = "key-caption";
    caption.placeholder = "Caption";
    caption.maxLength = 200;
    bar.append(group("Report", [button("★ Key image", () => void markKeyImage(), { id: "key-image" }), caption]));
  }
  setPrimaryTool(state.primaryTool);

  const play = document.getElementById("cine-play") as HTMLButtonElement;
  const fps = document.getElementById("cine-fps") as HTMLInputElement;
  play.addEventListener("click", () => {
    const pane = activePane();
    if (pane) {
      playCine(pane, !pane.playing);
    }
  });
  fps.addEventListener("change", () => {
    const pane = activePane();
    const value = Number(fps.value);
    if (pane && value >= 1 && value <= 120) {
      pane.framesPerSecond = value;
      if (pane.playing) {
        playCine(pane, true);
      }
    }
  });
  document.getElementById("measurements-clear")?.addEventListener("click", clearMeasurements);
}

function group(label: string, children: HTMLElement[]): HTMLElement {
  const element = document.createElement("div");
  element.className = "tool-group";
  element.setAttribute("role", "group");
  element.setAttribute("aria-label", label);
  element.append(...children);
  return element;
}

function windowGroup(): HTMLElement {
  const select = document.createElement("select");
  select.id = "wl-preset";
  select.setAttribute("aria-label", "Window presets");
  select.addEventListener("change", () => {
    const pane = activePane();
    const preset = pane ? windowPresets(pane)[Number(select.value)] : undefined;
    if (preset && select.value !== "") {
      applyWindow(preset.lower, preset.upper);
    }
  });
  const width = slider("wl-width", "Window width");
  const center = slider("wl-center", "Window level");
  const onSlide = () => {
    const w = Number(width.value);
    const c = Number(center.value);
    applyWindow(c - w / 2, c + w / 2);
  };
  width.addEventListener("input", onSlide);
  center.addEventListener("input", onSlide);
  const widthLabel = document.createElement("label");
  widthLabel.append("W ", width);
  const centerLabel = document.createElement("label");
  centerLabel.append("L ", center);
  return group("Window", [select, widthLabel, centerLabel]);
}

function slider(id: string, label: string): HTMLInputElement {
  const input = document.createElement("input");
  input.type = "range";
  input.id = id;
  input.setAttribute("aria-label", label);
  return input;
}

function renderToolbarState(): void {
  document.querySelectorAll<HTMLButtonElement>("[data-layout]").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.layout === state.layout));
  });
}

function renderStrip(): void {
  const study = state.study!;
  const strip = document.getElementById("viewer-strip")!;
  const tabs = document.createElement("div");
  tabs.className = "series-tabs";
  tabs.setAttribute("role", "tablist");
  for (const series of study.series) {
    const tab = button(
      `${series.seriesNumber ?? ""} ${series.modality} ${series.description || series.bodyPart} (${series.images.length})`.trim(),
      () => void openSeries(series, 0),
      { role: "tab", "aria-selected": String(series === state.series) },
    );
    tabs.append(tab);
  }
  const thumbs = document.createElement("div");
  thumbs.className = "thumbs";
  (state.series?.images ?? []).forEach((image, index) => {
    const thumb = document.createElement("button");
    thumb.type = "button";
    thumb.className = "thumb";
    thumb.dataset.sop = image.sopInstanceUID;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = image.viewLabel || `Image ${image.instanceNumber ?? index + 1}`;
    img.src = image.thumbnailUrl;
    img.onerror = () => img.replaceWith(document.createTextNode(img.alt));
    const label = document.createElement("span");
    label.textContent =
      (image.viewLabel || `#${image.instanceNumber ?? index + 1}`) +
      (image.numberOfFrames > 1 ? ` · ${image.numberOfFrames} fr` : "");
    thumb.append(img, label);
    thumb.addEventListener("click", () => void selectImage(index));
    thumbs.append(thumb);
  });
  strip.replaceChildren(tabs, thumbs);
  renderStripSelection();
}

function renderStripSelection(): void {
  const pane = activePane();
  const sop = pane ? currentImage(pane).sopInstanceUID : null;
  document.querySelectorAll<HTMLElement>(".thumb").forEach((thumb) => {
    thumb.setAttribute("aria-current", String(thumb.dataset.sop === sop));
  });
}

async function openSeries(series: SeriesRef, imageIndex: number): Promise<void> {
  if (defaultLayout(series) === "grid") {
    await showGrid(series, imageIndex);
  } else {
    await showSingle(series, imageIndex);
  }
}

async function selectImage(index: number): Promise<void> {
  const series = state.series!;
  const image = series.images[index];
  state.imageIndex = index;
  if (state.layout === "grid") {
    const paneIndex = state.panes.findIndex((p) => p.source.images[0] === image);
    if (paneIndex >= 0) {
      setActive(paneIndex);
      return;
    }
    await showGrid(series, index);
    return;
  }
  const pane = state.panes[0];
  if (state.layout === "single" && image.numberOfFrames === 1 && pane.source.images.length > 1) {
    await pane.viewport.setImageIdIndex(pane.source.images.indexOf(image));
    updateOverlay(pane);
    renderStripSelection();
    return;
  }
  await showSingle(series, index);
}

function defaultLayout(series: SeriesRef): Layout {
  const views = series.images.filter((i) => i.numberOfFrames === 1).length;
  return PROJECTION_MODALITIES.has(series.modality) && views > 1 ? "grid" : "single";
}

function wirePriors(): void {
  document.querySelectorAll<HTMLButtonElement>("[data-compare]").forEach((b) => {
    b.addEventListener("click", () => void showCompare(b.dataset.compare!).catch(showError));
  });
}

async function renderOfflinePanel(): Promise<void> {
  const config = state.config!;
  const target = document.getElementById("offline-panel");
  if (!target || typeof indexedDB === "undefined") {
    return;
  }
  const [row, rows, budget] = await Promise.all([
    getStudy(config.study.studyInstanceUID),
    listStudies(),
    effectiveBudget(),
  ]);
  const used = rows.reduce((sum, r) => sum + r.bytes, 0);
  const status = document.createElement("p");
  status.id = "offline-status";
  status.dataset.complete = String(Boolean(row?.complete));
  status.textContent = row?.complete
    ? `Stored on this device: opens with no signal (${mb(row.bytes)}).`
    : state.offline.total
      ? `Storing for offline use: ${state.offline.done} of ${state.offline.total}.`
      : "Not stored on this device yet.";
  const usage = document.createElement("p");
  usage.textContent = `This device keeps ${rows.length} ${rows.length === 1 ? "study" : "studies"}, ${mb(used)} of a ${mb(budget)} budget; the least recently viewed go first.`;
  const form = document.createElement("form");
  form.className = "budget";
  const input = document.createElement("input");
  input.type = "number";
  input.min = "50";
  input.step = "50";
  input.id = "budget-mb";
  input.value = String(Math.round(budget / 1024 ** 2));
  const label = document.createElement("label");
  label.append("Budget (MB) ", input);
  form.append(label, button("Set", () => undefined, { type: "submit" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = Number(input.value);
    if (!(value >= 50)) {
      setStatus(`Budget ${input.value} MB is too small: enter at least 50 MB.`);
      return;
    }
    void setBudgetSetting(value * 1024 ** 2)
      .then(() => navigator.serviceWorker?.controller?.postMessage({ type: "evict", keep: config.study.studyInstanceUID }))
      .then(renderOfflinePanel);
  });
  const remove = button("Remove this study from the device", () => {
    void removeStudy(config.study.studyInstanceUID).then(renderOfflinePanel);
  });
  target.replaceChildren(status, usage, form, remove);
}

function mb(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
}

/** Return an error naming images the viewer cannot draw, why, and where to see them. */
function unshowableMessage(config: ViewerConfig, images: UnshowableImage[]): string {
  const reasons = images.map((image) => {
    const number = image.instanceNumber === null ? "" : ` ${image.instanceNumber}`;
    const kind = image.modality ? `${image.modality} image` : "Image";
    return `${kind}${number} (SOP Instance UID ${image.sopInstanceUID}) cannot be shown here: ${image.reason}.`;
  });
  const names = config.externalViewers.map((viewer) => viewer.name);
  const where = names.length
    ? `open the study in ${names.join(" or ")} under Open elsewhere`
    : "open the study in a desktop DICOM viewer";
  return `${reasons.join(" ")} To see ${images.length === 1 ? "it" : "them"}, ${where}.`;
}

function showError(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  state.error = message;
  const box = document.getElementById("viewer-error");
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
}

// ---------------------------------------------------------------- test hook

function paneState(pane: Pane) {
  if (!pane.viewport.getImageData()) {
    // Nothing shown yet: camera and geometry are not defined.
    const first = pane.source.images[pane.source.index] ?? pane.source.images[0];
    return {
      imageId: null,
      studyInstanceUID: first.studyInstanceUID,
      sopInstanceUID: first.sopInstanceUID,
      rows: null,
      columns: null,
      fileRows: first.rows,
      fileColumns: first.columns,
      caption: pane.source.caption,
    };
  }
  const imageId = pane.viewport.getCurrentImageId();
  const image = imageId ? cache.getImage(imageId) : undefined;
  const camera = pane.viewport.getCamera();
  const ref = currentImage(pane);
  return {
    imageId,
    studyInstanceUID: ref.studyInstanceUID,
    sopInstanceUID: ref.sopInstanceUID,
    rows: image?.rows ?? null,
    columns: image?.columns ?? null,
    fileRows: ref.rows,
    fileColumns: ref.columns,
    imageQuality: image?.imageQualityStatus ?? null,
    transferSyntaxUID: (image as { transferSyntaxUID?: string } | undefined)?.transferSyntaxUID ?? null,
    calibrated: ref.calibrated,
    calibrationSource: ref.calibrationSource,
    zoom: pane.viewport.getZoom(),
    devicePixelsPerImagePixel: imageId ? devicePixelsPerImagePixel(pane) : null,
    rotation: pane.viewport.getViewPresentation().rotation ?? 0,
    flipHorizontal: Boolean(camera.flipHorizontal),
    flipVertical: Boolean(camera.flipVertical),
    invert: Boolean(pane.viewport.getProperties().invert),
    voiRange: pane.viewport.getProperties().voiRange ?? null,
    index: pane.viewport.getCurrentImageIdIndex(),
    count: pane.source.imageIds.length,
    playing: pane.playing,
    framesPerSecond: pane.framesPerSecond,
    caption: pane.source.caption,
  };
}

/** Page coordinates (CSS pixels) of an image pixel (column, row) in a pane. */
function imageToPage(paneIndex: number, point: [number, number]): [number, number] {
  const pane = state.panes[paneIndex];
  const imageId = pane.viewport.getCurrentImageId();
  const world = coreUtilities.imageToWorldCoords(imageId, point);
  if (!world) {
    throw new Error(`no geometry for ${imageId}; wait until the image is shown`);
  }
  const canvas = pane.viewport.worldToCanvas(world);
  const rect = pane.element.getBoundingClientRect();
  return [rect.left + canvas[0] + window.scrollX, rect.top + canvas[1] + window.scrollY];
}

const api = {
  state: () => ({
    ready: state.ready,
    error: state.error,
    layout: state.layout,
    active: state.active,
    firstImageAt: state.firstImageAt,
    primaryTool: state.primaryTool,
    panes: state.panes.map(paneState),
    measurements: measurementList(),
    offline: { ...state.offline },
    keyImages: [...state.keyImages],
    timings: { ...state.timings },
  }),
  imageToPage,
  setPrimaryTool,
  showSingle: (seriesIndex = 0, imageIndex = 0) =>
    showSingle(state.study!.series[seriesIndex], imageIndex),
  showGrid: (seriesIndex = 0) => showGrid(state.study!.series[seriesIndex], 0),
  showCompare,
  markKeyImage,
  actualPixels,
  applyWindow,
  setFramesPerSecond: (fps: number) => {
    const pane = activePane();
    if (pane) {
      pane.framesPerSecond = fps;
      if (pane.playing) {
        playCine(pane, true);
      }
    }
  },
  play: (on = true) => {
    const pane = activePane();
    if (pane) {
      playCine(pane, on);
    }
  },
};

declare global {
  interface Window {
    fetlockViewer: typeof api;
  }
}
window.fetlockViewer = api;

// ---------------------------------------------------------------- start

/**
 * Start downloading the first frame while the page, Cornerstone and the
 * metadata load (about 0.3 s on a phone link), before the image loader
 * requests it.
 *
 * Only through the service worker, which gives both requests one download
 * and keeps it for the loader; without it the frame would travel twice.
 */
function prefetchFirstFrame(config: ViewerConfig): void {
  if (!config.firstFrameUrl || !navigator.serviceWorker?.controller) {
    return;
  }
  fetch(config.firstFrameUrl, {
    credentials: "same-origin",
    headers: { Accept: config.frameAccept },
  })
    .then((response) => response.arrayBuffer())
    .catch(() => undefined);
}

/** The dicom-image-loader's event for a finished frame request. */
const LOAD_END = "cornerstoneimageloadend";

/**
 * Load and decode the frame the viewer opens on now, into Cornerstone's image
 * cache, instead of when its viewport requests it after the tools, the
 * rendering engine and the study metadata are ready. Needs the frame's
 * metadata registered with the loader (buildStudy); does nothing before.
 *
 * Resolves once the frame's bytes are in and its decoding has begun in the
 * loader's web worker (or after `waitMs` at most): until then the loader
 * needs the main thread.
 */
function primeFirstImage(config: ViewerConfig, waitMs = 0): Promise<void> {
  const imageId = config.firstFrameUrl ? `wadors:${config.firstFrameUrl}` : null;
  if (!imageId || cache.getImageLoadObject(imageId) || !wadors.metaDataManager.get(imageId)) {
    return Promise.resolve();
  }
  const received = new Promise<void>((resolve) => {
    const timer = setTimeout(done, waitMs);
    function done(): void {
      clearTimeout(timer);
      eventTarget.removeEventListener(LOAD_END, onLoadEnd);
      resolve();
    }
    function onLoadEnd(event: Event): void {
      if ((event as CustomEvent<{ imageId?: string }>).detail?.imageId === imageId) {
        done();
      }
    }
    // It fires once the response has been handed on to the decoder.
    eventTarget.addEventListener(LOAD_END, onLoadEnd);
  });
  // The options a stack viewport loads with (useRGBA is the dicom-image-loader's).
  const options = {
    useRGBA: getShouldUseCPURendering(),
    priority: 5,
    requestType: Enums.RequestType.Interaction,
  };
  imageLoader.loadAndCacheImage(imageId, options).catch(() => undefined); // reported as IMAGE_LOAD_FAILED
  return received;
}

/**
 * Read the study's metadata stored on this device, or null. A stored
 * instance never changes, so this copy can decode its frames while the
 * network copy, which may list new images, is still on its way.
 */
async function storedStudy(config: ViewerConfig, uid: string): Promise<StudyModel | null> {
  if (typeof caches === "undefined") {
    return null;
  }
  const url = studyMetadataUrl(config.dicomwebRoot, uid);
  const response = await (await caches.open(STUDY_CACHE)).match(url, { ignoreVary: true });
  if (!response?.ok) {
    return null;
  }
  return buildStudy(config.dicomwebRoot, uid, url, (await response.json()) as DicomJson[]);
}

async function start(): Promise<void> {
  mark("script");
  const config = readConfig();
  state.config = config;
  const uid = config.study.studyInstanceUID;
  // Record the study first, so the service worker keeps what follows; look
  // for a stored copy and start the image loader meanwhile.
  const tracking =
    typeof indexedDB !== "undefined"
      ? markViewed(config, uid).then(
          () => true,
          () => false,
        )
      : Promise.resolve(false);
  const stored = storedStudy(config, uid).catch(() => null);
  initLoader(config);
  // Stored on this device: decode the first frame from the stored copy while
  // the rest starts.
  const primed = stored.then((study) => (study ? primeFirstImage(config, 100) : undefined));
  const tracked = await tracking;
  // The metadata request runs while Cornerstone starts.
  const studyLoaded = loadStudy(config.dicomwebRoot, uid);
  studyLoaded.then(() => primeFirstImage(config), () => undefined); // awaited below
  if (tracked && !(await stored)) {
    // Not stored yet: start downloading the first frame.
    prefetchFirstFrame(config);
  }
  await primed;
  initViewer();
  mark("cornerstone");
  buildToolbar();
  wirePriors();
  window.addEventListener("resize", () => state.engine?.resize(true, true));

  setStatus("Loading the study…");
  state.study = await studyLoaded;
  mark("metadata");
  if (state.study.unshowable.length) {
    // Name the images the viewer cannot draw, with what to do. The others still open.
    showError(unshowableMessage(config, state.study.unshowable));
  }
  if (!state.study.series.length) {
    throw new Error(`study ${uid} has no images that the viewer can show`);
  }
  const series = state.study.series[0];
  if (config.compareWith) {
    state.series = series;
    renderStrip();
    await showCompare(config.compareWith);
  } else {
    await openSeries(series, 0);
  }
  state.ready = true;
  setStatus("");

  // Then keep the whole study for offline use, a few frames at a time.
  if (typeof caches !== "undefined" && typeof indexedDB !== "undefined") {
    void renderOfflinePanel();
    const complete = await keepOffline(config, state.study, (done, total) => {
      state.offline = { status: "storing", done, total, complete: false };
      if (done === total || done % 10 === 0) {
        void renderOfflinePanel();
      }
    });
    state.offline = { ...state.offline, status: complete ? "stored" : "partial", complete };
    await renderOfflinePanel();
  }
}

start().catch((error) => {
  // A frame that failed to load has been reported, with advice, by the
  // loader's event; the CPU renderer's stack also rejects with the bare cause.
  if (state.error === null) {
    showError(error);
  }
  setStatus("");
});
