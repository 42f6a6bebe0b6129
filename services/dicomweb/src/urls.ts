/**
 * Absolute URLs for RetrieveURL (0008,1190) and BulkDataURI, built from the request so they work behind
 * a proxy: with `trustProxy`, Fastify takes the scheme and host from X-Forwarded-Proto / X-Forwarded-Host.
 */
import type { FastifyRequest } from 'fastify';

/** `https://host:port/dicom-web` for this request. */
export function serviceBase(req: FastifyRequest, root: string): string {
  return `${req.protocol}://${req.host}${root}`;
}

export function studyUrl(base: string, study: string): string {
  return `${base}/studies/${study}`;
}

export function seriesUrl(base: string, study: string, series: string): string {
  return `${base}/studies/${study}/series/${series}`;
}

export function instanceUrl(base: string, study: string, series: string, sop: string): string {
  return `${base}/studies/${study}/series/${series}/instances/${sop}`;
}
