/**
 * Rendering parameters: parsing the PS3.18 rendered-resource query parameters and the geometry they ask
 * for. Pure functions, so the routes (WADO-RS rendered/thumbnail, WADO-URI) only translate names.
 * @see PS3.18 §8.3.5.1 (window, viewport, quality, annotation), §9 (thumbnail), §9.4/Annex (WADO-URI rows, columns, region)
 */
import { PorticoError } from '@portico/errors';
import type { WindowRequest } from './lut.ts';
import type { VoiFunction } from './pixel-module.ts';

/** Source rectangle in pixels of the frame (sw/sh negative: flipped). */
export interface SourceRegion {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export interface RenderOptions {
  /** image/jpeg or image/png */
  readonly mediaType: 'image/jpeg' | 'image/png';
  /** JPEG quality 1..100 */
  readonly quality: number;
  readonly window?: WindowRequest | undefined;
  /** viewport width and height in pixels: the image is scaled to fit inside, keeping its aspect ratio */
  readonly viewport?: { readonly width: number; readonly height: number } | undefined;
  readonly region?: SourceRegion | undefined;
  /** region given as fractions of the frame (WADO-URI `region`), resolved against the frame size when rendering */
  readonly relativeRegion?: { readonly x1: number; readonly y1: number; readonly x2: number; readonly y2: number } | undefined;
}

export const DEFAULT_JPEG_QUALITY = 90;
/** Largest viewport side we render: a request beyond it is a 400, not a memory spike. */
export const MAX_VIEWPORT = 8192;

function numbers(value: string, what: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.some((p) => p === '') || out.some((n) => !Number.isFinite(n))) throw new PorticoError('BAD_REQUEST', `${what} must be comma-separated numbers`);
  return out;
}

/** `window=center,width,function` (function LINEAR, LINEAR_EXACT or SIGMOID; default LINEAR). @see PS3.18 §8.3.5.1.4 */
export function parseWindow(value: string): WindowRequest {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length < 2 || parts.length > 3) throw new PorticoError('BAD_REQUEST', 'window must be center,width[,function]');
  const [center, width] = numbers(parts.slice(0, 2).join(','), 'window center and width');
  const fn = (parts[2] ?? 'LINEAR').toUpperCase();
  if (fn !== 'LINEAR' && fn !== 'LINEAR_EXACT' && fn !== 'SIGMOID')
    throw new PorticoError('BAD_REQUEST', 'window function must be LINEAR, LINEAR_EXACT or SIGMOID');
  if (!(width! > 0)) throw new PorticoError('BAD_REQUEST', 'window width must be greater than 0');
  return { center: center!, width: width!, function: fn as VoiFunction };
}

function viewportSide(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_VIEWPORT) throw new PorticoError('BAD_REQUEST', `${what} must be an integer from 1 to ${MAX_VIEWPORT}`);
  return n;
}

/** `viewport=vw,vh[,sx,sy,sw,sh]`. @see PS3.18 §8.3.5.1.3 */
export function parseViewport(value: string): { viewport: { width: number; height: number }; region?: SourceRegion } {
  const v = numbers(value, 'viewport');
  if (v.length !== 2 && v.length !== 6) throw new PorticoError('BAD_REQUEST', 'viewport must be vw,vh or vw,vh,sx,sy,sw,sh');
  const viewport = { width: viewportSide(v[0]!, 'viewport width'), height: viewportSide(v[1]!, 'viewport height') };
  if (v.length === 2) return { viewport };
  const [, , x, y, width, height] = v as [number, number, number, number, number, number];
  if (![x, y, width, height].every(Number.isInteger) || x < 0 || y < 0 || width === 0 || height === 0)
    throw new PorticoError('BAD_REQUEST', 'viewport source region must be integers sx,sy >= 0 and non-zero sw,sh');
  return { viewport, region: { x, y, width, height } };
}

/** `quality=1..100`. @see PS3.18 §8.3.5.1.2 */
export function parseQuality(value: string): number {
  const q = Number(value);
  if (!Number.isInteger(q) || q < 1 || q > 100) throw new PorticoError('BAD_REQUEST', 'quality must be an integer from 1 to 100');
  return q;
}

/**
 * The rendered media type from an Accept header (already parsed into types in preference order).
 * `image/jpeg` for `*\/*` and `image/*`. @throws NOT_ACCEPTABLE when neither JPEG nor PNG is acceptable.
 * @see PS3.18 §8.3.5 Table 8.3.5-1 (rendered media types; GIF and video not offered here)
 */
export function renderedMediaType(acceptTypes: readonly string[]): 'image/jpeg' | 'image/png' {
  for (const t of acceptTypes) {
    if (t === 'image/jpeg' || t === 'image/png') return t;
    if (t === '*/*' || t === 'image/*') return 'image/jpeg';
  }
  throw new PorticoError('NOT_ACCEPTABLE', 'rendered images are available as image/jpeg or image/png');
}

/**
 * Output size for a `sw x sh` source inside a `vw x vh` viewport, keeping the aspect ratio (each side at
 * least 1 pixel). Without a viewport the source size is kept.
 */
export function fitInside(sw: number, sh: number, viewport?: { width: number; height: number }): { width: number; height: number } {
  if (!viewport) return { width: sw, height: sh };
  const scale = Math.min(viewport.width / sw, viewport.height / sh);
  return { width: Math.max(1, Math.round(sw * scale)), height: Math.max(1, Math.round(sh * scale)) };
}

/**
 * A source region clipped to the frame, with flips separated out (negative sw/sh mean the region is read
 * right-to-left / bottom-to-top, PS3.18 §8.3.5.1.3). @throws BAD_REQUEST when nothing of it is inside the frame.
 */
export function clipRegion(
  r: SourceRegion,
  columns: number,
  rows: number,
): { left: number; top: number; width: number; height: number; flipX: boolean; flipY: boolean } {
  const flipX = r.width < 0;
  const flipY = r.height < 0;
  const x0 = flipX ? r.x + r.width : r.x;
  const y0 = flipY ? r.y + r.height : r.y;
  const left = Math.max(0, x0);
  const top = Math.max(0, y0);
  const right = Math.min(columns, x0 + Math.abs(r.width));
  const bottom = Math.min(rows, y0 + Math.abs(r.height));
  if (right <= left || bottom <= top) throw new PorticoError('BAD_REQUEST', `the source region lies outside the ${columns}x${rows} frame`);
  return { left, top, width: right - left, height: bottom - top, flipX, flipY };
}

/** Parameters of the WADO-RS rendered and thumbnail resources, from the query string. Unknown parameters are a 400 (as QIDO-RS). */
export function parseRenderedQuery(query: Readonly<Record<string, string | string[] | undefined>>, acceptTypes: readonly string[]): RenderOptions {
  const one = (k: string): string | undefined => {
    const v = query[k];
    if (Array.isArray(v)) {
      if (v.length > 1) throw new PorticoError('BAD_REQUEST', `${k} may be given once`);
      return v[0];
    }
    return v;
  };
  for (const k of Object.keys(query)) {
    if (!['window', 'viewport', 'quality', 'annotation', 'accept', 'charset'].includes(k))
      throw new PorticoError('BAD_REQUEST', `unknown query parameter ${k} (rendered resources take window, viewport, quality, annotation)`);
  }
  const accept = one('accept');
  const mediaType = renderedMediaType(accept ? accept.split(',').map((s) => s.split(';')[0]!.trim().toLowerCase()) : acceptTypes);
  const w = one('window');
  const vp = one('viewport');
  const q = one('quality');
  const a = one('annotation');
  // Burned-in annotation is optional for an origin server (PS3.18 §8.3.5.1.1): accepted and not drawn.
  if (a !== undefined && !a.split(',').every((s) => ['patient', 'technique'].includes(s.trim())))
    throw new PorticoError('BAD_REQUEST', 'annotation must be patient and/or technique');
  const parsedVp = vp !== undefined ? parseViewport(vp) : undefined;
  return {
    mediaType,
    quality: q !== undefined ? parseQuality(q) : DEFAULT_JPEG_QUALITY,
    window: w !== undefined ? parseWindow(w) : undefined,
    viewport: parsedVp?.viewport,
    region: parsedVp?.region,
  };
}
